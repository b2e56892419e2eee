"""SNLI-VE (visual entailment) as released: ``snli_ve_{train,dev,test}.jsonl`` + Flickr30k images.

The text input is the hypothesis (``sentence2``); the Flickr30k caption (``sentence1``) is kept in
``meta["premise"]`` only, since the image takes its place in visual entailment. Every
``snli_ve_<split>.jsonl`` at the root is a split (train, dev, test first, then e.g. the synthetic
``test_shifted``); optional ``question_type`` / ``shift`` fields are kept in ``meta``.
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
    read_jsonl,
    split_files,
    where,
)

log = logging.getLogger(__name__)

LABELS = ("entailment", "neutral", "contradiction")
SPLITS = ("train", "dev", "test")
# 2018 release spelling, 2020 generator spelling, and the correct one.
IMAGE_ID_FIELDS = ("Flikr30kID", "Flickr30K_ID", "Flickr30kID")
INVALID_LABEL_POLICIES = ("raise", "skip")
DOWNLOAD_HINT = (
    "Get snli_ve_train.jsonl, snli_ve_dev.jsonl and snli_ve_test.jsonl from "
    "https://github.com/necla-ml/SNLI-VE and the Flickr30k images (flickr30k_images/<id>.jpg) from "
    "https://shannon.cs.illinois.edu/DenotationGraph/, and put both under the dataset root."
)
ANNOTATIONS_AGAIN = (
    "the file is incomplete or damaged: download it again from https://github.com/necla-ml/SNLI-VE"
)


class SnliVeAdapter(FileImages):
    """Options: ``on_invalid_label`` = "raise" (default) or "skip".

    With "skip", records whose ``gold_label`` is not one of the three labels (``"-"`` marks pairs
    without annotator consensus) are left out and listed in :attr:`skipped`.
    """

    name = "snli_ve"
    num_texts = 1
    image_hint = DOWNLOAD_HINT

    def __init__(self, root: str | Path, **options: Any) -> None:
        check_options(options, ("on_invalid_label",), self.name)
        self.on_invalid_label = options.get("on_invalid_label", "raise")
        if self.on_invalid_label not in INVALID_LABEL_POLICIES:
            raise ValueError(
                f"on_invalid_label={self.on_invalid_label!r}; use one of "
                f"{list(INVALID_LABEL_POLICIES)}"
            )
        self.root = check_root(root, "SNLI-VE", DOWNLOAD_HINT)
        if not self.splits():
            raise FileNotFoundError(
                f"no snli_ve_<split>.jsonl file in {self.root}. {DOWNLOAD_HINT}"
            )
        # Left-out records: {"split", "file", "line", "key", "reason"}, one per skipped line.
        self.skipped: list[dict[str, Any]] = []

    def splits(self) -> list[str]:
        return split_files(self.root, "snli_ve_*.jsonl", SPLITS)

    def input_files(self, split: str) -> list[Path]:
        check_split(split, self.splits(), self.name, self.root, expected=self._file(split).name)
        return [self._file(split)]

    def task(self) -> dict[str, Any]:
        return {"name": "snli_ve", "kind": "classification", "labels": list(LABELS)}

    def records(self, split: str) -> Iterator[Record]:
        (path,) = self.input_files(split)
        images = self.root / "flickr30k_images"
        if not images.is_dir():
            raise FileNotFoundError(f"Flickr30k image folder {images} not found. {DOWNLOAD_HINT}")
        self.skipped = [entry for entry in self.skipped if entry["split"] != split]
        keys = KeyTracker()
        count = skipped = 0
        for line, obj in read_jsonl(path, ANNOTATIONS_AGAIN):
            at = where(path, line)
            record = self._record(obj, at)
            label = record.meta["gold_label"]
            if label not in LABELS:
                self._invalid_label(split, path, line, record.key, label)
                skipped += 1
                continue
            record.meta["label"] = LABELS.index(label)
            keys.add(record.key, at)
            count += 1
            yield record
        if skipped:
            log.warning(
                "snli_ve/%s: skipped %d records without a valid gold_label (listed in "
                "adapter.skipped)",
                split,
                skipped,
            )
        log.info("snli_ve/%s: %d records from %s", split, count, path)

    def _file(self, split: str) -> Path:
        return self.root / f"snli_ve_{split}.jsonl"

    def _record(self, obj: dict[str, Any], at: str) -> Record:
        pair_id = get_field(obj, "pairID", str, at)
        hypothesis = get_field(obj, "sentence2", str, at)
        gold_label = get_field(obj, "gold_label", str, at)
        image_id = _image_id(obj, pair_id, at)
        meta = {
            "gold_label": gold_label,
            "pair_id": pair_id,
            "image_id": image_id,
            "premise": obj.get("sentence1"),
            "caption_id": obj.get("captionID"),
            **optional_fields(obj, TYPE_FIELDS, at),
        }
        image = f"flickr30k_images/{image_id}.jpg"
        return Record(key=pair_id, image=image, texts=[hypothesis], meta=meta)

    def _invalid_label(self, split: str, path: Path, line: int, key: str, label: str) -> None:
        reason = f"gold_label {label!r} is not one of {list(LABELS)}"
        if self.on_invalid_label == "raise":
            raise ValueError(
                f"{where(path, line)}: {reason}; remove the line, or pass "
                "on_invalid_label='skip' to leave such records out"
            )
        self.skipped.append(
            {"split": split, "file": path.name, "line": line, "key": key, "reason": reason}
        )


def _image_id(obj: dict[str, Any], pair_id: str, at: str) -> str:
    """Flickr30k id without ``.jpg``, from any of the id spellings or else from the pairID."""
    for field in IMAGE_ID_FIELDS:
        if field in obj:
            value = get_field(obj, field, (str, int), at)
            return str(value).removesuffix(".jpg")
    if ".jpg" in pair_id:
        return pair_id.split(".jpg", 1)[0]
    raise ValueError(
        f"{at}: no image id: none of the fields {list(IMAGE_ID_FIELDS)} and pairID "
        f"{pair_id!r} has no '<id>.jpg' prefix; add Flickr30K_ID to the line"
    )
