"""Written arrays come back bit-exact (int8 within its bound), by key and in order."""

import io
import json
import tarfile
import zlib

import h5py
import numpy as np
import pytest
import webdataset

from extract.store import CacheReader, encode
from extract.store.keys import member_key
from extract.store.npy import npy_bytes
from extract.store.tar_shard import TarShardWriter
from tests.conftest import FIELDS, make_sample


def expected(name: str, array: np.ndarray) -> np.ndarray:
    """What the stored form of ``array`` decodes to (int8: dequantised)."""
    spec = FIELDS[name]
    values, scale = encode(spec, array)
    if scale is None:
        return values
    return values.astype(np.float32) * scale[..., None]


def test_random_access_is_bit_exact(cache):
    out, written = cache
    reader = CacheReader(out)
    for split, samples in written.items():
        split_reader = reader.split(split)
        assert len(split_reader) == len(samples)
        assert split_reader.keys() == list(samples)
        for key, arrays in samples.items():
            sample = split_reader[key]
            assert sample["__key__"] == key
            assert sample["meta"]["texts"][1] == "ß ü"
            for name, array in arrays.items():
                want = expected(name, array)
                got = sample[name]
                if FIELDS[name].storage == "int8":
                    assert got.dtype == np.float16
                    assert np.allclose(got.astype(np.float32), want, atol=1e-2)
                else:
                    assert got.dtype == FIELDS[name].dtype
                    assert np.array_equal(got, want)


def test_float32_decoding_and_field_subset(cache):
    out, written = cache
    split = CacheReader(out, as_float32=True).split("train", fields=["txt_tok", "pixels"])
    for key, arrays in written["train"].items():
        sample = split[key]
        assert set(sample) == {"__key__", "meta", "txt_tok", "pixels"}
        assert sample["pixels"].dtype == np.float32
        assert np.array_equal(sample["pixels"], arrays["pixels"].astype(np.float32))
        bound = np.abs(arrays["txt_tok"]).max(axis=-1, keepdims=True) / 254
        assert np.all(np.abs(sample["txt_tok"] - arrays["txt_tok"]) <= bound * (1 + 1e-6))
        assert np.array_equal(sample["txt_tok"], expected("txt_tok", arrays["txt_tok"]))


def test_iteration_follows_write_order(cache):
    out, written = cache
    split = CacheReader(out).split("train")
    assert [s["__key__"] for s in split] == list(written["train"])
    assert [len(shard_record.file.name) > 0 for shard_record in split.shards] == [True] * 3


def test_shared_data(cache):
    out, _ = cache
    reader = CacheReader(out)
    assert reader.shared("answer_vocab") == ["yes", "no"]
    assert np.array_equal(reader.shared("answer_emb"), np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(ValueError, match="no shared entry 'missing'"):
        reader.shared("missing")


def test_unknown_split_and_field_are_named(cache):
    out, _ = cache
    reader = CacheReader(out)
    with pytest.raises(ValueError, match=r"no split 'test'; the cache has \['train', 'val'\]"):
        reader.split("test")
    with pytest.raises(ValueError, match=r"no field\(s\) \['nope'\]"):
        reader.split("train", fields=["nope"])


@pytest.mark.parametrize("fmt", ["wds"])
def test_plain_webdataset_and_tarfile_read_the_shards(cache):
    out, written = cache
    shards = sorted(str(p) for p in (out / "train").glob("*.tar"))
    dataset = webdataset.WebDataset(shards, shardshuffle=False).decode()
    seen = {}
    for sample in dataset:
        meta = sample["json"]
        seen[meta["key"]] = sample
    assert list(seen) == list(written["train"])
    for key, arrays in written["train"].items():
        assert np.array_equal(seen[key]["img_emb.npy"], arrays["img_emb"].astype(np.float16))
        assert np.array_equal(seen[key]["pixels.npy"], arrays["pixels"])
        # int8: one structured member, a (values, scale) record per vector
        packed = seen[key]["txt_tok.npy"]
        assert packed.dtype.names == ("values", "scale") and packed.shape == (2, 3)
        restored = packed["values"] * packed["scale"][..., None]
        assert np.array_equal(restored, expected("txt_tok", arrays["txt_tok"]))
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
        members = len(FIELDS) + 1
        first = json.load(tar.extractfile(names[members - 1]))
    assert names[0].endswith(".img_emb.npy") and names[members - 1].endswith(".json")
    assert first["key"] == next(iter(written["train"]))


@pytest.mark.parametrize("fmt", ["hdf5"])
def test_plain_h5py_reads_the_shards(cache):
    out, written = cache
    keys, img = [], []
    for path in sorted((out / "train").glob("*.h5")):
        with h5py.File(path, "r") as handle:
            keys += [k.decode() for k in handle["keys"][:]]
            img.append(handle["fields/img_emb"][:])
            assert handle["fields/pixels"].chunks[0] <= 4  # chunked by rows
            assert handle["scales/txt_tok"].shape[1:] == (2, 3)
    assert keys == list(written["train"])
    want = np.stack([a["img_emb"].astype(np.float16) for a in written["train"].values()])
    assert np.array_equal(np.concatenate(img), want)


def records(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int8 vectors and their scales as (values, scale) records, built row by row."""
    dtype = np.dtype([("values", "i1", (values.shape[-1],)), ("scale", "<f4")])
    rows = zip(values.reshape(-1, values.shape[-1]), scale.reshape(-1), strict=True)
    return np.array([tuple(row) for row in rows], dtype).reshape(values.shape[:-1])


def test_tar_shard_bytes_are_those_of_tarfile(tmp_path):
    # members written directly must give exactly what tarfile writes, a long (PAX) name included
    fields = {"v": FIELDS["img_emb"], "q": FIELDS["txt_tok"]}
    samples = [("short", make_sample(1, fields)), ("k" * 150, make_sample(2, fields))]
    writer = TarShardWriter(tmp_path / "ours.tar", fields)
    reference = tarfile.open(tmp_path / "tarfile.tar", "w", format=tarfile.PAX_FORMAT)
    spans = []
    for key, arrays in samples:
        encoded = {name: encode(spec, arrays[name]) for name, spec in fields.items()}
        meta = json.dumps({"key": key}).encode()
        locations, checksums = writer.add(key, encoded, meta)
        members = [(f"{member_key(key)}.v.npy", npy_bytes(encoded["v"][0]))]
        members += [(f"{member_key(key)}.q.npy", npy_bytes(records(*encoded["q"])))]
        members += [(f"{member_key(key)}.json", meta)]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            reference.addfile(info, io.BytesIO(data))
        assert not (tmp_path / "ours.tar").exists()  # written under a .tmp name until closed
        spans.append((members, locations))
        assert checksums == [zlib.crc32(data) for _, data in members]  # what the reader checks
    writer.close()
    reference.close()
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "tarfile.tar").read_bytes()
    with tarfile.open(tmp_path / "tarfile.tar") as tar:  # the offsets the index stores
        for members, locations in spans:
            starts = [tar.getmember(name).offset_data for name, _ in members]
            assert locations[0::2] == starts
            assert locations[1::2] == [len(data) for _, data in members]
