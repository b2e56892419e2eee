"""VCR adapter on a tiny copy of the released layout (jsonl + vcr1images/ with metadata json)."""

import io
import json

import pytest
from PIL import Image

from extract.datasets import ADAPTERS, VcrAdapter, open_dataset

MOVIE = "lsmdc_3015_CHARLIE_ST_CLOUD"
FRAME = f"{MOVIE}/3015_CHARLIE_ST_CLOUD_00.23.57.935-00.24.00.783@0"
CLIP = "movieclips_A_Fistful_of_Dollars/s9fJ8_ohJUk@21"
BOXES = [[1.5, 2, 30, 40, 0.99], [3, 4, 50, 60, 0.9], [5, 6, 7, 8, 0.5], [0, 0, 63, 47, 0.7]]

QUESTION = ["What", "is", [1], "doing", "with", [2], "?"]
ANSWERS = [
    [[1], "is", "walking", [2], "."],
    [[0, 3], "are", "talking", "."],
    ["Nothing", "."],
    [[1], "is", "sleeping", "."],
]
RATIONALES = [
    [[3], "is", "watching", [1], "."],
    ["The", [2], "is", "on", "a", "leash", "."],
    ["It", "is", "sunny", "."],
    [[0, 1, 3], "are", "friends", "."],
]
Q = "What is Riley doing with dog?"
A = ["Riley is walking dog.", "Casey and Jessie are talking.", "Nothing.", "Riley is sleeping."]
R = [
    "Jessie is watching Riley.",
    "The dog is on a leash.",
    "It is sunny.",
    "Casey, Riley and Jessie are friends.",
]


def jpeg_bytes(color=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def line(**changes) -> dict:
    record = {
        "movie": "3015_CHARLIE_ST_CLOUD",
        "objects": ["person", "person", "dog", "person"],
        "img_fn": f"{FRAME}.jpg",
        "metadata_fn": f"{FRAME}.json",
        "question": QUESTION,
        "answer_choices": ANSWERS,
        "answer_label": 0,
        "rationale_choices": RATIONALES,
        "rationale_label": 1,
        "annot_id": "train-0",
        "img_id": "train-0",
        "question_number": 1,
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def write_frame(root, frame: str, boxes) -> None:
    path = root / "vcr1images" / f"{frame}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes())
    meta = {"boxes": boxes, "segms": [[] for _ in boxes], "names": [], "width": 64, "height": 48}
    path.with_suffix(".json").write_text(json.dumps(meta))


def write_split(root, split: str, lines) -> None:
    text = "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)
    (root / f"{split}.jsonl").write_text(text)


@pytest.fixture
def root(tmp_path):
    write_frame(tmp_path, FRAME, BOXES)
    write_frame(tmp_path, CLIP, BOXES)
    clip = dict(
        img_fn=f"{CLIP}.jpg",
        metadata_fn=f"{CLIP}.json",
        question=["Why", "?"],
        annot_id=None,
        movie=None,
    )
    write_split(tmp_path, "train", [line(), line(**clip)])
    write_split(
        tmp_path, "test", [line(annot_id="test-0", answer_label=None, rationale_label=None)]
    )
    return tmp_path


def test_train_record_texts_refs_boxes_and_meta(root):
    adapter = open_dataset("vcr", root)
    assert isinstance(adapter, VcrAdapter) and adapter.num_texts == 8
    assert adapter.splits() == ["train", "test"]
    first, second = list(adapter.records("train"))
    assert first.key == "train-0"
    assert first.image == f"vcr1images/{FRAME}.jpg"
    assert first.texts == [f"{Q} {a}" for a in A] + [f"{Q} {A[0]} {r}" for r in R]
    assert first.boxes == [
        [1.5, 2.0, 30.0, 40.0],
        [3.0, 4.0, 50.0, 60.0],
        [5.0, 6.0, 7.0, 8.0],
        [0.0, 0.0, 63.0, 47.0],
    ]
    meta = first.meta
    assert (meta["answer_label"], meta["rationale_label"]) == (0, 1)
    assert meta["question"] == Q and meta["answers"] == A and meta["rationales"] == R
    assert meta["refs"] == [
        [[1], [2], [1], [2]],
        [[1], [2], [0, 3]],
        [[1], [2]],
        [[1], [2], [1]],
        [[1], [2], [1], [2], [3], [1]],
        [[1], [2], [1], [2], [2]],
        [[1], [2], [1], [2]],
        [[1], [2], [1], [2], [0, 1, 3]],
    ]
    assert (meta["annot_id"], meta["img_id"], meta["movie"]) == (
        "train-0",
        "train-0",
        "3015_CHARLIE_ST_CLOUD",
    )
    assert (meta["source"], meta["width"], meta["height"]) == ("lsmdc", 64, 48)
    assert meta["objects"] == ["person", "person", "dog", "person"]
    assert "conditioned_on" not in meta
    # no annot_id: "<split>-<0-based line index>"; movieclips source; QA->R uses the gold answer
    assert second.key == "train-1" and second.meta["source"] == "movieclips"
    assert second.texts[4] == f"Why? {A[0]} {R[0]}"
    assert json.loads(json.dumps(first.meta)) == first.meta


def test_test_split_gives_four_records_conditioned_on_each_answer(root):
    records = list(VcrAdapter(root).records("test"))
    assert [r.key for r in records] == ["test-0@a0", "test-0@a1", "test-0@a2", "test-0@a3"]
    for i, record in enumerate(records):
        assert record.texts[:4] == [f"{Q} {a}" for a in A]
        assert record.texts[4:] == [f"{Q} {A[i]} {r}" for r in R]
        assert record.meta["conditioned_on"] == i
        assert "answer_label" not in record.meta and "rationale_label" not in record.meta
    assert records[3].meta["refs"][7] == [[1], [2], [1], [0, 1, 3]]


def test_person_names_wrap_after_fifteen(tmp_path):
    write_frame(tmp_path, FRAME, [[0, 0, 1, 1, 1.0]] * 18)
    objects = ["person"] * 16 + ["cellphone", "person"]
    question = ["Are", list(range(18)), "friends", "?"]
    write_split(tmp_path, "val", [line(objects=objects, question=question)])
    (record,) = VcrAdapter(tmp_path).records("val")
    names = (
        "Casey, Riley, Jessie, Jackie, Avery, Jaime, Peyton, Kerry, Jody, Kendall, Peyton, "
        "Skyler, Frankie, Pat, Quinn, Casey, cellphone and Riley"
    )
    assert record.meta["question"] == f"Are {names} friends?"


def test_task_and_image_bytes(root):
    adapter = VcrAdapter(root)
    assert adapter.task() == {
        "name": "vcr",
        "kind": "multiple_choice",
        "groups": {"qa": [0, 4], "qar": [4, 8]},
        "num_choices": 4,
    }
    record = next(adapter.records("train"))
    assert adapter.read_image_bytes(record) == (root / record.image).read_bytes()
    assert adapter.input_files("train") == [root / "train.jsonl"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            line(question=["Is", [4], "ok", "?"]),
            r"train\.jsonl:2: field 'question' refers to object 4",
        ),
        (line(answer_choices=ANSWERS[:3]), r"train\.jsonl:2: field 'answer_choices' should hold 4"),
        (
            line(rationale_choices=None),
            r"train\.jsonl:2: missing required field 'rationale_choices'",
        ),
        (line(answer_label=None), r"train\.jsonl:2: missing required field 'answer_label'"),
        (line(rationale_label=4), r"train\.jsonl:2: field 'rationale_label' is 4"),
        (
            line(question=["Is", ["0"], "?"]),
            r"train\.jsonl:2: field 'question' has object reference",
        ),
        ('{"objects": [', r"train\.jsonl: truncated or not valid JSON at line 2 column 14 "),
        (line(objects=["person"] * 3), r"3 objects"),
        (line(), r"train\.jsonl:2: sample key 'train-0' repeats the one at .*train\.jsonl:1"),
    ],
)
def test_malformed_lines_name_file_line_and_field(root, bad, message):
    write_split(root, "train", [line(), bad])
    with pytest.raises(ValueError, match=message):
        list(VcrAdapter(root).records("train"))


def test_box_count_must_match_objects(root):
    write_frame(root, FRAME, BOXES[:3])
    with pytest.raises(ValueError, match=r"3 boxes but the record lists 4 objects"):
        list(VcrAdapter(root).records("train"))


def test_missing_files_say_what_to_download(tmp_path, root):
    with pytest.raises(FileNotFoundError, match="vcr1annots.zip"):
        VcrAdapter(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no VCR annotation file"):
        VcrAdapter(root / "vcr1images")
    (root / "vcr1images" / f"{FRAME}.json").unlink()
    with pytest.raises(FileNotFoundError, match=rf"train\.jsonl:1: metadata file .*{FRAME}\.json"):
        list(VcrAdapter(root).records("train"))
    with pytest.raises(ValueError, match=r"split 'val' of vcr is not present"):
        list(VcrAdapter(root).records("val"))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\]"):
        VcrAdapter(root, colour=1)


@pytest.mark.parametrize(
    "metadata, message",
    [
        ([1, 2], r"expected a JSON object holding 'boxes'"),
        ({"width": 3}, r"missing required field 'boxes'"),
        ({"boxes": [[1, 2, "x", 4, 1]] * 4}, r"box \[1, 2, 'x', 4, 1\] should be"),
    ],
)
def test_malformed_metadata(root, metadata, message):
    (root / "vcr1images" / f"{FRAME}.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=rf"{FRAME}\.json \(for .*train\.jsonl:1\): {message}"):
        list(VcrAdapter(root).records("train"))


def test_registry(root):
    assert sorted(ADAPTERS) == ["pairs", "snli_ve", "synthetic", "vcr", "vqa"]
    with pytest.raises(ValueError, match=r"unknown dataset 'coco'; known datasets: pairs, snli_ve"):
        open_dataset("coco", root)


def test_labels_not_the_split_name_decide_conditioned_records(root):
    labelled = line(annot_id="test-0", question_type="colour", shift="none")
    write_split(root, "test", [labelled])
    write_split(root, "test_shifted", [line(annot_id="s-0")])
    write_split(root, "val", [line(annot_id="v-0", answer_label=None, rationale_label=None)])
    adapter = VcrAdapter(root)
    assert adapter.splits() == ["train", "val", "test", "test_shifted"]
    (record,) = adapter.records("test")
    assert record.key == "test-0" and record.meta["answer_label"] == 0
    assert record.meta["question_type"] == "colour" and record.meta["shift"] == "none"
    assert [r.key for r in adapter.records("test_shifted")] == ["s-0"]
    assert [r.key for r in adapter.records("val")] == [f"v-0@a{i}" for i in range(4)]
    write_split(root, "test", [line(rationale_label=None)])
    with pytest.raises(ValueError, match=r"test\.jsonl:1: missing required field 'rationale_"):
        list(adapter.records("test"))
