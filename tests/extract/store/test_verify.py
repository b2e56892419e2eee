"""verify passes a good cache and names each kind of damage."""

import numpy as np
import pytest
from click.testing import CliRunner

from extract.store import CacheBuilder, verify_cache
from extract.verify import main as verify_cli
from tests.conftest import make_sample, make_spec


def shard(out, fmt, number=1):
    suffix = ".tar" if fmt == "wds" else ".h5"
    return out / "train" / f"train-{number:06d}{suffix}"


def test_good_cache_passes(cache):
    out, _ = cache
    report = verify_cache(out)
    assert report.ok, report.problems
    assert report.splits["train"].samples == 10 and report.splits["train"].shards == 3
    result = CliRunner().invoke(verify_cli, ["--cache", str(out)])
    assert result.exit_code == 0, result.output
    assert "OK: every shard matches the manifest" in result.output


def test_flipped_byte_is_found(cache, fmt):
    out, _ = cache
    path = shard(out, fmt)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify_cache(out)
    assert [p for p in report.problems if "sha256 differs" in p and path.name in p]
    result = CliRunner().invoke(verify_cli, ["--cache", str(out)])
    assert result.exit_code == 1 and "FAILED" in result.output


def test_truncated_shard_is_found(cache, fmt):
    out, _ = cache
    path = shard(out, fmt)
    path.write_bytes(path.read_bytes()[:-700])
    problems = verify_cache(out).problems
    assert any(path.name in p and "truncated" in p for p in problems), problems


def test_missing_shard_is_found(cache, fmt):
    out, _ = cache
    shard(out, fmt, 2).unlink()
    problems = verify_cache(out, decode=False).problems
    assert any(f"{shard(out, fmt, 2).name}: missing" in p for p in problems), problems


def test_missing_manifest_is_found(cache):
    out, _ = cache
    (out / "manifest.json").unlink()
    report = verify_cache(out)
    assert not report.ok and "not a finished cache" in report.problems[0]


def test_nan_is_found(tmp_path, fmt):
    out = tmp_path / "nan"
    builder = CacheBuilder(out, make_spec(fmt), allow_nonfinite=True)
    with builder.split("train") as split:
        for i in range(3):
            arrays = make_sample(i)
            if i == 1:
                arrays["img_raw"][2] = np.nan
            split.write(f"k{i}", arrays)
    builder.finish()
    problems = verify_cache(out).problems
    where = f"train/train-000000{shard(out, fmt).suffix}"
    assert problems == [f"{where}: sample 'k1', field 'img_raw': NaN or infinite values"]


def test_writer_refuses_nan_by_default(tmp_path):
    builder = CacheBuilder(tmp_path / "c", make_spec())
    arrays = make_sample(0)
    arrays["img_emb"][0] = 1e6  # overflows float16
    split = builder.split("train")
    with pytest.raises(ValueError, match="sample 'k0', field 'img_emb': NaN or infinite"):
        split.write("k0", arrays)
    arrays = make_sample(1)
    arrays["txt_tok"][0, 0, 3] = np.nan  # int8: the NaN would hide in the vector's scale
    with pytest.raises(ValueError, match="sample 'k1', field 'txt_tok': NaN or infinite"):
        split.write("k1", arrays)
