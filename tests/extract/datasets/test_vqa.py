"""VQA v2 adapter on tiny question/annotation files in the released JSON format."""

import json

import pytest

from extract.datasets import VqaAdapter, open_dataset

INFO = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {}}


def question(qid: int, image_id: int, text: str) -> dict:
    return {"question_id": qid, "image_id": image_id, "question": text}


def annotation(qid: int, image_id: int, mca: str, answers: list[str], **extra) -> dict:
    entry = {
        "question_id": qid,
        "image_id": image_id,
        "question_type": "what color is the",
        "answer_type": "other",
        "multiple_choice_answer": mca,
        "answers": [
            {"answer_id": i + 1, "answer": a, "answer_confidence": "yes"}
            for i, a in enumerate(answers)
        ],
    }
    entry.update(extra)
    return entry


def write(root, subtype: str, questions=None, annotations=None) -> None:
    if questions is not None:
        data = dict(INFO, data_subtype=subtype, questions=questions)
        (root / f"v2_OpenEnded_mscoco_{subtype}_questions.json").write_text(json.dumps(data))
    if annotations is not None:
        data = dict(INFO, data_subtype=subtype, annotations=annotations)
        (root / f"v2_mscoco_{subtype}_annotations.json").write_text(json.dumps(data))


Q1_ANSWERS = ["two"] * 4 + ["2"] * 3 + ["Three"] * 2 + ["t-shirt"]
TRAIN_QUESTIONS = [
    question(3, 9, "What is worn?"),
    question(1, 9, "How many?"),
    question(2, 25, "How many dogs?"),
]
TRAIN_ANNOTATIONS = [  # annotation order differs from question order on purpose
    annotation(1, 9, "Two", Q1_ANSWERS, question_type="how many", answer_type="number"),
    annotation(2, 25, "2", ["2"] * 10),
    annotation(3, 9, "t-shirt", ["t-shirt"] * 10),
]


@pytest.fixture
def root(tmp_path):
    for folder in ("train2014", "val2014", "test2015"):
        (tmp_path / folder).mkdir()
    write(tmp_path, "train2014", TRAIN_QUESTIONS, TRAIN_ANNOTATIONS)
    write(
        tmp_path,
        "val2014",
        [question(4, 42, "Is it sunny?"), question(5, 42, "What is it?")],
        [
            annotation(4, 42, "yes", ["yes"] * 9 + ["no"]),
            annotation(5, 42, "T shirt", ["T shirt"] * 3 + ["shirt"] * 7),
        ],
    )
    write(tmp_path, "test-dev2015", [question(7, 1, "Why?")])
    write(tmp_path, "test2015", [question(7, 1, "Why?"), question(8, 2, "Who?")])
    return tmp_path


def test_vocab_counts_normalized_answers_sorted_by_count_then_alphabet(root):
    assert VqaAdapter(root, min_answer_count=2).answer_vocab() == ["2", "t shirt"]
    assert VqaAdapter(root, min_answer_count=1).answer_vocab() == ["2", "t shirt", "yes"]
    with pytest.raises(ValueError) as degenerate:  # default 9: no answer is that frequent
        VqaAdapter(root).answer_vocab()
    assert str(degenerate.value).startswith("vqa: 0 answer(s) are given for at least 9 questions")
    assert "the most frequent for 2" in str(degenerate.value)
    assert "--dataset-option min_answer_count=N" in str(degenerate.value)
    assert VqaAdapter(root, min_answer_count=2).task() == {
        "name": "vqa",
        "kind": "soft_score",
        "answer_vocab": ["2", "t shirt"],
        "min_answer_count": 2,
    }


def test_train_records_in_question_file_order_with_soft_targets(root):
    adapter = open_dataset("vqa", root, min_answer_count=2)
    assert adapter.splits() == ["train", "val", "test", "test-dev"] and adapter.num_texts == 1
    records = list(adapter.records("train"))
    assert [r.key for r in records] == ["3", "1", "2"]
    assert records[1].image == "train2014/COCO_train2014_000000000009.jpg"
    assert records[2].image == "train2014/COCO_train2014_000000000025.jpg"
    assert records[1].texts == ["How many?"]
    assert records[1].meta == {
        "question_id": 1,
        "question": "How many?",
        "image_id": 9,
        "answers": Q1_ANSWERS,
        "answer_type": "number",
        "question_type": "how many",
        "multiple_choice_answer": "Two",
        # "2": 4 "two" + 3 "2" = 7 -> 1.0; "t shirt": 1 -> 0.3; "3" is not in the vocabulary
        "targets": {"0": 1.0, "1": 0.3},
    }
    # ten raw "t-shirt" answers count for the normalised "t shirt" (the reference script: nothing)
    assert records[0].meta["targets"] == {"1": 1.0}
    assert records[2].meta["targets"] == {"0": 1.0}
    val = {r.key: r.meta["targets"] for r in adapter.records("val")}
    assert val == {"4": {}, "5": {"1": 0.9}}
    assert adapter.input_files("val") == [
        root / "v2_OpenEnded_mscoco_val2014_questions.json",
        root / "v2_mscoco_val2014_annotations.json",
    ]


def test_test_splits_have_no_answers_and_use_test2015_images(root):
    adapter = VqaAdapter(root)
    (dev,) = adapter.records("test-dev")
    assert dev.key == "7" and dev.image == "test2015/COCO_test2015_000000000001.jpg"
    assert dev.meta == {"question_id": 7, "question": "Why?", "image_id": 1}
    assert [r.image for r in adapter.records("test")] == [
        "test2015/COCO_test2015_000000000001.jpg",
        "test2015/COCO_test2015_000000000002.jpg",
    ]
    assert adapter.input_files("test-dev") == [
        root / "v2_OpenEnded_mscoco_test-dev2015_questions.json"
    ]


def test_annotation_without_question_names_file_and_id(root):
    extra = annotation(99, 9, "yes", ["yes"] * 10)
    write(root, "train2014", annotations=TRAIN_ANNOTATIONS + [extra])
    with pytest.raises(
        ValueError,
        match=r"train2014_annotations\.json: annotations\[3\]: "
        r"question_id 99 is not in the questions file",
    ):
        list(VqaAdapter(root).records("train"))


def test_question_without_annotation_is_an_error(root):
    write(root, "train2014", annotations=TRAIN_ANNOTATIONS[:2])
    with pytest.raises(ValueError, match=r"no annotation for 1 question\(s\).*question_id 3"):
        list(VqaAdapter(root).records("train"))


@pytest.mark.parametrize(
    "questions, annotations, message",
    [
        (
            [{"question_id": 3, "image_id": 9}],
            None,
            r"questions\[0\]: missing required field 'question'",
        ),
        ([question(3, "9", "Q?")], None, r"questions\[0\]: field 'image_id' should be int"),
        (
            TRAIN_QUESTIONS + [question(3, 9, "Again?")],
            None,
            r"questions\[3\]: question_id 3 appears twice",
        ),
        (
            None,
            [annotation(1, 9, "2", ["2", 5])],
            r"annotations\[0\]\.answers\[1\]: field 'answer'",
        ),
        (
            None,
            [annotation(1, 9, None, ["2"])],
            r"annotations\[0\]: field 'multiple_choice_answer'",
        ),
    ],
)
def test_malformed_entries(root, questions, annotations, message):
    write(root, "train2014", questions, annotations)
    with pytest.raises(ValueError, match=message):
        list(VqaAdapter(root).records("train"))


def test_missing_files(tmp_path, root):
    with pytest.raises(FileNotFoundError, match=r"no VQA v2 questions file .*visualqa\.org"):
        VqaAdapter(tmp_path / "train2014")
    (root / "v2_mscoco_train2014_annotations.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotation file .*train2014_annotations\.json"):
        list(VqaAdapter(root).records("train"))
    (root / "v2_mscoco_val2014_annotations.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"answer vocabulary needs"):
        VqaAdapter(root).task()
    (root / "test2015").rmdir()
    with pytest.raises(FileNotFoundError, match=r"VQA image folder .*test2015"):
        list(VqaAdapter(root).records("test-dev"))
    with pytest.raises(ValueError, match="min_answer_count must be an int"):
        VqaAdapter(root, min_answer_count="9")


def test_file_that_is_not_the_release_format(root):
    (root / "v2_OpenEnded_mscoco_train2014_questions.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"questions\.json: expected a JSON object holding 'ques"):
        list(VqaAdapter(root).records("train"))
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text('{"questions": [')
    with pytest.raises(
        ValueError, match=r"val2014_questions\.json: truncated or not valid JSON at line 1 col"
    ):
        list(VqaAdapter(root).records("val"))


def test_other_subtypes_are_splits_and_labelled_tests_are_read(root):
    (root / "test_shifted").mkdir()
    write(
        root,
        "test_shifted",
        [question(11, 3, "What color?")],
        [annotation(11, 3, "mauve", ["mauve"] * 10, shift="paraphrase")],
    )
    write(
        root,
        "test2015",
        annotations=[annotation(7, 1, "2", ["2"] * 10), annotation(8, 2, "yes", ["yes"] * 10)],
    )
    adapter = VqaAdapter(root, min_answer_count=1)
    assert adapter.splits() == ["train", "val", "test", "test-dev", "test_shifted"]
    (record,) = adapter.records("test_shifted")
    assert record.image == "test_shifted/COCO_test_shifted_000000000003.jpg"
    assert record.meta["shift"] == "paraphrase" and record.meta["targets"] == {}
    assert "mauve" not in adapter.answer_vocab()  # the vocabulary is train + val only
    assert [r.meta["multiple_choice_answer"] for r in adapter.records("test")] == ["2", "yes"]
    assert len(adapter.input_files("test")) == 2 and len(adapter.input_files("test-dev")) == 1


def test_two_subtypes_giving_one_split_is_an_error(root):
    write(root, "test", [question(12, 4, "Why?")])
    with pytest.raises(
        ValueError,
        match=r"test_questions\.json and .*test2015_questions\.json "
        r"both give split 'test'",
    ):
        VqaAdapter(root)
