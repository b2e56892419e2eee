"""The synthetic generator: the real adapters read every split; balance, shift, determinism, CLI."""

import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from extract.datasets import SnliVeAdapter, VcrAdapter, VqaAdapter, open_dataset
from extract.datasets.synthetic import GeneratorConfig, generate
from extract.datasets.synthetic_text import HYPOTHESES, QUESTIONS, SYNONYMS
from extract.synthetic import main

SMALL = GeneratorConfig(seed=3, train=48, val=12, test=12, test_shifted=24)
SPLITS = {"vqa": ["train", "val", "test", "test_shifted"]}
SPLITS["vcr"] = SPLITS["vqa"]
SPLITS["snli_ve"] = ["train", "dev", "test", "test_shifted"]
IMAGES = {"train": 48, "val": 12, "dev": 12, "test": 12, "test_shifted": 24}
PER_IMAGE = {"vqa": 2, "snli_ve": 3, "vcr": 1}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate(SMALL, out)
    return out


def adapter(root: Path, task: str):
    options = {"min_answer_count": 1} if task == "vqa" else {}
    return open_dataset("synthetic", root, task=task, **options)


def scenes(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / "scenes" / f"{split}.jsonl").open()]


@pytest.mark.parametrize("task", ["vqa", "snli_ve", "vcr"])
def test_real_adapters_read_every_split(root, task):
    data = adapter(root, task)
    assert data.splits() == SPLITS[task]
    for split in data.splits():
        records = list(data.records(split))
        assert len(records) == IMAGES[split] * PER_IMAGE[task]
        image = Image.open(io.BytesIO(data.read_image_bytes(records[0])))
        assert image.format == "JPEG" and image.size == (64, 64)
        for record in records:
            check_record(task, record, data)


def check_record(task: str, record, data) -> None:
    meta = record.meta
    assert meta["question_type"] and meta["shift"]
    if task == "vqa":
        assert len(meta["answers"]) == 10
        assert meta["multiple_choice_answer"] in data.answer_vocab()
        assert max(meta["targets"].values()) == 1.0  # the majority answer is in the vocabulary
    elif task == "snli_ve":
        assert meta["label"] in (0, 1, 2) and meta["premise"]
    else:
        assert 0 <= meta["answer_label"] < 4 and 0 <= meta["rationale_label"] < 4
        assert len(record.boxes) == len(meta["objects"]) >= 1
        for x1, y1, x2, y2 in record.boxes:
            assert 0 <= x1 < x2 <= meta["width"] and 0 <= y1 < y2 <= meta["height"]
        indices = [i for refs in meta["refs"] for ref in refs for i in ref]
        assert all(0 <= i < len(meta["objects"]) for i in indices)
        assert meta["source"] in ("lsmdc", "movieclips")


def test_labels_and_question_types_are_balanced(root):
    def shares(values) -> list[float]:
        counts = Counter(values)
        return [n / sum(counts.values()) for n in counts.values()]

    vqa = [r.meta for r in adapter(root, "vqa").records("train")]
    assert len(shares(m["question_type"] for m in vqa)) == 4
    assert all(0.18 <= s <= 0.32 for s in shares(m["question_type"] for m in vqa))
    yes_no = Counter(m["multiple_choice_answer"] for m in vqa if m["answer_type"] == "yes/no")
    assert yes_no["yes"] == yes_no["no"]
    snli = [r.meta for r in adapter(root, "snli_ve").records("train")]
    assert set(Counter(m["gold_label"] for m in snli).values()) == {48}
    vcr = [r.meta for r in adapter(root, "vcr").records("train")]
    assert all(0.15 <= s <= 0.35 for s in shares(m["question_type"] for m in vcr))
    assert len(set(m["answer_label"] for m in vcr)) == 4
    assert set(Counter(m["source"] for m in vcr)) == {"lsmdc", "movieclips"}


def test_test_shifted_has_unseen_pairs_synonyms_and_paraphrases(root):
    held_out = {tuple(pair) for pair in SMALL.held_out}
    for split in ("train", "val", "test"):
        pairs = {(t["colour"], t["shape"]) for s in scenes(root, split) for t in s["things"]}
        assert not pairs & held_out
    for scene in scenes(root, "test_shifted"):
        assert {(t["colour"], t["shape"]) for t in scene["things"]} & held_out
    train_words = set(" ".join(all_texts(root, "train")).lower().replace("?", " ").split())
    assert not train_words & set(SYNONYMS.values())
    shifted = [r.meta for r in adapter(root, "vqa").records("test_shifted")]
    tags = Counter(tag for m in shifted for tag in m["shift"].split("+"))
    assert tags["paraphrase"] == len(shifted) and tags["synonym"] and tags["unseen_pair"]
    trained, paraphrases = template_patterns(QUESTIONS, 0), template_patterns(QUESTIONS, 1)
    for meta in shifted:
        assert any(p.fullmatch(meta["question"]) for p in paraphrases)
        assert not any(p.fullmatch(meta["question"]) for p in trained), meta["question"]
    for record in adapter(root, "vqa").records("train"):
        assert any(p.fullmatch(record.meta["question"]) for p in trained)
    trained = template_patterns(HYPOTHESES, 0)
    for record in adapter(root, "snli_ve").records("test_shifted"):
        assert not any(p.fullmatch(record.texts[0]) for p in trained), record.texts[0]
        assert record.meta["shift"].startswith("paraphrase")


def template_patterns(table: dict, shifted: int) -> list[re.Pattern]:
    """Each template as a regex: slots match anything, the first letter in either case."""
    patterns = []
    for pairs in table.values():
        for template in pairs[shifted]:
            parts = re.split(r"\{\w+\}", template)
            body = "(.+)".join(re.escape(part) for part in parts)
            patterns.append(re.compile(body, re.IGNORECASE))
    return patterns


def all_texts(root: Path, split: str) -> list[str]:
    texts = [r.texts[0] for task in ("vqa", "snli_ve") for r in adapter(root, task).records(split)]
    for record in adapter(root, "vcr").records(split):
        texts += record.texts + record.meta["objects"]
    return texts


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    config = GeneratorConfig(seed=5, train=6, val=2, test=2, test_shifted=3)
    generate(config, tmp_path / "a")
    generate(config, tmp_path / "b")
    first = files(tmp_path / "a")
    assert first == files(tmp_path / "b")
    assert not any(name.endswith(".tmp") for name in first) and ".generating" not in first
    generate(GeneratorConfig(seed=6, train=6, val=2, test=2, test_shifted=3), tmp_path / "c")
    other = files(tmp_path / "c")  # VCR movie folders follow the scenes' styles: other names
    for name in ("vqa/v2_OpenEnded_mscoco_train2014_questions.json", "snli_ve/snli_ve_dev.jsonl"):
        assert other[name] != first[name]


def test_cli_writes_then_rerun_is_a_no_op(tmp_path):
    out = tmp_path / "syn"
    args = ["--out", str(out), "--train", "8", "--val", "2", "--test", "2", "--shifted", "4"]
    runner = CliRunner()
    assert "--shifted" in runner.invoke(main, ["--help"]).output
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "wrote" in first.output and re.search(r"train\s+8\s+8\s+24\s+16", first.output)
    settings = json.loads((out / "generator.json").read_text())["settings"]["config"]
    assert settings["train"] == 8 and settings["seed"] == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps
    (out / "vcr" / "train.jsonl").unlink()  # an incomplete output is written again
    assert "wrote" in runner.invoke(main, args).output and (out / "vcr" / "train.jsonl").is_file()
    smaller = runner.invoke(main, [*args[:-1], "0"])  # other settings: rewritten, stale split gone
    assert smaller.exit_code == 0 and "wrote" in smaller.output
    assert VqaAdapter(out / "vqa", min_answer_count=1).splits() == ["train", "val", "test"]


def test_cli_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "vqa").mkdir()
    result = CliRunner().invoke(main, ["--out", str(tmp_path), "--train", "2"])
    assert result.exit_code != 0 and "not written by this generator" in result.output
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "x"), "--size", "8"])
    assert result.exit_code != 0 and "too small" in result.output


def test_open_dataset_synthetic(root, tmp_path):
    assert isinstance(open_dataset("synthetic", root, min_answer_count=1), VqaAdapter)
    assert isinstance(open_dataset("synthetic", root, task="snli_ve"), SnliVeAdapter)
    assert isinstance(open_dataset("synthetic", root, task="vcr"), VcrAdapter)
    with pytest.raises(ValueError, match=r"synthetic task 'gqa' is not one of"):
        open_dataset("synthetic", root, task="gqa")
    with pytest.raises(FileNotFoundError, match=r"python -m extract\.synthetic --out"):
        open_dataset("synthetic", tmp_path, task="vcr")
