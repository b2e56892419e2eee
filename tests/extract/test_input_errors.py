"""Damaged or missing input files through the real commands: ``python -m extract.run`` exits 1
with one ``error:`` line naming the file, the place (line and column) and what to do; a cache's
own damaged JSON is named the same way by ``python -m extract.verify``."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from extract.run import main as run_cli
from extract.store.atomic import json_error, read_json
from extract.verify import main as verify_cli
from tests.conftest import build_cache
from tests.extract.fixtures import write_snli_ve, write_vcr, write_vqa

VQA_URL = "https://visualqa.org/download.html"


def failed_extraction(tmp_path, dataset: str, root, *extra: str) -> str:
    """The one ``error:`` line of an extraction that must fail with exit code 1."""
    out = tmp_path / "cache"
    arguments = ["--dataset", dataset, "--root", str(root), "--out", str(out), "--no-index"]
    result = CliRunner().invoke(run_cli, [*arguments, "--workers", "0", *extra])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert not out.exists()  # the records are read before anything is written
    return errors[0]


def cut(path, before: str) -> int:
    """Truncate a one-line file right after the first ``before``; the 1-based column where the
    JSON then stops parsing."""
    text = path.read_text()
    end = text.index(before) + len(before)
    path.write_text(text[:end])
    return end + 1


# Truncated or damaged JSON


def test_truncated_vqa_questions_file(tmp_path):
    root = write_vqa(tmp_path / "vqa", {"train": 3, "val": 2})
    questions = root / "v2_OpenEnded_mscoco_val2014_questions.json"
    column = cut(questions, '"questions": [{')
    error = failed_extraction(tmp_path, "vqa", root, "--dataset-option", "min_answer_count=1")
    assert error == (
        f"error: {questions}: truncated or not valid JSON at line 1 column {column} (Expecting "
        "property name enclosed in double quotes); the file is incomplete or damaged: download "
        f"v2_Questions_Val_mscoco.zip again from {VQA_URL}"
    )


def test_truncated_vqa_annotations_file(tmp_path):
    root = write_vqa(tmp_path / "vqa", {"train": 3})
    annotations = root / "v2_mscoco_train2014_annotations.json"
    column = cut(annotations, '"answers": [')
    error = failed_extraction(tmp_path, "vqa", root)
    assert error == (
        f"error: {annotations}: truncated or not valid JSON at line 1 column {column} (Expecting "
        "value); the file is incomplete or damaged: download v2_Annotations_Train_mscoco.zip "
        f"again from {VQA_URL}"
    )


def test_damaged_line_in_vcr_jsonl_names_file_line_and_column(tmp_path):
    root = write_vcr(tmp_path / "vcr", {"train": 3})
    lines = (root / "train.jsonl").read_text().splitlines(keepends=True)
    lines[1] = '{"movie": \n'  # a line cut short, with the others intact
    (root / "train.jsonl").write_text("".join(lines))
    error = failed_extraction(tmp_path, "vcr", root)
    assert error == (
        f"error: {root / 'train.jsonl'}: truncated or not valid JSON at line 2 column 11 "
        "(Expecting value); the file is incomplete or damaged: download vcr1annots.zip again "
        "and unzip it"
    )


def test_truncated_vcr_metadata_file(tmp_path):
    root = write_vcr(tmp_path / "vcr", {"train": 2})
    metadata = sorted((root / "vcr1images").rglob("*.json"))[0]
    column = cut(metadata, '"boxes": [[')
    error = failed_extraction(tmp_path, "vcr", root)
    assert error == (
        f"error: {metadata}: truncated or not valid JSON at line 1 column {column} (Expecting "
        "value); the file is incomplete or damaged: download vcr1images.zip again and unzip it"
    )


def test_truncated_snli_ve_jsonl_names_its_last_line(tmp_path):
    root = write_snli_ve(tmp_path / "snli_ve", {"train": 3})
    path = root / "snli_ve_train.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + '{"Flikr30kID": "1002.jpg", "pairID": "10')  # cut
    error = failed_extraction(tmp_path, "snli_ve", root)
    assert error == (
        f"error: {path}: truncated or not valid JSON at line 3 column 38 (Unterminated string "
        "starting); the file is incomplete or damaged: download it again from "
        "https://github.com/necla-ml/SNLI-VE"
    )


def test_bytes_that_are_not_utf8_are_named_by_line_and_column(tmp_path):
    root = write_snli_ve(tmp_path / "snli_ve", {"train": 2})
    path = root / "snli_ve_train.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"sentence2": "', b'"sentence2": "\xff', 1))
    error = failed_extraction(tmp_path, "snli_ve", root)
    column = path.read_bytes().index(b"\xff") + 1
    assert error.startswith(
        f"error: {path}: truncated or not valid JSON at line 1 column {column} (not UTF-8 text: "
        "invalid start byte); "
    )


def test_a_caches_damaged_json_is_named_by_verify(tmp_path):
    out = tmp_path / "cache"
    build_cache(out, splits={"train": 3})
    manifest = out / "manifest.json"
    manifest.write_text(manifest.read_text()[:-40])
    with pytest.raises(ValueError) as caught:
        read_json(manifest)
    result = CliRunner().invoke(verify_cli, ["--cache", str(out), "--no-decode"])
    assert result.exit_code == 1
    assert f"  - manifest: {caught.value}" in result.output.splitlines()
    assert str(caught.value).startswith(f"{manifest}: truncated or not valid JSON at line ")
    assert str(caught.value).endswith(
        "; the file is damaged: delete the cache directory and extract again"
    )


def test_one_message_for_both_kinds_of_decoding_error():
    try:
        json.loads('{"a": [1,\n 2,, 3]}')
    except json.JSONDecodeError as error:
        message = str(json_error("x.json", error, fix="fix it"))
    assert message == (
        "x.json: truncated or not valid JSON at line 2 column 4 (Expecting value); fix it"
    )
    try:
        b'{"a":\n "caf\xe9"}'.decode("utf-8")
    except UnicodeDecodeError as error:
        message = str(json_error("x.json", error, fix="fix it", line=7))
    assert message == (
        "x.json: truncated or not valid JSON at line 7 column 6 (not UTF-8 text: invalid "
        "continuation byte); fix it"
    )


# Missing files


def test_missing_vqa_questions_file_is_named_with_its_zip(tmp_path):
    root = write_vqa(tmp_path / "vqa", {"train": 3, "val": 2})
    questions = root / "v2_OpenEnded_mscoco_train2014_questions.json"
    questions.unlink()  # its annotations are still there: the split is not silently left out
    expected = (
        f"error: VQA v2 questions file {questions} not found: it is in "
        f"v2_Questions_Train_mscoco.zip from {VQA_URL}; unzip that into {root}"
    )
    assert failed_extraction(tmp_path, "vqa", root) == expected
    (root / "v2_mscoco_train2014_annotations.json").unlink()  # nothing of train left
    extra = ("--split", "train", "--dataset-option", "min_answer_count=1")
    assert failed_extraction(tmp_path, "vqa", root, *extra) == expected


def test_missing_vqa_annotations_file_is_named_with_its_zip(tmp_path):
    root = write_vqa(tmp_path / "vqa", {"train": 3, "val": 2})
    annotations = root / "v2_mscoco_val2014_annotations.json"
    annotations.unlink()
    error = failed_extraction(tmp_path, "vqa", root, "--dataset-option", "min_answer_count=1")
    assert error == (
        f"error: VQA v2 annotation file {annotations} not found: it is in "
        f"v2_Annotations_Val_mscoco.zip from {VQA_URL}; unzip that into {root}"
    )


def test_missing_split_files_and_image_folders(tmp_path):
    vcr = write_vcr(tmp_path / "vcr", {"train": 1})
    assert failed_extraction(tmp_path, "vcr", vcr, "--split", "val") == (
        f"error: split 'val' of vcr is not present under {vcr} (no val.jsonl there); "
        "present: ['train']"
    )
    snli_ve = write_snli_ve(tmp_path / "snli_ve", {"train": 1})
    assert failed_extraction(tmp_path, "snli_ve", snli_ve, "--split", "dev") == (
        f"error: split 'dev' of snli_ve is not present under {snli_ve} (no snli_ve_dev.jsonl "
        "there); present: ['train']"
    )
    shutil.rmtree(vcr / "vcr1images")
    error = failed_extraction(tmp_path, "vcr", vcr)
    assert error.startswith(f"error: VCR image folder {vcr / 'vcr1images'} not found. Download ")
    shutil.rmtree(snli_ve / "flickr30k_images")
    error = failed_extraction(tmp_path, "snli_ve", snli_ve)
    assert error.startswith(f"error: Flickr30k image folder {snli_ve / 'flickr30k_images'} not ")
