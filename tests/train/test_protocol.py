"""python -m train.protocol on tiny caches: a 2 x 2 x 2 grid (fractions x methods x seeds, plus
the control), killed in the middle of a cell and run again; the report recomputed here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from tests.train.tiny_cache import build
from train.grid import Cell, GridSpec, parse_methods
from train.protocol import main as protocol
from train.protocol import parse_seeds

T975_DF1 = 12.7062047  # t(0.975) with one degree of freedom (two seeds)


def arguments(tmp_path) -> list[str]:
    return [
        "--cache", f"real={tmp_path / 'real'}", "--cache", f"control={tmp_path / 'random'}",
        "--fractions", "0.25,0.5", "--seeds", "1,2", "--methods", "none,mad",
        "--control-methods", "mad", "--out", str(tmp_path / "out"),
        "--", "--epochs", "3", "--batch-size", "8", "--eval-split", "val",
    ]  # fmt: skip


def spec(tmp_path) -> GridSpec:
    return GridSpec(
        caches={"real": tmp_path / "real", "control": tmp_path / "random"},
        students=["tiny"],
        methods=parse_methods([], ["none", "mad"]),
        control_methods=["mad"],
        fractions=[0.25, 0.5],
        seeds=[1, 2],
        train_options=[],
    )


def kill_in_the_middle_of_a_cell(tmp_path) -> Cell:
    """Start the protocol, SIGKILL it while a cell has saved an epoch but not finished."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "train.protocol", *arguments(tmp_path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out, deadline = tmp_path / "out", time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            for cell in spec(tmp_path).cells()[1:]:  # after at least one finished cell
                folder = cell.folder(out)
                if (folder / "last.pt").is_file() and not (folder / "results.json").exists():
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    return cell
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
    pytest.fail(f"no cell was caught in the middle: {process.stderr.read().decode()[-2000:]}")


@pytest.mark.slow
def test_grid_is_killed_resumed_and_reported(tmp_path):
    build(tmp_path / "real", "snli_ve")
    build(tmp_path / "random", "snli_ve", seed=7)
    cut = kill_in_the_middle_of_a_cell(tmp_path)
    out = tmp_path / "out"
    finished = {
        cell: (cell.folder(out) / "results.json").stat().st_mtime_ns
        for cell in spec(tmp_path).cells()
        if cell.finished(out)
    }
    assert finished and cut not in finished
    result = CliRunner().invoke(protocol, arguments(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"12 cells: {len(finished)} finished, {12 - len(finished)} to train" in result.output
    for cell, mtime in finished.items():  # reused, not trained again
        assert (cell.folder(out) / "results.json").stat().st_mtime_ns == mtime
    log = (cut.folder(out) / "train.log").read_text()
    assert "resuming after epoch" in log
    lines = (cut.folder(out) / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in lines if json.loads(line)["kind"] == "epoch"]
    assert epochs == [1, 2, 3]
    check_report_independently(tmp_path)


def check_report_independently(tmp_path) -> None:
    out = tmp_path / "out"
    scores = {}
    for cell in spec(tmp_path).cells():
        results = json.loads((cell.folder(out) / "results.json").read_text())
        scores[(cell.arm, cell.fraction, cell.seed)] = results["splits"]["val"]["accuracy"]
    report = json.loads((out / "results.json").read_text())["splits"]["val"]
    for row in report["summaries"]:
        values = [scores[(row["arm"], row["fraction"], seed)] for seed in (1, 2)]
        assert row["n"] == 2 and row["mean"] == pytest.approx(np.mean(values))
        assert row["std"] == pytest.approx(np.std(values, ddof=1))
    assert len(report["summaries"]) == 6  # none, mad, mad@control x 2 fractions
    pairs = {"mad - none": ("mad", "none"), "mad - mad@control": ("mad", "mad@control")}
    for row in report["differences"]:
        first, second = pairs[row["comparison"]]
        diffs = [
            scores[(first, row["fraction"], s)] - scores[(second, row["fraction"], s)]
            for s in (1, 2)
        ]
        half = T975_DF1 * np.std(diffs, ddof=1) / np.sqrt(2)
        assert row["mean"] == pytest.approx(np.mean(diffs))
        assert row["low"] == pytest.approx(np.mean(diffs) - half)
        assert row["high"] == pytest.approx(np.mean(diffs) + half)
        assert row["excludes_zero"] == (row["low"] > 0 or row["high"] < 0)
    assert len(report["differences"]) == 4
    markdown = (out / "report.md").read_text()
    assert "| tiny | mad@control |" in markdown and "(n=2)" in markdown
    assert (out / "lowshot-val.png").is_file() and (out / "differences-val.png").is_file()


def test_grid_names_and_options():
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
    methods = parse_methods(["mad-k8=--distill mad --topk 8"], ["none", "mad-k8"])
    assert methods == {"none": "--distill none", "mad-k8": "--distill mad --topk 8"}
    with pytest.raises(ValueError, match="unknown method"):
        parse_methods([], ["kd"])
    cell = Cell("visualbert-init:minilm", "mad", "control", True, 0.05, 3)
    assert cell.arm == "mad@control"
    assert str(cell.folder(__import__("pathlib").Path("o"))) == (
        "o/cells/visualbert-init-minilm/mad@control/fraction-0.05/seed-3"
    )


def test_usage_errors_exit_2(tmp_path):
    result = CliRunner().invoke(protocol, ["--cache", "x", "--seeds", "a-b"])
    assert result.exit_code == 2 and "1-8" in result.output
    result = CliRunner().invoke(protocol, ["--cache", "x", "--methods", "kd"])
    assert result.exit_code == 2 and "unknown method" in result.output


def test_student_options_come_last_and_win(tmp_path):
    from train.grid import parse_student_options

    grid = spec(tmp_path)
    grid.students = ["tiny", "visualbert-init:minilm"]
    grid.train_options = ["--lr", "1e-3", "--epochs", "20"]
    grid.student_options = parse_student_options(
        ["visualbert-init:minilm=--lr 1e-4 --lr-new 1e-3"], grid.students
    )
    cells = {c.student: c for c in grid.cells() if c.method == "mad" and not c.control}
    tiny = grid.arguments(cells["tiny"], tmp_path)
    minilm = grid.arguments(cells["visualbert-init:minilm"], tmp_path)
    assert "--lr-new" not in tiny and tiny[tiny.index("--lr") + 1] == "1e-3"
    assert minilm[-7:-3] == ["--lr", "1e-4", "--lr-new", "1e-3"]  # after the common options
    from train.run import main as train_command

    assert train_command.make_context("train.run", minilm).params["lr"] == 1e-4  # the last wins
    with pytest.raises(ValueError, match="STUDENT=OPTIONS"):
        parse_student_options(["base=--lr 1"], grid.students)
