"""Recording figures and rewriting the table of BENCHMARKS.md."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import common, report


def test_targets_are_checked_in_their_direction_and_for_every_size():
    assert common.met("extract_efficiency", 0.85) is True
    assert common.met("extract_efficiency", 0.849) is False
    assert common.met("reader_memory_growth", 1.2) is True
    assert common.met("reader_memory_growth", 1.21) is False
    assert common.met("faiss_recall_at_10", {"1e4": 1.0, "1e6": 0.96}) is True
    assert common.met("faiss_recall_at_10", {"1e4": 1.0, "1e6": 0.94}) is False
    assert common.met("cache_speedup_vit_b16", 50.0) is None  # reported only


def test_record_merges_into_results_and_the_table_keeps_the_hand_written_text(
    tmp_path, monkeypatch
):
    results = tmp_path / "results.json"
    monkeypatch.setattr(common, "RESULTS", results)
    cpu = torch.device("cpu")
    common.record("extract_scaling", 4.5, "python -m benchmarks.extraction", cpu, {"1x": 1})
    common.record("faiss_recall_at_10", {"1e4": 0.99}, "python -m benchmarks.faiss_index", cpu, {})
    common.record("extract_scaling", 3.9, "python -m benchmarks.extraction", cpu, {"1x": 2})
    saved = json.loads(results.read_text())
    assert set(saved) == {"extract_scaling", "faiss_recall_at_10"}
    assert saved["extract_scaling"]["value"] == 3.9 and saved["extract_scaling"]["met"] is True
    assert saved["extract_scaling"]["target"] == "<= 4.4"
    assert "cores" in saved["extract_scaling"]["machine"]

    page = tmp_path / "BENCHMARKS.md"
    page.write_text(
        f"# Benchmarks\n\nintro\n\n{report.START}\nold table\n{report.END}\n\nprofiles\n"
    )
    report.rewrite(page, results)
    text = page.read_text()
    assert "old table" not in text and text.startswith("# Benchmarks\n\nintro\n")
    assert text.endswith(f"{report.END}\n\nprofiles\n")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `faiss_recall_at_10` | >= 0.95 | 1e4: 0.99 | yes |")
    assert rows[1].startswith("| `extract_scaling` | <= 4.4 | 3.9 | yes |")
    assert [report.number(v) for v in (1.0, -0.05, 8.02e-05, 12.0)] == [
        "1.0",
        "-0.05",
        "8.02e-05",
        "12.0",
    ]
    report.rewrite(page, results)  # a second rewrite changes nothing
    assert page.read_text() == text


def test_a_page_without_markers_is_refused(tmp_path):
    results = tmp_path / "results.json"
    results.write_text("{}")
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n")
    with pytest.raises(ValueError, match="markers"):
        report.rewrite(page, results)
