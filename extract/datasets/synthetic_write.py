"""Writers of the synthetic datasets in the released formats (see docs DATASETS.md).

Every file is written to ``<name>.tmp`` and renamed, JSON with sorted keys, so that a killed run
never leaves a half-written file under its final name and two runs with the same seed give
byte-identical files. Layout under the output folder::

    vcr/{split}.jsonl  vcr/vcr1images/<movie_dir>/<frame>.jpg + <frame>.json
    snli_ve/snli_ve_{train,dev,test,test_shifted}.jsonl  snli_ve/flickr30k_images/<id>.jpg
    vqa/v2_OpenEnded_mscoco_<subtype>_questions.json  vqa/v2_mscoco_<subtype>_annotations.json
    vqa/<subtype>/COCO_<subtype>_<id:012d>.jpg   (subtypes train2014, val2014, test2015,
                                                   test_shifted)
    scenes/{split}.jsonl   the ground truth of every scene (objects, boxes, background)

The split ``val`` is written as SNLI-VE's ``dev`` (the released name). The synthetic test splits
are labelled, unlike the released ones, so that a demo can score them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .synthetic_scenes import Scene, outline
from .synthetic_text import caption

SPLIT_CODES = {"train": 1, "val": 2, "test": 3, "test_shifted": 4}
VQA_SUBTYPES = {"train": "train2014", "val": "val2014", "test": "test2015"}
SNLI_SPLITS = {"val": "dev"}
INFO = {"description": "Synthetic scenes (extract.datasets.synthetic)", "version": "1.0"}


@dataclass
class ImageEntry:
    """One image and the texts of the three datasets about it."""

    split: str
    index: int
    scene: Scene
    jpeg: bytes
    vqa: list[dict[str, Any]] = field(default_factory=list)
    snli: list[dict[str, Any]] = field(default_factory=list)
    vcr: list[dict[str, Any]] = field(default_factory=list)

    @property
    def image_id(self) -> int:
        """Unique over splits: split code then a zero-padded index (9 digits)."""
        return SPLIT_CODES[self.split] * 10**8 + self.index

    @property
    def movie_dir(self) -> str:
        """The VCR movie folder; its prefix (the source) says the background style."""
        code = 9000 + SPLIT_CODES[self.split]
        if self.scene.style == "plain":
            return f"lsmdc_{code}_SYNTHETIC_{self.split.upper()}"
        return f"movieclips_Synthetic_{self.split.title()}"

    @property
    def frame(self) -> str:
        return f"{self.movie_dir}/{self.split}_{self.index:06d}@0"


def vqa_subtype(split: str) -> str:
    return VQA_SUBTYPES.get(split, split)


def image_paths(entry: ImageEntry) -> dict[str, str]:
    """The image's path in each dataset, relative to the output folder."""
    subtype = vqa_subtype(entry.split)
    return {
        "vcr": f"vcr/vcr1images/{entry.frame}.jpg",
        "snli_ve": f"snli_ve/flickr30k_images/{entry.image_id}.jpg",
        "vqa": f"vqa/{subtype}/COCO_{subtype}_{entry.image_id:012d}.jpg",
    }


def annotation_files(split: str) -> list[str]:
    """The split's annotation files, relative to the output folder (to check an output is whole)."""
    subtype = vqa_subtype(split)
    return [
        f"vcr/{split}.jsonl",
        f"snli_ve/snli_ve_{SNLI_SPLITS.get(split, split)}.jsonl",
        f"vqa/v2_OpenEnded_mscoco_{subtype}_questions.json",
        f"vqa/v2_mscoco_{subtype}_annotations.json",
    ]


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(", ", ": "))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(dumps(row) + "\n" for row in rows).encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, dumps(obj).encode("utf-8"))


def write_split(out: Path, split: str, entries: list[ImageEntry]) -> dict[str, int]:
    """Images, per-dataset annotation files and the scenes file of one split; counts written."""
    for entry in entries:
        for path in image_paths(entry).values():
            write_atomic(out / path, entry.jpeg)
        write_json(out / "vcr" / "vcr1images" / f"{entry.frame}.json", vcr_metadata(entry.scene))
    write_jsonl(out / "scenes" / f"{split}.jsonl", [scene_row(entry) for entry in entries])
    vcr, snli = vcr_rows(entries), snli_rows(entries)
    questions, annotations = vqa_files(split, entries)
    vcr_file, snli_file, questions_file, annotations_file = annotation_files(split)
    write_json(out / questions_file, questions)
    write_json(out / annotations_file, annotations)
    write_jsonl(out / vcr_file, vcr)
    write_jsonl(out / snli_file, snli)
    return {
        "images": len(entries),
        "vcr": len(vcr),
        "snli_ve": len(snli),
        "vqa": len(questions["questions"]),
    }


def vcr_metadata(scene: Scene) -> dict[str, Any]:
    return {
        "boxes": [[*map(float, thing.box), 1.0] for thing in scene.things],
        "segms": [outline(thing) for thing in scene.things],
        "names": [thing.shape for thing in scene.things],
        "width": scene.size,
        "height": scene.size,
    }


def scene_row(entry: ImageEntry) -> dict[str, Any]:
    scene = entry.scene
    things = [
        {"colour": t.colour, "shape": t.shape, "size": t.size, "box": list(t.box)}
        for t in scene.things
    ]
    return {
        "split": entry.split,
        "index": entry.index,
        "image_id": entry.image_id,
        "style": scene.style,
        "background": scene.background,
        "things": things,
        "images": image_paths(entry),
    }


def vcr_rows(entries: list[ImageEntry]) -> list[dict[str, Any]]:
    rows = []
    for entry in entries:
        for number, item in enumerate(entry.vcr):
            movie = entry.movie_dir.split("_", 1)[1]
            row = dict(item, movie=movie, img_fn=f"{entry.frame}.jpg")
            row.update(
                metadata_fn=f"{entry.frame}.json",
                annot_id=f"{entry.split}-{len(rows)}",
                img_id=f"{entry.split}-{entry.index}",
                question_number=number,
            )
            rows.append(row)
    return rows


def snli_rows(entries: list[ImageEntry]) -> list[dict[str, Any]]:
    rows = []
    for entry in entries:
        image = f"{entry.image_id}.jpg"
        premise = caption(entry.scene)
        for number, item in enumerate(entry.snli):
            label = item["label"]
            rows.append(
                {
                    "Flikr30kID": image,
                    "pairID": f"{image}#0r{number}{label[0]}",
                    "captionID": f"{image}#0",
                    "gold_label": label,
                    "annotator_labels": [label],
                    "sentence1": premise,
                    "sentence2": item["hypothesis"],
                    "question_type": item["question_type"],
                    "shift": item["shift"],
                }
            )
    return rows


def vqa_files(split: str, entries: list[ImageEntry]) -> tuple[dict, dict]:
    """The questions and annotations JSON of one subtype (question_id = image_id * 10 + k)."""
    header = {"info": INFO, "license": {}, "data_type": "mscoco"}
    header["data_subtype"] = vqa_subtype(split)
    questions, annotations = [], []
    for entry in entries:
        for number, item in enumerate(entry.vqa):
            question_id = entry.image_id * 10 + number
            ids = {"question_id": question_id, "image_id": entry.image_id}
            questions.append(dict(ids, question=item["question"]))
            annotations.append(
                dict(
                    ids,
                    question_type=item["question_type"],
                    answer_type=item["answer_type"],
                    multiple_choice_answer=item["answer"],
                    answers=item["answers"],
                    shift=item["shift"],
                )
            )
    return (
        dict(header, task_type="Open-Ended", questions=questions),
        dict(header, annotations=annotations),
    )
