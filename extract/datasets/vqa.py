"""VQA v2 as released: the question/annotation JSON files and the COCO image folders.

Targets follow bottom-up attention / LXMERT / ViLT: an answer vocabulary of the normalised
``multiple_choice_answer`` values given for at least ``min_answer_count`` questions over the
train+val annotations present, and per question a soft score (0.3/0.6/0.9/1.0 for 1/2/3/>=4
annotators) per vocabulary answer.

Unlike the reference script, which counts the *raw* annotator strings against the *normalised*
vocabulary (ten ``t-shirt`` answers give nothing to ``t shirt``), annotator answers are normalised
the same way as the vocabulary before they are counted.

Splits come from the questions (and annotations) files present: ``train2014`` -> train,
``val2014`` -> val, ``test2015`` -> test, ``test-dev2015`` -> test-dev (test2015 images), and any
other subtype (e.g. the synthetic ``test_shifted``) is a split of its own name with images under
``<subtype>/``. A split whose questions file is missing is a FileNotFoundError naming the file.
Annotations are required for train and val and read for any other split whose
``v2_mscoco_<subtype>_annotations.json`` is present (the synthetic test splits are labelled).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from extract.store.vqa_answers import normalize_answer, soft_score

from .base import Record
from .common import (
    DOWNLOAD_AGAIN,
    FileImages,
    check_options,
    check_root,
    check_split,
    get_field,
    read_json,
    split_files,
)

log = logging.getLogger(__name__)

# released subtype -> split; any other subtype is a split of its own name
KNOWN_SUBTYPES = {
    "train2014": "train",
    "val2014": "val",
    "test2015": "test",
    "test-dev2015": "test-dev",
}
IMAGE_FOLDERS = {"test-dev2015": "test2015"}  # test-dev uses the test2015 images; others: subtype
LABELLED = {"train": "train2014", "val": "val2014"}  # splits whose annotations must be present
DEFAULT_MIN_ANSWER_COUNT = 9
VQA_URL = "https://visualqa.org/download.html"
# The zip of the VQA v2 download that holds each released file (test-dev is in the test zip).
QUESTION_ZIPS = {
    "train2014": "v2_Questions_Train_mscoco.zip",
    "val2014": "v2_Questions_Val_mscoco.zip",
    "test2015": "v2_Questions_Test_mscoco.zip",
    "test-dev2015": "v2_Questions_Test_mscoco.zip",
}
ANNOTATION_ZIPS = {
    "train2014": "v2_Annotations_Train_mscoco.zip",
    "val2014": "v2_Annotations_Val_mscoco.zip",
}
DOWNLOAD_HINT = (
    f"Download the VQA v2 questions and annotations from {VQA_URL} and the "
    "COCO train2014/val2014/test2015 images from https://cocodataset.org, and unzip them into the "
    "dataset root (v2_OpenEnded_mscoco_<subtype>_questions.json, "
    "v2_mscoco_<subtype>_annotations.json, <subtype>/COCO_<subtype>_<id>.jpg)."
)


def questions_file(subtype: str) -> str:
    return f"v2_OpenEnded_mscoco_{subtype}_questions.json"


def annotations_file(subtype: str) -> str:
    return f"v2_mscoco_{subtype}_annotations.json"


class VqaAdapter(FileImages):
    """Options: ``min_answer_count`` (default 9): questions an answer needs to enter the vocab."""

    name = "vqa"
    num_texts = 1
    image_hint = DOWNLOAD_HINT

    def __init__(self, root: str | Path, **options: Any) -> None:
        check_options(options, ("min_answer_count",), self.name)
        self.min_answer_count = options.get("min_answer_count", DEFAULT_MIN_ANSWER_COUNT)
        if isinstance(self.min_answer_count, bool) or not isinstance(self.min_answer_count, int):
            raise ValueError(f"min_answer_count must be an int, got {self.min_answer_count!r}")
        self.root = check_root(root, "VQA v2", DOWNLOAD_HINT)
        if not self.splits():
            raise FileNotFoundError(
                f"no VQA v2 questions file in {self.root} (e.g. "
                f"{questions_file('train2014')} from {QUESTION_ZIPS['train2014']}). {DOWNLOAD_HINT}"
            )
        self._vocab: list[str] | None = None

    def splits(self) -> list[str]:
        return list(self._subtypes())

    def _subtypes(self) -> dict[str, str]:
        """split -> subtype of the questions or annotations files present, in the order train,
        val, test, test-dev, then the others (annotations alone give a split, so that extracting
        it names its missing questions file instead of leaving the split out)."""
        found = {
            subtype
            for pattern in (questions_file("*"), annotations_file("*"))
            for subtype in split_files(self.root, pattern, KNOWN_SUBTYPES)
        }
        subtypes = [s for s in KNOWN_SUBTYPES if s in found] + sorted(found - set(KNOWN_SUBTYPES))
        layout: dict[str, str] = {}
        for subtype in subtypes:
            split = KNOWN_SUBTYPES.get(subtype, subtype)
            if split in layout:
                raise ValueError(
                    f"{self.root / questions_file(subtype)} and "
                    f"{questions_file(layout[split])} both give split {split!r}; remove or "
                    "rename one of them"
                )
            layout[split] = subtype
        return layout

    def input_files(self, split: str) -> list[Path]:
        """The questions file, and the annotations file for train, val and labelled others;
        FileNotFoundError naming the one that is missing and the zip it comes in."""
        released = {name: subtype for subtype, name in KNOWN_SUBTYPES.items()}
        subtype = self._subtypes().get(split) or released.get(split)
        if subtype is None:
            check_split(split, self.splits(), self.name, self.root)
        questions = self.root / questions_file(subtype)
        if not questions.is_file():
            raise _missing(questions, "questions", QUESTION_ZIPS.get(subtype))
        annotations = self.root / annotations_file(subtype)
        if split in LABELLED and not annotations.is_file():
            raise _missing(annotations, "annotation", ANNOTATION_ZIPS.get(subtype))
        return [questions, annotations] if annotations.is_file() else [questions]

    def task(self) -> dict[str, Any]:
        return {
            "name": "vqa",
            "kind": "soft_score",
            "answer_vocab": list(self.answer_vocab()),
            "min_answer_count": self.min_answer_count,
        }

    def answer_vocab(self) -> list[str]:
        """Normalised answers by descending question count, ties alphabetical (computed once)."""
        if self._vocab is None:
            self._vocab = self._build_vocab()
        return self._vocab

    def records(self, split: str) -> Iterator[Record]:
        files = self.input_files(split)
        subtype = self._subtypes()[split]
        folder = IMAGE_FOLDERS.get(subtype, subtype)
        if not (self.root / folder).is_dir():
            raise FileNotFoundError(
                f"VQA image folder {self.root / folder} not found. {DOWNLOAD_HINT}"
            )
        questions = _load_questions(files[0], _again(QUESTION_ZIPS.get(subtype)))
        fix = _again(ANNOTATION_ZIPS.get(subtype))
        annotations = _load_annotations(files[1], questions, fix) if len(files) > 1 else None
        index = {answer: i for i, answer in enumerate(self.answer_vocab())} if annotations else {}
        for question_id, question in questions.items():
            image_id = question["image_id"]
            meta = {
                "question_id": question_id,
                "question": question["question"],
                "image_id": image_id,
            }
            if annotations is not None:
                meta.update(_answer_meta(annotations[question_id], index))
            yield Record(
                key=str(question_id),
                image=f"{folder}/COCO_{folder}_{image_id:012d}.jpg",
                texts=[question["question"]],
                meta=meta,
            )
        log.info("vqa/%s: %d records from %s", split, len(questions), files[0])

    def _build_vocab(self) -> list[str]:
        counts: Counter[str] = Counter()
        sources = []
        for subtype in LABELLED.values():  # never the test splits, even when labelled
            path = self.root / annotations_file(subtype)
            if path.is_file():
                sources.append(path.name)
                fix = _again(ANNOTATION_ZIPS[subtype])
                for position, annotation in enumerate(_annotation_list(path, fix)):
                    at = f"{path}: annotations[{position}]"
                    answer = get_field(annotation, "multiple_choice_answer", str, at)
                    counts[normalize_answer(answer)] += 1
        if not sources:
            raise FileNotFoundError(
                f"the answer vocabulary needs {annotations_file('train2014')} (from "
                f"{ANNOTATION_ZIPS['train2014']}) and/or {annotations_file('val2014')} (from "
                f"{ANNOTATION_ZIPS['val2014']}) in {self.root}. {DOWNLOAD_HINT}"
            )
        kept = [
            (-count, answer) for answer, count in counts.items() if count >= self.min_answer_count
        ]
        vocab = [answer for _, answer in sorted(kept)]
        if len(vocab) < 2:  # nothing to classify: refuse now, not in the trainer's first epoch
            most = max(counts.values(), default=0)
            raise ValueError(
                f"vqa: {len(vocab)} answer(s) are given for at least {self.min_answer_count} "
                f"questions in {' + '.join(sources)} ({len(counts)} distinct answers, the most "
                f"frequent for {most}); lower the threshold with --dataset-option "
                "min_answer_count=N"
            )
        log.info(
            "vqa: %d answers given for >= %d questions in %s",
            len(vocab),
            self.min_answer_count,
            " + ".join(sources),
        )
        return vocab


def _missing(path: Path, kind: str, zip_name: str | None) -> FileNotFoundError:
    """A released file that is not there, with where to get it."""
    source = f"it is in {zip_name} from {VQA_URL}; unzip that" if zip_name else "put it"
    return FileNotFoundError(f"VQA v2 {kind} file {path} not found: {source} into {path.parent}")


def _again(zip_name: str | None) -> str:
    """What to do about a released file that does not parse."""
    if zip_name is None:
        return DOWNLOAD_AGAIN
    return f"the file is incomplete or damaged: download {zip_name} again from {VQA_URL}"


def _load_questions(path: Path, fix: str) -> dict[int, dict[str, Any]]:
    """question_id -> question entry, in file order."""
    data = read_json(path, fix)
    entries = get_field(data, "questions", list, str(path))
    questions: dict[int, dict[str, Any]] = {}
    for position, entry in enumerate(entries):
        at = f"{path}: questions[{position}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{at}: expected an object, got {entry!r:.80}")
        question_id = get_field(entry, "question_id", int, at)
        get_field(entry, "image_id", int, at)
        get_field(entry, "question", str, at)
        if question_id in questions:
            raise ValueError(f"{at}: question_id {question_id} appears twice; re-download the file")
        questions[question_id] = entry
    return questions


def _annotation_list(path: Path, fix: str) -> list[dict[str, Any]]:
    data = read_json(path, fix)
    entries = get_field(data, "annotations", list, str(path))
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: annotations[{position}] is not an object: {entry!r:.80}")
    return entries


def _load_annotations(path: Path, questions: dict[int, Any], fix: str) -> dict[int, dict[str, Any]]:
    """question_id -> annotation; every annotation and every question must have its partner."""
    annotations: dict[int, dict[str, Any]] = {}
    for position, entry in enumerate(_annotation_list(path, fix)):
        at = f"{path}: annotations[{position}]"
        question_id = get_field(entry, "question_id", int, at)
        if question_id not in questions:
            raise ValueError(
                f"{at}: question_id {question_id} is not in the questions file; the "
                "two files are from different releases, download both again"
            )
        if question_id in annotations:
            raise ValueError(
                f"{at}: a second annotation for question_id {question_id}; download the file again"
            )
        for number, answer in enumerate(get_field(entry, "answers", list, at)):
            if not isinstance(answer, dict):
                raise ValueError(f"{at}: answers[{number}] should be an object with 'answer'")
            get_field(answer, "answer", str, f"{at}.answers[{number}]")
        get_field(entry, "multiple_choice_answer", str, at)
        annotations[question_id] = entry
    missing = [qid for qid in questions if qid not in annotations]
    if missing:
        raise ValueError(
            f"{path}: no annotation for {len(missing)} question(s) of the questions "
            f"file, e.g. question_id {missing[0]}; download both files again"
        )
    return annotations


def _answer_meta(annotation: dict[str, Any], index: dict[str, int]) -> dict[str, Any]:
    """Raw answers, types and soft targets ({str(vocab index): score}, ascending index)."""
    answers = [entry["answer"] for entry in annotation["answers"]]
    # Annotator answers are normalised like the vocabulary before counting (see module docstring).
    counts = Counter(normalize_answer(answer) for answer in answers)
    scores = {index[answer]: soft_score(n) for answer, n in counts.items() if answer in index}
    return {
        "answers": answers,
        "answer_type": annotation.get("answer_type"),
        "question_type": annotation.get("question_type"),
        "multiple_choice_answer": annotation["multiple_choice_answer"],
        "targets": {str(i): scores[i] for i in sorted(scores)},
        **({"shift": annotation["shift"]} if "shift" in annotation else {}),
    }
