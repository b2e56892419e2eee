"""``python -m benchmarks.faiss_index``: ``faiss_recall_at_10`` and ``faiss_build_s_per_1e5``.

For each size N (1e4, 1e5, 1e6 by default) the index is built exactly as an extraction builds it:
:func:`extract.index.build_keyed_index` with the default memory budget, keys ``str(i)``, the
automatic choice (flat, HNSW, IVF or IVF-PQ), training, adding and the search tuning, all timed
together.

* ``faiss_recall_at_10``: mean over 1000 held-out queries of |top-10 of the index's own search
  (``KeyedIndex.search``, with the tuned parameters) ∩ exact top-10| / 10. The queries are new
  draws from the data's distribution: neither indexed vectors nor the tuner's queries (which are
  indexed vectors, so that each finds itself). The exact top-10 is a brute-force inner product
  over the L2-normalized vectors.
* ``faiss_build_s_per_1e5``: build seconds per 1e5 vectors, per size.

Data: uniform random 512-d vectors have no neighbour structure (all distances are nearly equal),
so no index reaches any recall on them; embeddings do have structure. The vectors are a seeded
mixture of 1000 Gaussian clusters of unequal sizes, grouped under 50 topics: a unit-norm centre
near its topic's (cosine ~0.9 between sibling centres, ~0 across topics), an offset along the
cluster's own 16-d subspace (norm ~0.7: a low intrinsic dimension, as embeddings have) and
isotropic noise (norm ~0.2). Neighbours are thus in the same cluster or a sibling, at distinct
distances (cosine ~0.85 to the nearest, ~0.78 to the 10th), never duplicates. Sibling clusters
overlap, so that IVF lists cut through continuous regions: 1000 isolated clusters would each fit
in a few lists, and IVF would be exact at any depth. The vectors are generated in chunks of 65,536
rows into one float32 array (2 GB at 1e6); the peak resident memory, ~7.7 GB at 1e6, is that array
plus the build's normalized copy, its temporaries and the index's lists.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import click
import numpy as np

from benchmarks.common import pick_device, record

COMMAND = "python -m benchmarks.faiss_index"
K = 10
QUERIES = 1000
DATA_STREAM, QUERY_STREAM = 0, 1  # separate seeded streams: queries are never indexed vectors


@dataclass(frozen=True)
class Clusters:
    """Seeded Gaussian clusters under topics, each spread along its own low-dimensional subspace."""

    dim: int = 512
    topics: int = 50
    topic_spread: float = 0.3  # centre = normalized(topic + topic_spread * unit noise)
    centres: int = 1000
    rank: int = 16  # dimension of each cluster's subspace
    spread: float = 0.7  # norm of the offset along the subspace (centres have norm 1)
    noise: float = 0.2  # norm of the isotropic noise
    sizes_sigma: float = 0.5  # cluster weights are lognormal(0, sizes_sigma)
    seed: int = 0
    chunk: int = 65_536

    def model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres [c, dim], subspace bases [c, rank, dim] and cluster weights [c]."""
        rng = np.random.default_rng([self.seed, 2])
        topics = unit_rows(rng.standard_normal((self.topics, self.dim), dtype=np.float32))
        jitter = unit_rows(rng.standard_normal((self.centres, self.dim), dtype=np.float32))
        topic_of = rng.integers(self.topics, size=self.centres)
        centres = unit_rows(topics[topic_of] + self.topic_spread * jitter)
        bases = rng.standard_normal((self.centres, self.rank, self.dim), dtype=np.float32)
        bases *= self.spread / np.sqrt(self.rank * self.dim)
        weights = rng.lognormal(0.0, self.sizes_sigma, self.centres)
        return centres, bases, weights / weights.sum()

    def sample(self, n: int, stream: int) -> np.ndarray:
        """``n`` vectors [n, dim] (float32, not normalized), a chunk at a time."""
        centres, bases, weights = self.model()
        out = np.empty((n, self.dim), dtype=np.float32)
        for number, start in enumerate(range(0, n, self.chunk)):
            rng = np.random.default_rng([self.seed, stream, number])
            block = out[start : start + self.chunk]
            labels = rng.choice(self.centres, len(block), p=weights)
            block[:] = rng.standard_normal(block.shape, dtype=np.float32)
            block *= self.noise / np.sqrt(self.dim)
            block += centres[labels]
            latent = rng.standard_normal((len(block), self.rank), dtype=np.float32)
            add_offsets(block, labels, latent, bases)
        return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def add_offsets(
    block: np.ndarray, labels: np.ndarray, latent: np.ndarray, bases: np.ndarray
) -> None:
    """block[i] += latent[i] @ bases[labels[i]], one matrix product per cluster (no gather)."""
    order = np.argsort(labels, kind="stable")
    clusters, starts = np.unique(labels[order], return_index=True)
    for cluster, rows in zip(clusters, np.split(order, starts[1:]), strict=True):
        block[rows] += latent[rows] @ bases[cluster]


def exact_top_k(
    vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65_536
) -> np.ndarray:
    """Row ids [q, k] of the exact top-k by inner product on normalized vectors, chunk by chunk."""
    import faiss

    from extract.index import normalized

    q = normalized(queries)
    best_scores = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(q), 0), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        block = normalized(vectors[start : start + chunk])
        scores, ids = faiss.knn(q, block, min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_ids = np.concatenate([best_ids, ids + start], axis=1)
        top = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, top, axis=1)
        best_ids = np.take_along_axis(best_ids, top, axis=1)
    return best_ids


def recall_at_k(found: list[list[tuple[str, float]]], exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / k (keys are ``str(row)``)."""
    k = exact.shape[1]
    hits = [
        len({key for key, _ in row[:k]} & {str(i) for i in ids})
        for row, ids in zip(found, exact, strict=True)
    ]
    return float(np.mean(hits)) / k


def measure_size(n: int, data: Clusters, queries: np.ndarray, use_gpu: bool | None) -> dict:
    """Build the automatic index over ``n`` vectors (timed whole), then its held-out recall@10."""
    from extract.index import build_keyed_index

    vectors = data.sample(n, DATA_STREAM)
    exact = exact_top_k(vectors, queries, K)
    keys = [str(i) for i in range(n)]
    started = time.perf_counter()
    keyed, info = build_keyed_index(keys, vectors, use_gpu=use_gpu)
    build_s = time.perf_counter() - started
    del vectors  # the index holds its own normalized copy: free 2 GB (at 1e6) before searching
    started = time.perf_counter()
    found = keyed.search(queries, K)
    search_s = time.perf_counter() - started
    return {
        "n": n,
        "kind": info["kind"],
        "factory": info["factory"],
        "reason": info["reason"],
        "index_type": type(keyed.index).__name__,
        "search_params": info["params"],
        "build_s": round(build_s, 3),
        "tuner_recall_at_10": info["recall_at_10"],
        "recall_at_10": round(recall_at_k(found, exact), 4),
        "search_ms_per_query": round(1000 * search_s / len(queries), 3),
    }


def size_label(n: int) -> str:
    """1e4-style names for powers of ten, the plain count otherwise."""
    power = round(np.log10(n))
    return f"1e{power}" if 10**power == n else str(n)


def significant(value: float, digits: int = 3) -> float:
    """Seconds per 1e5 vectors span 0.1 to 100s: keep the same precision for all."""
    return float(f"{value:.{digits}g}")


def parse_sizes(text: str) -> list[int]:
    sizes = [int(float(part)) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) <= 0:
        raise click.BadParameter(f"need positive sizes, got {text!r}")
    return sizes


@click.command()
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--sizes", default="1e4,1e5,1e6", show_default=True, help="Vector counts.")
def main(device: str, sizes: str) -> None:
    """Recall@10 and build time of the automatically chosen FAISS index, per size."""
    torch_device = pick_device(device)
    use_gpu = {"auto": None, "cpu": False, "cuda": True}[device]  # auto: as an extraction does
    data = Clusters()
    queries = data.sample(QUERIES, QUERY_STREAM)
    runs = {}
    for n in parse_sizes(sizes):
        run = measure_size(n, data, queries, use_gpu)
        runs[size_label(n)] = run
        print(
            f"  {size_label(n)}: {run['factory']} ({run['index_type']}) built in "
            f"{run['build_s']:.2f} s, search {run['search_params']}, recall@10 "
            f"{run['recall_at_10']:.4f} (tuner {run['tuner_recall_at_10']})",
            flush=True,
        )
    command = f"{COMMAND} --device {device}" + (
        f" --sizes {sizes}" if sizes != "1e4,1e5,1e6" else ""
    )
    details = {
        "sizes": runs,
        "queries": f"{QUERIES} held-out draws of the same mixture (not indexed, not the tuner's)",
        "data": {"generator": "gaussian clusters along low-dim subspaces", **asdict(data)},
        "k": K,
    }
    record(
        "faiss_recall_at_10",
        {label: run["recall_at_10"] for label, run in runs.items()},
        command,
        torch_device,
        details,
    )
    record(
        "faiss_build_s_per_1e5",
        {label: significant(run["build_s"] / (run["n"] / 1e5)) for label, run in runs.items()},
        command,
        torch_device,
        {"build_s": {label: run["build_s"] for label, run in runs.items()}, **details},
    )


if __name__ == "__main__":
    main()
