"""Per-image fields stored once per run of samples of one image, ragged fields stored without
padding: readers get back exactly the arrays a plain layout gives, in both formats."""

import json
import tarfile

import h5py
import numpy as np
import pytest
import webdataset

from extract.store import CacheBuilder, CacheReader, CacheSpec, FieldSpec, ShardLimits, verify_cache
from extract.store.atomic import sha256_file

C, L, D = 3, 6, 4
FIELDS = {
    "img_grid": FieldSpec("img_grid", (5, D), "fp16", "vision", per_image=True),
    "pixels": FieldSpec("pixels", (2, 3), "uint8", "pixels", per_image=True),
    "token_len": FieldSpec("token_len", (C,), "int32", "text"),
    "token_ids": FieldSpec("token_ids", (C, L), "int32", "text", lengths="token_len"),
    "txt_tok": FieldSpec("txt_tok", (C, L, D), "int8", "text", lengths="token_len"),
    "token_spans": FieldSpec("token_spans", (C, L, 2), "int32", "text", lengths="token_len"),
    "txt_emb": FieldSpec("txt_emb", (C, D), "fp32", "text"),
}
# image of each sample, in write order: runs of one image share its fields
IMAGES = ["a", "a", "a", "b", "c", "c", "a", "d", "d", "d", "d"]


def spec(fmt: str, fields=FIELDS, max_count: int = 4) -> CacheSpec:
    return CacheSpec(
        format=fmt,
        dataset={"adapter": "test"},
        fields=dict(fields),
        limits=ShardLimits(max_count=max_count),
    )


def sample(index: int, image: str) -> dict[str, np.ndarray]:
    """Arrays as an extraction gives them: real values up to each length, junk beyond (the
    teacher's states at padded positions), the same image arrays for the same image."""
    rng = np.random.default_rng(index)
    pic = np.random.default_rng(ord(image))
    lengths = rng.integers(1, L + 1, C)
    return {
        "img_grid": pic.standard_normal((5, D)).astype(np.float16),
        "pixels": pic.integers(0, 256, (2, 3), dtype=np.uint8),
        "token_len": lengths,
        "token_ids": rng.integers(1, 30000, (C, L)),
        "txt_tok": rng.standard_normal((C, L, D)).astype(np.float32),
        "token_spans": rng.integers(0, 50, (C, L, 2)),
        "txt_emb": rng.standard_normal((C, D)).astype(np.float32),
    }


def padded(array: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    out = np.zeros_like(array)
    for c, n in enumerate(lengths):
        out[c, :n] = array[c, :n]
    return out


def build(out, fmt: str, images=IMAGES, max_count: int = 4) -> dict[str, dict]:
    builder = CacheBuilder(out, spec(fmt, max_count=max_count))
    written = {}
    with builder.split("train") as writer:
        for index, image in enumerate(images):
            arrays = sample(index, image)
            writer.write(f"k{index}", arrays, {"image": image}, image=image)
            written[f"k{index}"] = arrays
    builder.finish()
    return written


@pytest.fixture(params=["wds", "hdf5"])
def fmt(request) -> str:
    return request.param


def check_sample(got: dict, arrays: dict) -> None:
    lengths = arrays["token_len"]
    assert np.array_equal(got["token_len"], lengths)
    assert np.array_equal(got["img_grid"], arrays["img_grid"])
    assert np.array_equal(got["pixels"], arrays["pixels"])
    assert np.array_equal(got["txt_emb"], arrays["txt_emb"])
    assert got["token_ids"].shape == (C, L)
    assert np.array_equal(got["token_ids"], padded(arrays["token_ids"], lengths))
    assert np.array_equal(got["token_spans"], padded(arrays["token_spans"], lengths))
    bound = np.abs(arrays["txt_tok"]).max(axis=-1, keepdims=True) / 254 * (1 + 1e-6)
    real = padded(arrays["txt_tok"], lengths)
    assert np.all(np.abs(got["txt_tok"] - real) <= bound)
    assert not got["txt_tok"][~(np.arange(L)[None] < lengths[:, None])].any()


def test_round_trip_by_key_and_in_order(tmp_path, fmt):
    written = build(tmp_path / "c", fmt)
    split = CacheReader(tmp_path / "c", as_float32=True).split("train")
    for key, arrays in written.items():
        check_sample(split[key], arrays)
    streamed = list(split)
    assert [s["__key__"] for s in streamed] == list(written)
    for got in streamed:
        check_sample(got, written[got["__key__"]])
    assert verify_cache(tmp_path / "c").ok


def test_a_subset_of_ragged_fields_reads_its_lengths(tmp_path, fmt):
    written = build(tmp_path / "c", fmt)
    split = CacheReader(tmp_path / "c").split("train", fields=["token_ids"])
    got = split["k4"]
    assert set(got) == {"__key__", "meta", "token_ids", "token_len"}
    assert np.array_equal(got["token_ids"], padded(written["k4"]["token_ids"], got["token_len"]))


def stored_images(out, fmt: str) -> list[int]:
    """Copies of the per-image fields in each shard."""
    counts = []
    for path in sorted((out / "train").glob("*.tar" if fmt == "wds" else "*.h5")):
        if fmt == "wds":
            with tarfile.open(path) as tar:
                counts.append(sum(m.name.endswith(".img_grid.npy") for m in tar.getmembers()))
        else:
            with h5py.File(path) as handle:
                counts.append(len(handle["fields/img_grid"]))
    return counts


def test_each_run_of_an_image_is_stored_once_per_shard(tmp_path, fmt):
    build(tmp_path / "c", fmt)
    # shards of 4: [a a a b] [c c a d] [d d d]: d starts the third shard again
    assert stored_images(tmp_path / "c", fmt) == [2, 3, 1]


def test_ragged_fields_store_only_real_rows(tmp_path, fmt):
    written = build(tmp_path / "c", fmt)
    real = sum(int(arrays["token_len"].sum()) for arrays in written.values())
    path = sorted((tmp_path / "c" / "train").iterdir())[0]
    if fmt == "hdf5":
        rows = 0
        for path in sorted((tmp_path / "c" / "train").glob("*.h5")):
            with h5py.File(path) as handle:
                rows += len(handle["fields/txt_tok"])
                assert len(handle["scales/txt_tok"]) == len(handle["fields/txt_tok"])
                assert handle["starts/txt_tok"][0] == 0
        assert rows == real
    else:
        sizes = 0
        for path in sorted((tmp_path / "c" / "train").glob("*.tar")):
            for item in webdataset.WebDataset(str(path), shardshuffle=False).decode():
                sizes += len(item["token_ids.npy"])
        assert sizes == real


def test_plain_webdataset_reading_rule(tmp_path):
    """The reading note's rule: a sample without the per-image members shares the previous
    sample's; a ragged member splits by token_len."""
    written = build(tmp_path / "c", "wds")
    previous = {}
    for path in sorted((tmp_path / "c" / "train").glob("*.tar")):
        previous = {}  # a shard always starts with its image's members
        for item in webdataset.WebDataset(str(path), shardshuffle=False).decode():
            key = item["json"]["key"]
            if "img_grid.npy" in item:
                previous = item
            grid = previous["img_grid.npy"]
            assert np.array_equal(grid, written[key]["img_grid"])
            lengths = item["token_len.npy"]
            ids = np.split(item["token_ids.npy"], np.cumsum(lengths)[:-1])
            for c, n in enumerate(lengths):
                assert np.array_equal(ids[c], written[key]["token_ids"][c, :n])


def test_plain_h5py_reading_rule(tmp_path):
    written = build(tmp_path / "c", "hdf5")
    with h5py.File(tmp_path / "c" / "train" / "train-000001.h5") as handle:
        keys = [k.decode() for k in handle["keys"][:]]
        for row, key in enumerate(keys):
            grid = handle["fields/img_grid"][handle["image_row"][row]]
            assert np.array_equal(grid, written[key]["img_grid"])
            start, stop = handle["starts/token_ids"][row : row + 2]
            lengths = handle["fields/token_len"][row]
            assert stop - start == lengths.sum()
            flat = handle["fields/token_ids"][start:stop]
            assert np.array_equal(flat[: lengths[0]], written[key]["token_ids"][0, : lengths[0]])


def test_without_an_image_name_nothing_is_shared(tmp_path, fmt):
    builder = CacheBuilder(tmp_path / "c", spec(fmt))
    with builder.split("train") as writer:
        for index in range(3):
            writer.write(f"k{index}", sample(index, "a"), {})
    builder.finish()
    assert stored_images(tmp_path / "c", fmt) == [3]


def test_bad_lengths_are_named(tmp_path):
    builder = CacheBuilder(tmp_path / "c", spec("wds"))
    arrays = sample(0, "a")
    arrays["token_len"] = np.array([1, L + 1, 2])
    with builder.split("train") as writer, pytest.raises(ValueError, match="'k0'.*lengths"):
        writer.write("k0", arrays, {})


def test_a_ragged_field_needs_a_declared_lengths_field():
    fields = dict(FIELDS)
    del fields["token_len"]
    with pytest.raises(ValueError, match="ragged by 'token_len'"):
        spec("wds", fields)
    with pytest.raises(ValueError, match=r"needs a \[C, L, \.\.\.\] shape"):
        FieldSpec("x", (3,), "int32", lengths="token_len")


def test_verify_finds_a_ragged_member_that_does_not_match_its_lengths(tmp_path):
    """Lengths edited in a shard (its sha256 rewritten to match) no longer fit the stored rows."""
    build(tmp_path / "c", "hdf5")
    path = tmp_path / "c" / "train" / "train-000000.h5"
    with h5py.File(path, "r+") as handle:
        handle["fields/token_len"][0] = np.array([L, L, L])
    manifest_path = tmp_path / "c" / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["splits"]["train"]["shards"][0]["file"].update(
        bytes=path.stat().st_size, sha256=sha256_file(path)
    )
    manifest_path.write_text(json.dumps(data))
    report = verify_cache(tmp_path / "c")
    assert not report.ok
    assert any("'k0'" in problem and "token" in problem for problem in report.problems)


def test_an_hdf5_flush_of_repeats_only_and_samples_not_sharing_memory(tmp_path, fmt):
    """1,030 samples: the last 10 repeat one image, after HDF5's flush at 1,024 rows."""
    fields = {"img": FieldSpec("img", (2,), "fp32", "v", per_image=True)}
    builder = CacheBuilder(tmp_path / "c", spec(fmt, fields, max_count=5000))
    with builder.split("train") as writer:
        for index in range(1030):
            image = str(min(index, 1020))
            writer.write(f"k{index}", {"img": np.array([index, 0.5])}, {}, image=image)
    builder.finish()
    samples = list(CacheReader(tmp_path / "c").split("train"))
    assert [s["img"][0] for s in samples[1018:]] == [1018, 1019] + [1020] * 10
    assert not np.shares_memory(samples[-1]["img"], samples[-2]["img"])
    samples[-1]["img"][0] = -1  # a consumer writing into one sample leaves its neighbour alone
    assert samples[-2]["img"][0] == 1020


def test_a_ragged_field_is_per_sample():
    with pytest.raises(ValueError, match="per sample, not per image"):
        FieldSpec("x", (3, 4), "int32", per_image=True, lengths="token_len")
