"""SNLI-VE adapter on lines in the 2018 and 2020 release spellings."""

import io
import json

import pytest
from PIL import Image

from extract.datasets import SnliVeAdapter, open_dataset


def line(pair_id="555378351.jpg#2r1e", label="entailment", **changes) -> dict:
    record = {
        "annotator_labels": [label],
        "captionID": "555378351.jpg#2",
        "gold_label": label,
        "pairID": pair_id,
        "sentence1": "Two dogs run on the beach.",
        "sentence1_parse": "(ROOT ...)",
        "sentence2": "Animals are outside.",
        "Flikr30kID": "555378351.jpg",
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def write(root, split: str, lines) -> None:
    text = "".join(json.dumps(ln) + "\n" for ln in lines)
    (root / f"snli_ve_{split}.jsonl").write_text(text)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "flickr30k_images").mkdir()
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 90, 200)).save(buffer, format="JPEG")
    (tmp_path / "flickr30k_images" / "555378351.jpg").write_bytes(buffer.getvalue())
    write(
        tmp_path,
        "train",
        [
            line(),  # 2018 spelling, with .jpg
            line(
                "36979.jpg#0r1n",
                "neutral",
                Flikr30kID=None,
                Flickr30K_ID="36979",
                sentence2="A dog is asleep.",
            ),  # 2020 spelling, no .jpg
            line("7.jpg#1r1c", "contradiction", Flikr30kID=None, Flickr30kID="7.jpg"),
            line("1234.jpg#3r1e", Flikr30kID=None),  # no id field: from the pairID
        ],
    )
    write(tmp_path, "dev", [line("9.jpg#0r1e", Flikr30kID=None, Flickr30K_ID=9)])
    return tmp_path


def test_records_labels_images_and_keys(root):
    adapter = open_dataset("snli_ve", root)
    assert isinstance(adapter, SnliVeAdapter) and adapter.num_texts == 1
    assert adapter.splits() == ["train", "dev"]
    records = list(adapter.records("train"))
    assert [r.key for r in records] == [
        "555378351.jpg#2r1e",
        "36979.jpg#0r1n",
        "7.jpg#1r1c",
        "1234.jpg#3r1e",
    ]
    assert [r.image for r in records] == [
        "flickr30k_images/555378351.jpg",
        "flickr30k_images/36979.jpg",
        "flickr30k_images/7.jpg",
        "flickr30k_images/1234.jpg",
    ]
    assert [r.meta["label"] for r in records] == [0, 1, 2, 0]
    assert records[1].texts == ["A dog is asleep."]
    assert records[0].meta == {
        "gold_label": "entailment",
        "pair_id": "555378351.jpg#2r1e",
        "image_id": "555378351",
        "premise": "Two dogs run on the beach.",
        "caption_id": "555378351.jpg#2",
        "label": 0,
    }
    assert "Two dogs" not in records[0].texts[0]  # the premise is no input
    assert next(adapter.records("dev")).image == "flickr30k_images/9.jpg"
    assert adapter.read_image_bytes(records[0]) == (root / records[0].image).read_bytes()
    assert adapter.task() == {
        "name": "snli_ve",
        "kind": "classification",
        "labels": ["entailment", "neutral", "contradiction"],
    }
    assert adapter.input_files("dev") == [root / "snli_ve_dev.jsonl"]


def test_invalid_label_raises_with_file_and_line(root):
    write(root, "dev", [line("9.jpg#0r1e"), line("9.jpg#0r2e", "-")])
    with pytest.raises(
        ValueError, match=r"snli_ve_dev\.jsonl:2: gold_label '-' .*on_invalid_label"
    ):
        list(SnliVeAdapter(root).records("dev"))


def test_invalid_label_skip_is_recorded(root):
    write(root, "dev", [line("9.jpg#0r1e"), line("9.jpg#0r2e", "-"), line("9.jpg#0r3c", "maybe")])
    adapter = SnliVeAdapter(root, on_invalid_label="skip")
    assert [r.key for r in adapter.records("dev")] == ["9.jpg#0r1e"]
    assert [(s["split"], s["file"], s["line"], s["key"]) for s in adapter.skipped] == [
        ("dev", "snli_ve_dev.jsonl", 2, "9.jpg#0r2e"),
        ("dev", "snli_ve_dev.jsonl", 3, "9.jpg#0r3c"),
    ]
    list(adapter.records("dev"))  # listing again does not repeat the entries
    assert len(adapter.skipped) == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        (line(sentence2=None), r"snli_ve_train\.jsonl:2: missing required field 'sentence2'"),
        (line(pairID=None), r"snli_ve_train\.jsonl:2: missing required field 'pairID'"),
        (line("abc#1", Flikr30kID=None), r"snli_ve_train\.jsonl:2: no image id"),
        (line(Flikr30kID=["x"]), r"snli_ve_train\.jsonl:2: field 'Flikr30kID' should be str/int"),
        (line(), r"snli_ve_train\.jsonl:2: sample key '555378351.jpg#2r1e' repeats"),
    ],
)
def test_malformed_lines(root, bad, message):
    write(root, "train", [line(), bad])
    with pytest.raises(ValueError, match=message):
        list(SnliVeAdapter(root).records("train"))


def test_missing_inputs_and_bad_options(root):
    with pytest.raises(FileNotFoundError, match=r"no snli_ve_<split>\.jsonl file .*necla-ml"):
        SnliVeAdapter(root / "flickr30k_images")
    with pytest.raises(ValueError, match="on_invalid_label='ignore'"):
        SnliVeAdapter(root, on_invalid_label="ignore")
    (root / "flickr30k_images" / "555378351.jpg").unlink()
    record = next(SnliVeAdapter(root).records("train"))
    with pytest.raises(FileNotFoundError, match=r"555378351\.jpg of sample '555378351\.jpg#2r1e'"):
        SnliVeAdapter(root).read_image_bytes(record)
    (root / "flickr30k_images").rmdir()
    with pytest.raises(FileNotFoundError, match=r"Flickr30k image folder .*flickr30k_images"):
        list(SnliVeAdapter(root).records("train"))


def test_every_snli_ve_file_is_a_split_and_type_fields_are_kept(root):
    extra = line("555378351.jpg#0r0c", "contradiction", question_type="count", shift="synonym")
    write(root, "test_shifted", [extra])
    adapter = SnliVeAdapter(root)
    assert adapter.splits() == ["train", "dev", "test_shifted"]
    (record,) = adapter.records("test_shifted")
    assert record.meta["question_type"] == "count" and record.meta["shift"] == "synonym"
    assert "question_type" not in next(adapter.records("train")).meta
