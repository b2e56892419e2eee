"""A small demo configuration runs end to end: generate, extract (real and random teachers),
train none / naive / mad / mad on the control, compare."""

import pytest
from click.testing import CliRunner

from extract.store import verify_cache
from train.demo import main as demo


@pytest.mark.slow
def test_small_demo_end_to_end(tmp_path):
    args = [
        "--small",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "demo"),
        "--seeds",
        "1,2",
        "--epochs",
        "1",
    ]
    result = CliRunner().invoke(demo, args)
    assert result.exit_code == 0, result.output
    report = (tmp_path / "demo" / "report.md").read_text()
    for method in ("| none |", "| naive |", "| mad |", "| mad (random teachers) |"):
        assert method in report
    assert "| method | val | test | test_shifted |" in report and "+-" in report
    assert (
        "## Per question type" in report and "| colour |" in report.split("## Per question type")[1]
    )
    assert (tmp_path / "demo" / "report.png").is_file()
    for cache in ("vqa-real", "vqa-random"):  # the synthetic data extracts to valid caches
        report = verify_cache(tmp_path / "demo" / cache)
        assert report.ok, report.problems
    again = CliRunner().invoke(demo, args)  # everything reused
    assert again.exit_code == 0 and again.output.count("reusing") == 4
