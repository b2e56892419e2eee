"""Every stored value is checked as it is read: a tar member against its CRC-32 in the offset
index, an HDF5 chunk against its Fletcher-32 checksum and each sample's json against its CRC-32.
So a reader checks exactly the bytes it uses, and one that skips a field never reads it."""

from __future__ import annotations

import json

import h5py
import pytest

from extract.store import CacheReader, verify_cache
from tests.conftest import build_cache


def damage_tar_member(shard, member: str, row: int = 1) -> str:
    """Flip one bit inside the data of one sample's member; returns the sample's key."""
    index = json.loads(shard.with_suffix("").with_suffix(".idx.json").read_text())
    column = index["members"].index(member)
    offset, size = index["offsets"][row][2 * column : 2 * column + 2]
    data = bytearray(shard.read_bytes())
    data[offset + size - 1] ^= 1  # the last byte: a value, not the .npy header
    shard.write_bytes(bytes(data))
    return index["keys"][row]


def damage_h5_chunk(shard, dataset: str) -> None:
    """Flip one bit inside the first stored chunk of one dataset."""
    with h5py.File(shard, "r") as handle:
        chunk = handle[dataset].id.get_chunk_info(0)
    data = bytearray(shard.read_bytes())
    data[chunk.byte_offset + chunk.size // 2] ^= 1
    shard.write_bytes(bytes(data))


def test_a_changed_tar_member_stops_its_reader_and_no_other(tmp_path):
    out = tmp_path / "cache"
    build_cache(out, "wds")
    shard = out / "train" / "train-000001.tar"
    key = damage_tar_member(shard, "img_emb.npy")
    others = list(CacheReader(out).split("train", ["txt_tok", "pixels"]))
    assert len(others) == 10  # the damaged field is never read, so nothing stops this reader
    with pytest.raises(ValueError) as error:
        list(CacheReader(out).split("train", ["img_emb"]))
    assert str(error.value) == (
        f"{shard}: sample {key!r}, member 'img_emb.npy': its bytes differ from their CRC-32 in "
        "the offset index (the shard was changed); run python -m extract.verify and extract again"
    )
    with pytest.raises(ValueError, match="member 'img_emb.npy'"):
        CacheReader(out).split("train")[key]  # by key as well
    report = verify_cache(out)
    assert not report.ok and any("train/train-000001.tar" in p for p in report.problems)


def test_a_changed_tar_json_is_caught_too(tmp_path):
    out = tmp_path / "cache"
    build_cache(out, "wds")
    damage_tar_member(out / "val" / "val-000000.tar", "json", row=0)
    with pytest.raises(ValueError, match="member 'json': its bytes differ from their CRC-32"):
        list(CacheReader(out).split("val", []))


def test_a_changed_hdf5_chunk_stops_its_reader_and_no_other(tmp_path):
    out = tmp_path / "cache"
    build_cache(out, "hdf5")
    shard = out / "train" / "train-000001.h5"
    damage_h5_chunk(shard, "fields/img_emb")
    assert len(list(CacheReader(out).split("train", ["txt_tok", "pixels"]))) == 10
    with pytest.raises(ValueError, match="dataset 'fields/img_emb' cannot be read .* Fletcher-32"):
        list(CacheReader(out).split("train", ["img_emb"]))
    assert not verify_cache(out).ok


def test_a_changed_hdf5_json_is_caught_by_its_crc(tmp_path):
    out = tmp_path / "cache"
    build_cache(out, "hdf5")
    shard = out / "val" / "val-000000.h5"
    with h5py.File(shard, "r+") as handle:  # the same length, another label
        meta = handle["meta"][0].decode()
        handle["meta"][0] = meta.replace('"label": 0', '"label": 1')
    with pytest.raises(ValueError, match="its json differs from its CRC-32 in the offset index"):
        list(CacheReader(out).split("val", []))


def test_a_cache_of_the_format_before_checksums_is_refused_with_the_fix(tmp_path):
    from extract.store import FORMAT_VERSION, load_manifest

    out = tmp_path / "cache"
    build_cache(out, "wds")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION - 1  # its offset indices hold no CRC-32s
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError) as error:
        load_manifest(out)
    assert str(error.value) == (
        f"{out / 'manifest.json'}: cache format version {FORMAT_VERSION - 1}, this code reads "
        f"version {FORMAT_VERSION}; delete {out} (or choose another --out) and extract it again "
        "with this version"
    )
