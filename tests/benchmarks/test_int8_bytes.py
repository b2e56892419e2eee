"""The member accounting behind int8_bytes_ratio, on a small cache with known members."""

import json
import tarfile

import pytest

from benchmarks.int8 import member_bytes, quantised_fields
from tests.conftest import build_cache


def test_member_bytes_count_headers_and_padding(tmp_path):
    out = tmp_path / "cache"
    build_cache(out, "wds", splits={"train": 5, "val": 3}, max_count=2)
    by_kind = member_bytes(out)
    assert set(by_kind) == {
        "img_emb.npy", "img_q.npy", "img_raw.npy", "json", "pixels.npy", "token_ids.npy",
        "txt_tok.npy",
    }  # fmt: skip
    # img_emb: fp16 [8] = 128-byte .npy header + 16 bytes -> one 512-byte block + its tar header;
    # txt_tok: int8 [2, 3, 8] and 6 scales = 128 + 6 * (8 + 4) bytes -> the same
    assert by_kind["img_emb.npy"] == 1024 and by_kind["txt_tok.npy"] == 1024
    # everything in the tar files but their end-of-archive blocks is some sample's member
    manifest = json.loads((out / "manifest.json").read_text())
    shards = [shard for split in manifest["splits"].values() for shard in split["shards"]]
    members = sum(by_kind.values()) * sum(shard["count"] for shard in shards)
    ends = 0
    for shard in shards:
        path = out / shard["file"]["name"]
        with tarfile.open(path) as tar:
            last = tar.getmembers()[-1]
        ends += path.stat().st_size - last.offset_data - (-(-last.size // 512) * 512)
    assert members + ends == pytest.approx(sum(shard["file"]["bytes"] for shard in shards))


def test_quantised_fields_are_the_int8_ones(tmp_path):
    out = tmp_path / "cache"
    build_cache(out, "wds")
    assert quantised_fields(out) == {"txt_tok", "img_q"}
