"""Tiny datasets in the released formats (VCR, SNLI-VE, VQA v2, caption pairs) for e2e runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (40, 60, 220),
    "yellow": (230, 220, 40),
}


def scene(
    index: int, size: tuple[int, int] = (64, 48)
) -> tuple[Image.Image, str, list[list[float]]]:
    """A noisy background with one coloured rectangle; returns image, colour name and its box."""
    rng = np.random.default_rng(index)
    width, height = size
    pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    name = list(COLOURS)[index % len(COLOURS)]
    x1, y1 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    x2, y2 = x1 + width // 3, y1 + height // 3
    pixels[y1:y2, x1:x2] = COLOURS[name]
    return Image.fromarray(pixels), name, [float(x1), float(y1), float(x2), float(y2)]


def save_jpeg(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90)


def write_snli_ve(root: Path, counts: dict[str, int]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    labels = ["entailment", "neutral", "contradiction"]
    offset = 0
    for split, count in counts.items():
        lines = []
        for i in range(offset, offset + count):
            image, colour, _ = scene(i)
            save_jpeg(image, root / "flickr30k_images" / f"{1000 + i}.jpg")
            lines.append(
                {
                    "Flikr30kID": f"{1000 + i}.jpg",
                    "pairID": f"{1000 + i}.jpg#0r1{labels[i % 3][0]}",
                    "gold_label": labels[i % 3],
                    "sentence1": "A picture.",
                    "sentence2": f"There is a {colour} box.",
                }
            )
        (root / f"snli_ve_{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        offset += count
    return root


def write_vcr(root: Path, counts: dict[str, int]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    offset = 0
    for split, count in counts.items():
        lines = []
        for i in range(offset, offset + count):
            image, colour, box = scene(i)
            movie = ("lsmdc_0001_A" if i % 2 else "movieclips_B") + f"/frame{i}"
            save_jpeg(image, root / "vcr1images" / f"{movie}.jpg")
            meta = {
                "boxes": [box + [0.9], [0.0, 0.0, 20.0, 20.0, 0.8]],
                "segms": [[], []],
                "names": ["person", "car"],
                "width": 64,
                "height": 48,
            }
            (root / "vcr1images" / f"{movie}.json").write_text(json.dumps(meta))
            line = {
                "movie": movie.split("/")[0],
                "objects": ["person", "car"],
                "img_fn": f"{movie}.jpg",
                "metadata_fn": f"{movie}.json",
                "question": ["What", "is", [0], "near", "?"],
                "answer_choices": [
                    [[0], "is", "near", c] for c in ("red", "green", "blue", "yellow")
                ],
                "rationale_choices": [
                    ["It", "is", c, "."] for c in ("bright", "dark", "far", "near")
                ],
                "annot_id": f"{split}-{i}",
                "img_id": f"{split}-{i}",
            }
            if split != "test":
                line.update(answer_label=list(COLOURS).index(colour), rationale_label=i % 4)
            lines.append(line)
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        offset += count
    return root


def write_vqa(root: Path, counts: dict[str, int]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subtypes = {"train": "train2014", "val": "val2014", "test": "test2015"}
    info = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {}}
    offset = 0
    for split, count in counts.items():
        subtype = subtypes[split]
        questions, annotations = [], []
        for i in range(offset, offset + count):
            image, colour, _ = scene(i)
            save_jpeg(image, root / subtype / f"COCO_{subtype}_{i:012d}.jpg")
            questions.append(
                {"question_id": 10 * i, "image_id": i, "question": "What color is the box?"}
            )
            answers = [colour] * 9 + ["white"]
            annotations.append(
                {
                    "question_id": 10 * i,
                    "image_id": i,
                    "question_type": "what color is the",
                    "answer_type": "other",
                    "multiple_choice_answer": colour,
                    "answers": [
                        {"answer_id": k + 1, "answer": a, "answer_confidence": "yes"}
                        for k, a in enumerate(answers)
                    ],
                }
            )
        data = dict(info, data_subtype=subtype, questions=questions)
        (root / f"v2_OpenEnded_mscoco_{subtype}_questions.json").write_text(json.dumps(data))
        if split != "test":
            data = dict(info, data_subtype=subtype, annotations=annotations)
            (root / f"v2_mscoco_{subtype}_annotations.json").write_text(json.dumps(data))
        offset += count
    return root


def write_pairs(root: Path, counts: dict[str, int]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    offset = 0
    for split, count in counts.items():
        with open(root / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "caption"])
            for i in range(offset, offset + count):
                image, colour, _ = scene(i)
                save_jpeg(image, root / "images" / f"{i}.jpg")
                writer.writerow([f"images/{i}.jpg", f"a {colour} box on a dark background"])
        offset += count
    return root


WRITERS = {"snli_ve": write_snli_ve, "vcr": write_vcr, "vqa": write_vqa, "pairs": write_pairs}
