"""The extraction records each split's role and whether its labels are known."""

from __future__ import annotations

from extract.store import load_manifest
from tests.extract.fixtures import write_vcr
from tests.extract.test_run import FAST, run, write_tiny_clip


def test_roles_come_from_names_labels_from_the_records_and_the_user_decides(tmp_path):
    root = write_vcr(tmp_path / "data", {"train": 2, "val": 1, "test": 1})
    teacher, _ = write_tiny_clip(tmp_path)
    args = ["--dataset", "vcr", "--root", str(root), "--teachers", teacher, "--no-index", *FAST]
    assert run([*args, "--out", str(tmp_path / "named")]).exit_code == 0
    assert load_manifest(tmp_path / "named").spec.config["split_roles"] == {
        "train": {"role": "train", "labels": True},
        "val": {"role": "val", "labels": True},
        "test": {"role": "test", "labels": False},  # VCR's test labels are not released
    }
    chosen = run([*args, "--out", str(tmp_path / "chosen"), "--split-role", "val=test"])
    assert chosen.exit_code == 0, chosen.output
    roles = load_manifest(tmp_path / "chosen").spec.config["split_roles"]
    assert roles["val"] == {"role": "test", "labels": True}
    unknown = run([*args, "--out", str(tmp_path / "x"), "--split-role", "heldout=test"])
    assert unknown.exit_code == 1 and "names split(s) ['heldout']" in unknown.output
    bad = run([*args, "--out", str(tmp_path / "y"), "--split-role", "val=selection"])
    assert bad.exit_code == 2 and "Invalid value for --split-role" in bad.output


def test_a_split_without_records_is_refused_naming_its_file(tmp_path):
    root = write_vcr(tmp_path / "data", {"train": 2, "val": 1})
    (root / "val.jsonl").write_text("")
    teacher, _ = write_tiny_clip(tmp_path)
    args = ["--dataset", "vcr", "--root", str(root), "--teachers", teacher, "--no-index", *FAST]
    result = run([*args, "--out", str(tmp_path / "cache")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"split 'val' has no usable record in {root / 'val.jsonl'}" in result.output
    assert run([*args, "--out", str(tmp_path / "cache"), "--split", "train"]).exit_code == 0
