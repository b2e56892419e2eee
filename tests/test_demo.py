"""A small demo configuration runs end to end: generate, extract (the real teachers, then the
random ones added as a column group), the protocol over none / naive / mad / mad-pool / mad on
the control group, the report; then reused."""

import json

import pytest
from click.testing import CliRunner

from extract.store import CacheReader, verify_cache
from train.demo import main as demo


@pytest.mark.slow
def test_small_demo_end_to_end(tmp_path, capfd):
    args = ["--small", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "demo")]
    args += ["--seeds", "1,2", "--jobs", "1"]
    result = CliRunner().invoke(demo, args)
    assert result.exit_code == 0, result.output
    report = (tmp_path / "demo" / "report.md").read_text()
    for arm in ("none", "naive", "mad", "mad-pool", "mad@control"):
        assert f"| tiny | {arm} |" in report
    for difference in ("mad - none", "mad - naive", "mad - mad@control", "mad-pool - mad"):
        assert f"| {difference} |" in report
    assert "(n=2)" in report and "## test_shifted" in report
    assert "colour" in report.split("## test_shifted")[1]  # per question type
    for split in ("val", "test", "test_shifted"):
        assert (tmp_path / "demo" / f"lowshot-{split}.png").is_file()
    cache = tmp_path / "demo" / "vqa"  # one base, the real and the random teachers' groups
    report = verify_cache(cache)
    assert report.ok, report.problems
    assert list(CacheReader(cache).manifest.groups) == ["effnet-lite0-minilm", "random-teachers"]
    cells = tmp_path / "demo" / "cells" / "tiny"
    for arm, group in (("mad", "effnet-lite0-minilm"), ("mad@control", "random-teachers")):
        results = json.loads(
            (cells / arm / "fraction-0.25" / "seed-1" / "results.json").read_text()
        )
        assert results["teachers"] == group  # each arm distilled its own column group
    capfd.readouterr()
    again = CliRunner().invoke(demo, args)  # everything reused
    assert again.exit_code == 0, again.output
    assert "12 cells: 12 finished, 0 to train" in capfd.readouterr().out  # the protocol's own
