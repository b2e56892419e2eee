"""FAISS indices over global embeddings, keyed to sample keys.

Similarity is cosine: vectors are L2-normalized float32 copies searched by inner product. The index
type follows the number of vectors and a memory budget (:func:`choose_index`):

* ``flat``  (exact) below ``EXACT_MAX`` vectors: nothing to train or tune, and a kNN pass over all
  50k samples still takes seconds;
* ``hnsw``  from ``EXACT_MAX`` to ``HNSW_MAX`` when the vectors plus the graph (8*M + 16 bytes per
  vector) fit: no training, and the fastest queries at equal recall, which pays for its slower
  build while the trainer queries every sample;
* ``ivf``   (``IVF{nlist},Flat``, nlist ~ 4 sqrt(n)) from ``HNSW_MAX`` on, on GPU (faiss has no GPU
  HNSW), or when the graph does not fit but the vectors do: the graph's build time grows faster
  than n (512-d, 2 cores, a one-off comparison: HNSW 8.7 s at 100k and 44 s at 300k, IVF 6.4 s
  and 21 s), and lists cost 8 bytes per vector;
* ``ivfpq`` (``IVF{nlist},PQ{m}`` reranked by a ``Refine(SQfp16)`` or ``Refine(SQ8)`` copy, the
  best that fits) when the float32 vectors do not fit the budget.

The search depth (nprobe, efSearch, then the rerank factor) is doubled until recall@10 against
exact search on 1000 sampled vectors reaches ``TARGET_RECALL`` (:func:`tune_search`). Training uses
a seeded sample and seeded k-means, so equal inputs give equal indices. Build times and recall of
the automatic choice at 1e4, 1e5 and 1e6 clustered 512-d vectors are measured by
``python -m benchmarks.faiss_index`` (BENCHMARKS.md: HNSW 10 s at 1e5, IVF 90 s at 1e6, most of
it k-means).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extract.store.atomic import finish_atomic, read_json, tmp_path, write_json_atomic

log = logging.getLogger(__name__)

EXACT_MAX = 50_000  # below this many vectors: exact search
HNSW_MAX = 1_000_000  # from here on: IVF (graph build time grows as n log n, k-means does not)
HNSW_M = 32  # graph degree; level 0 holds 2*M int32 neighbours per vector
TRAIN_PER_LIST = 50  # k-means sample: points per IVF list (faiss warns below 39)
MIN_TRAIN = 16_384  # PQ trains 256 centroids per sub-quantizer: 64 points each
SEED = 1234  # sample and k-means seed
TARGET_RECALL = 0.95
TUNE_MARGIN = 0.01  # tune to 0.96 on 1000 queries so that other queries also see >= 0.95
DEFAULT_BUDGET = 4 << 30
NORM_BLOCK = 65_536  # rows normalized at a time
REFINE_BYTES = {"SQfp16": 2, "SQ8": 1}  # bytes per dimension of the rerank copy
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
FORMAT = 1
GPU_TYPES = {"IndexFlat", "IndexFlatIP", "IndexIVFFlat", "IndexIVFPQ"}  # faiss GPU clones these
_GPU_RESOURCES = None  # one faiss.StandardGpuResources per process, made on first use


@dataclass(frozen=True)
class IndexChoice:
    """Which FAISS index to build and how deep to search it; ``bytes`` is its estimated size."""

    kind: str  # flat | hnsw | ivf | ivfpq
    factory: str  # faiss.index_factory string (inner-product metric)
    bytes: int
    reason: str = ""
    nlist: int | None = None  # IVF lists
    nprobe: int | None = None  # IVF lists visited per query
    hnsw_m: int | None = None
    ef_search: int | None = None
    pq_m: int | None = None  # PQ bytes per vector
    refine: str | None = None  # rerank copy: SQfp16 | SQ8
    k_factor: int | None = None  # rerank k * k_factor PQ candidates

    def search_params(self) -> dict[str, int]:
        """The faiss ParameterSpace settings this choice searches with."""
        names = {"nprobe": self.nprobe, "efSearch": self.ef_search, "k_factor_rf": self.k_factor}
        return {name: value for name, value in names.items() if value is not None}


def flat_choice(n: int, dim: int, reason: str = "") -> IndexChoice:
    return IndexChoice("flat", "Flat", 4 * n * dim, reason)


def hnsw_choice(
    n: int, dim: int, m: int = HNSW_M, ef_search: int = 32, reason: str = ""
) -> IndexChoice:
    size = n * (4 * dim + 8 * m + 16)
    return IndexChoice("hnsw", f"HNSW{m},Flat", size, reason, hnsw_m=m, ef_search=ef_search)


def default_nlist(n: int) -> int:
    """~4 sqrt(n) lists, but at least TRAIN_PER_LIST training points per list."""
    return max(1, min(round(4 * math.sqrt(n)), n // TRAIN_PER_LIST))


def default_nprobe(nlist: int) -> int:
    """A starting depth; :func:`tune_search` raises it until the recall target is met."""
    return min(nlist, max(8, nlist // 128))


def _lists(n: int, nlist: int | None) -> dict[str, int]:
    nlist = nlist or default_nlist(n)
    return {"nlist": nlist, "nprobe": default_nprobe(nlist)}


def ivf_choice(n: int, dim: int, nlist: int | None = None, reason: str = "") -> IndexChoice:
    lists = _lists(n, nlist)
    size = n * (4 * dim + 8) + 4 * lists["nlist"] * dim
    return IndexChoice("ivf", f"IVF{lists['nlist']},Flat", size, reason, **lists)


def ivfpq_choice(
    n: int, dim: int, pq_m: int, refine: str | None, nlist: int | None = None, reason: str = ""
) -> IndexChoice:
    """IVF-PQ with ``pq_m`` bytes per vector, reranked by a ``refine`` copy when one is given."""
    if dim % pq_m:
        raise ValueError(f"PQ{pq_m} needs a dimension divisible by {pq_m}, not {dim}")
    lists = _lists(n, nlist)
    per_vector = pq_m + 8 + (REFINE_BYTES[refine] * dim if refine else 0)
    size = n * per_vector + 4 * lists["nlist"] * dim + 4 * 256 * dim
    factory = f"IVF{lists['nlist']},PQ{pq_m}" + (f",Refine({refine})" if refine else "")
    extra = {"pq_m": pq_m, "refine": refine, "k_factor": 8 if refine else None}
    return IndexChoice("ivfpq", factory, size, reason, **lists, **extra)


def choose_index(
    n: int, dim: int, memory_budget_bytes: int = DEFAULT_BUDGET, gpu: bool = False
) -> IndexChoice:
    """Pick the index type for ``n`` vectors of ``dim`` floats (see the module docstring)."""
    if n <= 0 or dim <= 0 or memory_budget_bytes <= 0:
        raise ValueError(f"need n, dim, budget > 0; got {n}, {dim}, {memory_budget_bytes}")
    budget, raw = memory_budget_bytes, 4 * n * dim
    if n < EXACT_MAX and (raw <= budget or n < MIN_TRAIN):
        why = f"{n} < {EXACT_MAX} vectors: exact search"
        if raw > budget:
            log.warning("flat index of %d bytes exceeds the budget of %d bytes", raw, budget)
            why += f" (over the budget, but too few vectors to train PQ: < {MIN_TRAIN})"
        return flat_choice(n, dim, why)
    if n >= EXACT_MAX:
        hnsw = hnsw_choice(n, dim)
        if n < HNSW_MAX and not gpu and hnsw.bytes <= budget:
            why = f"{EXACT_MAX} <= n < {HNSW_MAX} and vectors + graph fit: HNSW, no training"
            return dataclasses.replace(hnsw, reason=why)
        ivf = ivf_choice(n, dim)
        if ivf.bytes <= budget:
            return dataclasses.replace(ivf, reason=_ivf_reason(n, gpu, hnsw.bytes))
    return _pq_choice(n, dim, budget)


def _ivf_reason(n: int, gpu: bool, hnsw_bytes: int) -> str:
    if gpu:
        why = "on GPU (faiss has no GPU HNSW)"
    elif n >= HNSW_MAX:
        why = f"n >= {HNSW_MAX}: k-means builds faster than a graph"
    else:
        why = f"vectors + HNSW graph ({hnsw_bytes} bytes) exceed the budget"
    return f"{why}; float32 vectors fit: IVF-Flat"


def _pq_choice(n: int, dim: int, budget: int) -> IndexChoice:
    """The best PQ layout within the budget: a rerank copy first, then fewer PQ bytes."""
    options = [("SQfp16", 8), ("SQ8", 8), (None, 4), (None, 8), (None, 16), (None, 32)]
    for refine, dims_per_byte in options:
        pq_m = _largest_divisor(dim, max(1, dim // dims_per_byte))
        why = f"float32 vectors ({4 * n * dim} bytes) exceed the budget ({budget}): IVF-PQ"
        choice = ivfpq_choice(n, dim, pq_m, refine, reason=why)
        if choice.bytes <= budget:
            return choice
    raise ValueError(
        f"a memory budget of {budget} bytes is too small for {n} vectors of dimension {dim}: "
        f"even {choice.factory} needs about {choice.bytes} bytes; raise the index memory budget "
        "or skip the indices (--no-index)"
    )


def _largest_divisor(dim: int, at_most: int) -> int:
    return next(m for m in range(min(at_most, dim), 0, -1) if dim % m == 0)


def normalized(vectors: np.ndarray, dim: int | None = None, what: str = "vectors") -> np.ndarray:
    """An L2-normalized float32 copy; bad shapes, NaN/inf and zero rows get a clear error."""
    array = np.asarray(vectors)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{what}: need a non-empty 2-D array [n, dim], got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{what}: dimension {array.shape[1]} does not match the index's {dim}")
    out = np.array(array, dtype=np.float32, copy=True, order="C")
    # row checks and norms a block at a time: whole-array temporaries doubled the peak at 1e6
    finite, norms = np.empty(len(out), dtype=bool), np.empty(len(out), dtype=np.float32)
    for start in range(0, len(out), NORM_BLOCK):
        block = out[start : start + NORM_BLOCK]
        finite[start : start + NORM_BLOCK] = np.isfinite(block).all(axis=1)
        norms[start : start + NORM_BLOCK] = np.linalg.norm(block, axis=1)
    for problem, bad in (("NaN or infinite values", ~finite), ("zero norm", ~(norms > 0))):
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{what}: {rows.size} of {len(out)} rows have {problem} (first rows: "
                f"{rows[:5].tolist()}); fix the embeddings before indexing"
            )
    for start in range(0, len(out), NORM_BLOCK):
        out[start : start + NORM_BLOCK] /= norms[start : start + NORM_BLOCK, None]
    return out


def build_index(vectors: np.ndarray, choice: IndexChoice, use_gpu: bool | None = None) -> Any:
    """A faiss index over normalized copies of ``vectors`` (on GPU when faiss has one)."""
    return _build(normalized(vectors), choice, use_gpu)


def _build(x: np.ndarray, choice: IndexChoice, use_gpu: bool | None) -> Any:
    import faiss

    index = faiss.index_factory(x.shape[1], choice.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        _seed_training(index)
        index.train(_training_sample(x, choice))
    if _gpu_wanted(use_gpu):
        index = to_gpu(index)
    index.add(x)
    set_search_params(index, choice.search_params())
    return index


def _seed_training(index: Any) -> None:
    """Fixed k-means seeds; no polysemous training (slow, and unused by our searches)."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return
    ivf.cp.seed = SEED
    ivf = faiss.downcast_index(ivf)
    if isinstance(ivf, faiss.IndexIVFPQ):
        ivf.pq.cp.seed = SEED
        ivf.do_polysemous_training = False


def _training_sample(x: np.ndarray, choice: IndexChoice) -> np.ndarray:
    size = min(len(x), max(TRAIN_PER_LIST * (choice.nlist or 1), MIN_TRAIN))
    if size == len(x):
        return x
    rows = np.random.default_rng(SEED).choice(len(x), size, replace=False)
    return x[np.sort(rows)]


def _gpu_wanted(use_gpu: bool | None) -> bool:
    import faiss

    has_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    if use_gpu and not has_gpu:
        log.warning("use_gpu=True but faiss sees no GPU: building on CPU")
    return has_gpu and use_gpu is not False


def _on_gpu(index: Any) -> bool:
    return type(index).__name__.startswith("Gpu")


def to_gpu(index: Any) -> Any:
    """The index on GPU 0; HNSW and refine indices (no faiss GPU version) stay on CPU."""
    import faiss

    global _GPU_RESOURCES
    if type(faiss.downcast_index(index)).__name__ not in GPU_TYPES:
        log.info("%s has no GPU version in faiss: it stays on CPU", type(index).__name__)
        return index
    try:
        _GPU_RESOURCES = _GPU_RESOURCES or faiss.StandardGpuResources()  # must outlive the index
        options = faiss.GpuClonerOptions()
        options.useFloat16 = True  # needed by IVF-PQ codes of 56 bytes and more
        return faiss.index_cpu_to_gpu(_GPU_RESOURCES, 0, index, options)
    except (RuntimeError, AttributeError) as error:
        log.warning("%s stays on CPU: %s", type(index).__name__, str(error).splitlines()[0])
        return index


def to_cpu(index: Any) -> Any:
    import faiss

    return faiss.index_gpu_to_cpu(index) if _on_gpu(index) else index


def set_search_params(index: Any, params: dict[str, int]) -> None:
    import faiss

    space = faiss.GpuParameterSpace() if _on_gpu(index) else faiss.ParameterSpace()
    for name, value in params.items():
        space.set_index_parameter(index, name, value)


def exact_neighbours(
    vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65_536
) -> np.ndarray:
    """Exact top-k similarities [q, k], normalizing the database a chunk at a time (low memory)."""
    import faiss

    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        block = normalized(vectors[start : start + chunk])
        scores, _ = faiss.knn(queries, block, min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        best = -np.sort(-np.concatenate([best, scores], axis=1), axis=1)[:, :k]
    return best


def _sample_queries(vectors: np.ndarray, queries: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).choice(len(vectors), min(queries, len(vectors)), False)
    return normalized(vectors[np.sort(rows)])


def _recall(index: Any, vectors: np.ndarray, q: np.ndarray, exact: np.ndarray) -> float:
    """Fraction of returned neighbours at least as similar as the exact k-th (ties count)."""
    k = exact.shape[1]
    _, ids = index.search(q, k)
    hits = 0
    for query, found, kth in zip(q, ids, exact[:, -1], strict=True):
        found = np.unique(found[found >= 0])
        if found.size:
            hits += int((normalized(vectors[found]) @ query >= kth - 1e-5).sum())
    return hits / (k * len(q))


def measure_recall(
    index: Any, vectors: np.ndarray, k: int = 10, queries: int = 1000, seed: int = 0
) -> float:
    """recall@k of ``index`` against exact search, querying a seeded sample of ``vectors``."""
    q = _sample_queries(vectors, queries, seed)
    return _recall(index, vectors, q, exact_neighbours(vectors, q, min(k, len(vectors))))


def tune_search(
    index: Any, vectors: np.ndarray, choice: IndexChoice, target: float = TARGET_RECALL
) -> tuple[IndexChoice, float]:
    """Double nprobe / efSearch (then the rerank factor) until recall@10 >= target + margin."""
    q = _sample_queries(vectors, 1000, 0)
    exact = exact_neighbours(vectors, q, min(10, len(vectors)))
    recall = _recall(index, vectors, q, exact)
    for field, limit in _tunables(choice):
        while recall < target + TUNE_MARGIN and getattr(choice, field) < limit:
            trial = dataclasses.replace(choice, **{field: min(limit, 2 * getattr(choice, field))})
            set_search_params(index, trial.search_params())
            trial_recall = _recall(index, vectors, q, exact)
            if trial_recall < recall + 0.002:  # this knob has stopped paying: try the next one
                set_search_params(index, choice.search_params())
                break
            choice, recall = trial, trial_recall
    if recall < target:
        log.warning(f"{choice.factory}: recall@10 {recall:.3f} < {target}; more memory helps")
    log.info("%s searches with %s: recall@10 %.4f", choice.factory, choice.search_params(), recall)
    return choice, recall


def _tunables(choice: IndexChoice) -> list[tuple[str, int]]:
    if choice.kind == "hnsw":
        return [("ef_search", 1024)]
    knobs = [("nprobe", min(choice.nlist or 1, 2048))] if choice.nlist else []
    return knobs + ([("k_factor", 64)] if choice.refine else [])


@dataclass
class KeyedIndex:
    """A faiss index whose row i is the sample ``keys[i]``."""

    index: Any
    keys: list[str]
    params: dict[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.index.ntotal != len(self.keys):
            raise ValueError(f"{len(self.keys)} keys for an index of {self.index.ntotal} vectors")

    @property
    def dim(self) -> int:
        return self.index.d

    def search(
        self, queries: np.ndarray, k: int = 10, exclude: Sequence[str | None] | None = None
    ) -> list[list[tuple[str, float]]]:
        """The k most similar keys per query, skipping ``exclude[i]`` (e.g. the query's own key)."""
        q = normalized(queries, self.dim, "queries")
        if exclude is not None and len(exclude) != len(q):
            raise ValueError(f"exclude holds {len(exclude)} keys for {len(q)} queries")
        extra = 0 if exclude is None else 1
        scores, ids = self.index.search(q, min(k + extra, len(self.keys)))
        results = []
        for row, (found, score) in enumerate(zip(ids, scores, strict=True)):
            skip = None if exclude is None else exclude[row]
            hits = [(self.keys[i], float(s)) for i, s in zip(found, score, strict=True) if i >= 0]
            results.append([hit for hit in hits if hit[0] != skip][:k])
        return results

    def save(self, directory: str | Path, name: str) -> list[Path]:
        """Write ``<name>.faiss`` and ``<name>.keys.json`` atomically; returns both paths."""
        import faiss

        if not NAME.match(name):
            raise ValueError(f"index name {name!r}: use letters, digits, '.', '_' and '-'")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index_file, keys_file = directory / f"{name}.faiss", directory / f"{name}.keys.json"
        try:
            faiss.write_index(to_cpu(self.index), str(tmp_path(index_file)))
        except RuntimeError as error:
            tmp_path(index_file).unlink(missing_ok=True)
            code = no_room_code(error)
            if code is None:
                raise
            raise OSError(code, os.strerror(code), str(index_file)) from error
        finish_atomic(tmp_path(index_file), index_file)
        meta = {"format": FORMAT, "metric": "cosine", "dim": self.dim, "params": self.params}
        write_json_atomic(keys_file, {**meta, "count": len(self.keys), "keys": self.keys}, None)
        return [index_file, keys_file]

    @classmethod
    def load(cls, directory: str | Path, name: str, use_gpu: bool | None = None) -> KeyedIndex:
        import faiss

        index_file = Path(directory) / f"{name}.faiss"
        keys_file = Path(directory) / f"{name}.keys.json"
        for path in (index_file, keys_file):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: build the index again (extract without --no-index)"
                )
        meta = read_json(keys_file)
        index = faiss.read_index(str(index_file))
        if index.ntotal != len(meta["keys"]):
            raise ValueError(
                f"{index_file} holds {index.ntotal} vectors but {keys_file} {len(meta['keys'])} "
                "keys: the files are from different builds; build the index again"
            )
        if _gpu_wanted(use_gpu):
            index = to_gpu(index)
        set_search_params(index, meta.get("params", {}))
        return cls(index, list(meta["keys"]), dict(meta.get("params", {})))


def build_keyed_index(
    keys: Sequence[str],
    vectors: np.ndarray,
    memory_budget_bytes: int = DEFAULT_BUDGET,
    measure: bool = True,
    use_gpu: bool | None = None,
    choice: IndexChoice | None = None,
) -> tuple[KeyedIndex, dict[str, Any]]:
    """Choose, build and (when ``measure``) tune an index; ``info`` goes into the manifest."""
    keys = [str(key) for key in keys]
    x = normalized(vectors)
    _check_keys(keys, len(x))
    started = time.perf_counter()
    gpu = _gpu_wanted(use_gpu)
    choice = choice or choose_index(len(x), x.shape[1], memory_budget_bytes, gpu=gpu)
    log.info("index over %d x %d: %s (%s)", *x.shape, choice.factory, choice.reason)
    index = _build(x, choice, gpu)
    recall = None
    if choice.kind == "flat":
        recall = 1.0  # exact by construction
    elif measure:
        choice, recall = tune_search(index, x, choice)
    info = {
        "kind": choice.kind,
        "factory": choice.factory,
        "n": len(x),
        "dim": x.shape[1],
        "recall_at_10": None if recall is None else round(recall, 4),
        "build_s": round(time.perf_counter() - started, 3),
        "reason": choice.reason,
        "params": choice.search_params(),
    }
    return KeyedIndex(index, keys, choice.search_params()), info


def _check_keys(keys: list[str], n: int) -> None:
    if len(keys) != n:
        raise ValueError(f"{len(keys)} keys for {n} vectors: give exactly one key per vector")
    if len(set(keys)) != n:
        seen: set[str] = set()
        twice = [key for key in keys if key in seen or seen.add(key)]
        raise ValueError(f"{len(twice)} duplicate keys (first: {twice[:3]}); keys must be unique")


def no_room_code(error: RuntimeError) -> int | None:
    """faiss reports a failed write as a RuntimeError ending in the system's reason; a full
    disk (or file size limit) is recognised, so the extraction can report it as such."""
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        if f"({os.strerror(code)})" in str(error):
            return code
    return None
