"""A small demo configuration runs end to end: generate, extract (real and random teachers),
the protocol over none / naive / mad / mad-pool / mad on the control, the report; then reused."""

import pytest
from click.testing import CliRunner

from extract.store import verify_cache
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
    for cache in ("vqa-real", "vqa-random"):  # the synthetic data extracts to valid caches
        report = verify_cache(tmp_path / "demo" / cache)
        assert report.ok, report.problems
    capfd.readouterr()
    again = CliRunner().invoke(demo, args)  # everything reused
    assert again.exit_code == 0, again.output
    assert "12 cells: 12 finished, 0 to train" in capfd.readouterr().out  # the protocol's own
