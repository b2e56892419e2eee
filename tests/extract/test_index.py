"""FAISS indices: the chooser's rule, recall of every kind against exact search, keyed search,
save/load, and the errors for bad input. Seeded synthetic clustered vectors throughout."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from extract import index as xi  # noqa: E402

N, DIM = 20_000, 64


def clustered(n: int, dim: int = DIM, clusters: int = 64, seed: int = 0) -> np.ndarray:
    """Gaussian clusters, each spread along its own 16-d subspace (like real embeddings)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    bases = rng.standard_normal((clusters, 16, dim)).astype(np.float32) / 4
    label = rng.integers(0, clusters, n)
    spread = np.einsum("ns,nsd->nd", rng.standard_normal((n, 16)).astype(np.float32), bases[label])
    return centers[label] + spread + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(N)


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return [f"s{i}" for i in range(N)]


RAW = 4 * N * DIM
CHOICES = {  # one of each kind the chooser can pick, at test size
    "flat": xi.flat_choice(N, DIM),
    "hnsw": xi.hnsw_choice(N, DIM),
    "ivf": xi.ivf_choice(N, DIM),
    "ivfpq-fp16": xi.choose_index(N, DIM, RAW * 3 // 4),  # what the chooser picks: see below
    "ivfpq-sq8": xi.choose_index(N, DIM, RAW // 2),
}


@pytest.fixture(scope="module")
def built(keys, vectors) -> dict[str, tuple[xi.KeyedIndex, dict]]:
    return {
        name: xi.build_keyed_index(keys, vectors, choice=choice) for name, choice in CHOICES.items()
    }


# The chooser


def test_chooser_picks_exact_search_for_small_n():
    choice = xi.choose_index(10_000, 512)
    assert (choice.kind, choice.factory, choice.search_params()) == ("flat", "Flat", {})
    assert xi.choose_index(xi.EXACT_MAX - 1, 512).kind == "flat"


def test_chooser_picks_hnsw_then_ivf_as_n_grows():
    hnsw = xi.choose_index(xi.EXACT_MAX, 512)
    assert (hnsw.kind, hnsw.factory, hnsw.ef_search) == ("hnsw", "HNSW32,Flat", 32)
    ivf = xi.choose_index(xi.HNSW_MAX, 512, 8 << 30)
    assert ivf.kind == "ivf" and ivf.factory == f"IVF{ivf.nlist},Flat"
    assert ivf.nlist == round(4 * xi.HNSW_MAX**0.5) and 1 <= ivf.nprobe < ivf.nlist
    assert xi.choose_index(200_000, 512, gpu=True).kind == "ivf"  # faiss has no GPU HNSW
    graph_over_budget = xi.hnsw_choice(200_000, 512).bytes - 1
    assert xi.choose_index(200_000, 512, graph_over_budget).kind == "ivf"


def test_chooser_picks_pq_when_the_vectors_do_not_fit():
    n, dim = 2_000_000, 512
    raw = 4 * n * dim
    fp16 = xi.choose_index(n, dim, raw * 3 // 4)
    assert fp16.factory == f"IVF{fp16.nlist},PQ64,Refine(SQfp16)" and fp16.bytes <= raw * 3 // 4
    assert xi.choose_index(n, dim, raw // 2).refine == "SQ8"
    bare = xi.choose_index(n, dim, raw // 8)
    assert (bare.kind, bare.refine, bare.pq_m) == ("ivfpq", None, dim // 4)
    assert "exceed the budget" in bare.reason
    with pytest.raises(ValueError, match="too small for 2000000 vectors"):
        xi.choose_index(n, dim, 10 << 20)


def test_chooser_pq_sub_quantizers_divide_odd_dimensions():
    choice = xi.choose_index(100_000, 300, 100_000 * 400)  # SQ8 rerank, PQ m <= 300 / 8
    assert (choice.refine, choice.pq_m) == ("SQ8", 30)


def test_chooser_keeps_flat_when_too_few_vectors_to_train_pq():
    choice = xi.choose_index(1_000, 512, 1 << 20)
    assert choice.kind == "flat" and "too few vectors" in choice.reason


def test_chooser_refuses_non_positive_sizes():
    with pytest.raises(ValueError, match="> 0"):
        xi.choose_index(0, 512)


# Building and recall


@pytest.mark.parametrize("name", CHOICES)
def test_every_kind_reaches_the_recall_target(built, vectors, name):
    keyed, info = built[name]
    assert info["kind"] == CHOICES[name].kind
    assert info["recall_at_10"] >= 0.95, info
    assert xi.measure_recall(keyed.index, vectors, seed=1) >= 0.95  # other queries, same result


def test_chooser_test_sizes_pick_what_the_names_say():
    assert CHOICES["ivfpq-fp16"].refine == "SQfp16" and CHOICES["ivfpq-sq8"].refine == "SQ8"


def test_info_is_ready_for_the_manifest(built):
    _, info = built["ivf"]
    assert set(info) >= {"kind", "factory", "n", "dim", "recall_at_10", "build_s", "reason"}
    assert (info["n"], info["dim"], info["factory"]) == (N, DIM, CHOICES["ivf"].factory)
    assert info["params"]["nprobe"] >= CHOICES["ivf"].nprobe


def test_tuning_deepens_a_shallow_search(keys, vectors):
    shallow = dataclasses.replace(xi.ivf_choice(N, DIM, nlist=256), nprobe=1)
    index = xi.build_index(vectors, shallow)
    assert xi.measure_recall(index, vectors) < 0.9
    _, info = xi.build_keyed_index(keys, vectors, choice=shallow)
    assert info["params"]["nprobe"] > 1 and info["recall_at_10"] >= 0.95


def test_default_build_of_a_small_set_is_exact(keys, vectors):
    keyed, info = xi.build_keyed_index(keys[:500], vectors[:500])
    assert (info["kind"], info["recall_at_10"]) == ("flat", 1.0)
    assert xi.measure_recall(keyed.index, vectors[:500], k=10, queries=50) == 1.0


def test_trained_indices_are_deterministic(vectors):
    choice = CHOICES["ivfpq-sq8"]
    first, second = (faiss.serialize_index(xi.build_index(vectors, choice)) for _ in range(2))
    assert np.array_equal(first, second)


# Keyed search, save and load


def test_search_finds_the_right_keys_in_a_tiny_index():
    basis = np.eye(3, dtype=np.float32) * np.array([[1.0], [2.0], [5.0]], dtype=np.float32)
    keyed, _ = xi.build_keyed_index(["a", "b", "c"], basis)
    hits = keyed.search(np.array([[0.1, 3.0, 0.0], [0.0, 0.0, -1.0]]), k=3)
    assert [key for key, _ in hits[0]] == ["b", "a", "c"]
    assert hits[0][0][1] == pytest.approx(3.0 / np.hypot(0.1, 3.0), abs=1e-6)  # cosine
    assert hits[1][-1] == ("c", pytest.approx(-1.0))
    assert len(keyed.search(basis, k=10)[0]) == 3  # k larger than the index


def test_search_can_exclude_each_querys_own_key(built, keys, vectors):
    keyed, _ = built["flat"]
    plain = keyed.search(vectors[:20], k=5)
    assert [hits[0][0] for hits in plain] == keys[:20]
    excluded = keyed.search(vectors[:20], k=5, exclude=keys[:20])
    for own, hits, before in zip(keys[:20], excluded, plain, strict=True):
        assert len(hits) == 5 and own not in [key for key, _ in hits]
        assert hits[:4] == before[1:]


@pytest.mark.parametrize("name", CHOICES)
def test_save_and_load_give_identical_results(built, vectors, tmp_path, name):
    keyed, _ = built[name]
    paths = keyed.save(tmp_path, f"train-{name}")
    assert [p.name for p in paths] == [f"train-{name}.faiss", f"train-{name}.keys.json"]
    assert not list(tmp_path.glob("*.tmp"))
    loaded = xi.KeyedIndex.load(tmp_path, f"train-{name}")
    assert loaded.keys == keyed.keys and loaded.params == keyed.params
    queries = vectors[::997]
    assert loaded.search(queries, k=10) == keyed.search(queries, k=10)


@pytest.mark.gpu
@pytest.mark.skipif(getattr(faiss, "get_num_gpus", lambda: 0)() == 0, reason="faiss sees no GPU")
def test_gpu_index_saves_as_cpu(keys, vectors, tmp_path):
    keyed, info = xi.build_keyed_index(keys, vectors, choice=CHOICES["ivf"], use_gpu=True)
    assert type(keyed.index).__name__.startswith("Gpu") and info["recall_at_10"] >= 0.95
    keyed.save(tmp_path, "gpu")
    loaded = xi.KeyedIndex.load(tmp_path, "gpu", use_gpu=False)
    assert [h[0][0] for h in loaded.search(vectors[:50], k=1)] == keys[:50]


def test_importing_the_module_does_not_import_faiss():
    code = "import sys, extract.index; assert 'faiss' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# Errors


def test_bad_vectors_are_refused_with_the_reason():
    good = np.ones((5, 4), dtype=np.float32)
    nan = good.copy()
    nan[[1, 3]] = np.nan
    with pytest.raises(ValueError, match=r"2 of 5 rows have NaN or infinite values.*\[1, 3\]"):
        xi.build_keyed_index(list("abcde"), nan)
    zero = good.copy()
    zero[4] = 0
    with pytest.raises(ValueError, match=r"1 of 5 rows have zero norm"):
        xi.build_keyed_index(list("abcde"), zero)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        xi.build_keyed_index([], np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="non-empty 2-D"):
        xi.build_keyed_index(list("ab"), np.ones((2, 3, 4)))


def test_bad_keys_are_refused():
    vectors = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="3 keys for 4 vectors"):
        xi.build_keyed_index(list("abc"), vectors)
    with pytest.raises(ValueError, match=r"1 duplicate keys \(first: \['a'\]\)"):
        xi.build_keyed_index(list("abca"), vectors)


def test_wrong_query_dimension_and_exclude_length_are_refused():
    keyed, _ = xi.build_keyed_index(list("abcd"), np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="dimension 3 does not match the index's 4"):
        keyed.search(np.ones((1, 3)))
    with pytest.raises(ValueError, match="exclude holds 2 keys for 1 queries"):
        keyed.search(np.ones((1, 4)), exclude=["a", "b"])


def test_load_refuses_missing_and_mismatched_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-image.faiss is missing"):
        xi.KeyedIndex.load(tmp_path, "train-image")
    small, _ = xi.build_keyed_index(list("ab"), np.eye(2, dtype=np.float32))
    large, _ = xi.build_keyed_index(list("abc"), np.eye(3, 2, dtype=np.float32) + 0.1)
    small.save(tmp_path, "x")
    large.save(tmp_path, "y")
    (tmp_path / "x.keys.json").replace(tmp_path / "y.keys.json")
    with pytest.raises(ValueError, match="holds 3 vectors but .* 2 keys: the files are from"):
        xi.KeyedIndex.load(tmp_path, "y")
    with pytest.raises(ValueError, match="index name"):
        small.save(tmp_path, "../escape")
