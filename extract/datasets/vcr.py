"""VCR (Visual Commonsense Reasoning) as released: ``{train,val,test}.jsonl`` + ``vcr1images/``.

Each record holds 8 texts: ``texts[0:4]`` are question + answer i (Q->A) and ``texts[4:8]`` are
question + gold answer + rationale j (QA->R). A line without labels (the released test split)
gives 4 records ``<annot_id>@a0..@a3``: the same Q->A texts, and QA->R texts conditioned on answer
i, which is what the leaderboard's ``rationale_conditioned_on_a{i}_{j}`` columns need. Whether a
line is labelled decides this, not the split name: every ``<split>.jsonl`` at the root is a split
(e.g. the labelled synthetic ``test`` and ``test_shifted``); a line with only one of the two
labels is an error.

Object references (token = list of 0-based indices into ``objects``) are rendered as text this way:
a person is named from the r2c list of 15 gender-neutral names by its rank among the person objects
referenced anywhere in the record (question, all answers, all rationales), ranked by object index
and wrapping after 15; any other object is written as its class name; several objects in one token
are joined as "A and B" / "A, B and C". The exact index lists are kept in ``meta["refs"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Record
from .common import (
    TYPE_FIELDS,
    FileImages,
    KeyTracker,
    check_options,
    check_root,
    check_split,
    get_field,
    optional_fields,
    read_json,
    read_jsonl,
    split_files,
    where,
)

log = logging.getLogger(__name__)

# r2c's list, verbatim ("Peyton" appears twice there: persons 7 and 11 share the name).
PERSON_NAMES = ("Casey", "Riley", "Jessie", "Jackie", "Avery", "Jaime", "Peyton", "Kerry", "Jody",
                "Kendall", "Peyton", "Skyler", "Frankie", "Pat", "Quinn")  # fmt: skip
SPLITS = ("train", "val", "test")
NUM_CHOICES = 4
# Tokens written without a space before them ("Casey 's" -> "Casey's", "doing ?" -> "doing?").
ATTACHED = {".", ",", "?", "!", ":", ";", ")", "n't", "'s", "'re", "'m", "'ve", "'ll", "'d"}
DOWNLOAD_HINT = (
    "Download vcr1annots.zip and vcr1images.zip from https://visualcommonsense.com/download/ and "
    "unzip both into one folder; root is the resulting vcr1/ folder (holding train.jsonl, "
    "val.jsonl, test.jsonl and vcr1images/)."
)
ANNOTATIONS_AGAIN = "the file is incomplete or damaged: download vcr1annots.zip again and unzip it"
IMAGES_AGAIN = "the file is incomplete or damaged: download vcr1images.zip again and unzip it"

Tokens = list[Any]  # str tokens and lists of object indices


class VcrAdapter(FileImages):
    name = "vcr"
    num_texts = 2 * NUM_CHOICES
    image_hint = DOWNLOAD_HINT

    def __init__(self, root: str | Path, **options: Any) -> None:
        check_options(options, (), self.name)
        self.root = check_root(root, "VCR", DOWNLOAD_HINT)
        if not self.splits():
            raise FileNotFoundError(
                f"no VCR annotation file (train.jsonl, val.jsonl, test.jsonl or any "
                f"<split>.jsonl) in {self.root}. {DOWNLOAD_HINT}"
            )

    def splits(self) -> list[str]:
        """Every ``<split>.jsonl`` at the root: train, val, test first, then the others."""
        return split_files(self.root, "*.jsonl", SPLITS)

    def input_files(self, split: str) -> list[Path]:
        check_split(split, self.splits(), self.name, self.root, expected=f"{split}.jsonl")
        return [self.root / f"{split}.jsonl"]

    def task(self) -> dict[str, Any]:
        return {
            "name": "vcr",
            "kind": "multiple_choice",
            "groups": {"qa": [0, NUM_CHOICES], "qar": [NUM_CHOICES, 2 * NUM_CHOICES]},
            "num_choices": NUM_CHOICES,
        }

    def records(self, split: str) -> Iterator[Record]:
        (path,) = self.input_files(split)
        images = self.root / "vcr1images"
        if not images.is_dir():
            raise FileNotFoundError(f"VCR image folder {images} not found. {DOWNLOAD_HINT}")
        keys = KeyTracker()
        count = 0
        for line, obj in read_jsonl(path, ANNOTATIONS_AGAIN):
            at = where(path, line)
            for record in self._records_of_line(obj, split, line, at):
                keys.add(record.key, at)
                count += 1
                yield record
        log.info("vcr/%s: %d records from %s", split, count, path)

    def _records_of_line(self, obj: dict, split: str, line: int, at: str) -> list[Record]:
        objects = get_field(obj, "objects", list, at)
        if not all(isinstance(name, str) for name in objects):
            raise ValueError(f"{at}: field 'objects' should be a list of class names")
        question = _tokens(obj, "question", len(objects), at)
        answers = _choices(obj, "answer_choices", len(objects), at)
        rationales = _choices(obj, "rationale_choices", len(objects), at)
        names = _object_names(objects, [question, *answers, *rationales])
        base = self._base(obj, split, line, at)
        base["meta"].update(
            question=render(question, names),
            answers=[render(answer, names) for answer in answers],
            rationales=[render(rationale, names) for rationale in rationales],
        )
        tokens = {"question": question, "answers": answers, "rationales": rationales}
        if "answer_label" not in obj and "rationale_label" not in obj:  # test: labels hidden
            return [_record(base, tokens, i, None) for i in range(NUM_CHOICES)]
        labels = {name: _label(obj, name, at) for name in ("answer_label", "rationale_label")}
        return [_record(base, tokens, labels["answer_label"], labels)]

    def _base(self, obj: dict, split: str, line: int, at: str) -> dict[str, Any]:
        """What the records of one line share: key, image, boxes and the plain metadata."""
        img_fn = get_field(obj, "img_fn", str, at)
        metadata_fn = get_field(obj, "metadata_fn", str, at)
        objects = obj["objects"]
        boxes, width, height = self._boxes(metadata_fn, len(objects), at)
        key = get_field(obj, "annot_id", str, at) if "annot_id" in obj else f"{split}-{line - 1}"
        meta = {
            "annot_id": key,
            "img_id": obj.get("img_id"),
            "movie": obj.get("movie"),
            "source": _source(img_fn),
            "objects": objects,
            "width": width,
            "height": height,
            **optional_fields(obj, TYPE_FIELDS, at),
        }
        return {"key": key, "image": f"vcr1images/{img_fn}", "boxes": boxes, "meta": meta}

    def _boxes(self, metadata_fn: str, num_objects: int, at: str) -> tuple[list, Any, Any]:
        path = self.root / "vcr1images" / metadata_fn
        if not path.is_file():
            raise FileNotFoundError(f"{at}: metadata file {path} not found. {DOWNLOAD_HINT}")
        metadata = read_json(path, IMAGES_AGAIN)
        where_meta = f"{path} (for {at})"
        rows = get_field(metadata, "boxes", list, where_meta)
        if len(rows) != num_objects:
            raise ValueError(
                f"{where_meta}: {len(rows)} boxes but the record lists {num_objects} objects; "
                "the metadata and annotation files do not belong together, download both again"
            )
        boxes = []
        for row in rows:
            numbers = isinstance(row, list) and all(_is_number(value) for value in row)
            if not numbers or len(row) < 4:
                raise ValueError(f"{where_meta}: box {row!r} should be [x1, y1, x2, y2, score]")
            boxes.append([float(value) for value in row[:4]])
        return boxes, metadata.get("width"), metadata.get("height")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tokens(obj: dict, field: str, num_objects: int, at: str) -> Tokens:
    return _check_tokens(get_field(obj, field, list, at), field, num_objects, at)


def _choices(obj: dict, field: str, num_objects: int, at: str) -> list[Tokens]:
    choices = get_field(obj, field, list, at)
    if len(choices) != NUM_CHOICES or not all(isinstance(choice, list) for choice in choices):
        raise ValueError(f"{at}: field {field!r} should hold {NUM_CHOICES} token lists")
    return [_check_tokens(choice, field, num_objects, at) for choice in choices]


def _check_tokens(tokens: list, field: str, num_objects: int, at: str) -> Tokens:
    for token in tokens:
        if isinstance(token, str):
            continue
        if not isinstance(token, list) or not token:
            raise ValueError(
                f"{at}: field {field!r} has token {token!r}; tokens are strings or "
                "non-empty lists of object indices"
            )
        for index in token:
            if isinstance(index, bool) or not isinstance(index, int):
                raise ValueError(
                    f"{at}: field {field!r} has object reference {token!r}; "
                    "references are lists of integer indices"
                )
            if not 0 <= index < num_objects:
                raise ValueError(
                    f"{at}: field {field!r} refers to object {index} but the record has "
                    f"{num_objects} objects (0-based indices); the line is corrupted, download "
                    "vcr1annots.zip again"
                )
    return tokens


def _label(obj: dict, name: str, at: str) -> int:
    label = get_field(obj, name, int, at)
    if not 0 <= label < NUM_CHOICES:
        raise ValueError(f"{at}: field {name!r} is {label}, expected 0..{NUM_CHOICES - 1}")
    return label


def _source(img_fn: str) -> str | None:
    """``lsmdc`` or ``movieclips`` from the movie folder prefix (None for anything else)."""
    folder = img_fn.split("/", 1)[0]
    for source in ("lsmdc", "movieclips"):
        if folder.startswith(source + "_"):
            return source
    return None


def _object_names(objects: list[str], texts: list[Tokens]) -> list[str]:
    """Display name per object (see the module docstring for the rule)."""
    used = sorted(
        {i for tokens in texts for token in tokens if isinstance(token, list) for i in token}
    )
    persons = [i for i in used if objects[i] == "person"]
    names = list(objects)
    for rank, index in enumerate(persons):
        names[index] = PERSON_NAMES[rank % len(PERSON_NAMES)]
    return names


def _join_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def render(tokens: Tokens, names: list[str]) -> str:
    """Tokens as one string, object references replaced by names."""
    out = ""
    for token in tokens:
        word = token if isinstance(token, str) else _join_names([names[i] for i in token])
        out += word if not out or word in ATTACHED else " " + word
    return out


def refs(tokens: Tokens) -> list[list[int]]:
    """The object index lists of the tokens, in order of appearance."""
    return [list(token) for token in tokens if isinstance(token, list)]


def _record(
    base: dict[str, Any],
    tokens: dict[str, Any],
    answer: int,
    labels: dict[str, int] | None,
) -> Record:
    """One record; QA->R texts use answer ``answer`` (gold, or the conditioned one on test)."""
    meta = base["meta"]
    question, answers, rationales = meta["question"], meta["answers"], meta["rationales"]
    texts = [f"{question} {choice}" for choice in answers]
    texts += [f"{question} {answers[answer]} {rationale}" for rationale in rationales]
    q, a = refs(tokens["question"]), [refs(choice) for choice in tokens["answers"]]
    text_refs = [q + choice for choice in a]
    text_refs += [q + a[answer] + refs(rationale) for rationale in tokens["rationales"]]
    meta = dict(meta, refs=text_refs)
    key = base["key"]
    if labels is None:
        key = f"{key}@a{answer}"
        meta["conditioned_on"] = answer
    else:
        meta.update(labels)
    return Record(key=key, image=base["image"], texts=texts, meta=meta, boxes=base["boxes"])
