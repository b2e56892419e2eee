"""Procedurally generated VQA / SNLI-VE / VCR datasets in the released formats (the embedded demo).

Scenes of 1-3 coloured shapes (:mod:`.synthetic_scenes`) are saved as JPEG, and over the same
images three datasets are written exactly as released (:mod:`.synthetic_write`), so that the real
adapters read them: ``open_dataset("synthetic", out, task="vqa")`` is the VQA adapter over
``out/vqa``. Splits ``train``, ``val``, ``test`` and ``test_shifted``, all labelled.
``test_shifted`` is a domain shift: paraphrased templates, teacher-probed synonyms
(:mod:`.synthetic_text`) and colour-shape pairs that no other split shows (``held_out``).
Question types are balanced per split; every text records its ``question_type`` and ``shift``.

Deterministic: every image and its texts come from generators seeded by ``(seed, split, index)``,
so the same config gives byte-identical files. ``generator.json`` (the settings) is written last;
a run over a complete output with the same settings does nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .synthetic_scenes import COLOURS, SHAPES, Pair, SceneConfig, render, sample_scene
from .synthetic_text import (
    VQA_KINDS,
    Say,
    annotator_answers,
    schedule,
    snli_items,
    vqa_question,
    with_fallback,
)
from .synthetic_vcr import VCR_KINDS, vcr_item
from .synthetic_write import (
    SPLIT_CODES,
    ImageEntry,
    annotation_files,
    write_atomic,
    write_split,
)

log = logging.getLogger(__name__)

SETTINGS_FILE = "generator.json"
IN_PROGRESS = ".generating"
OWNED = ("vcr", "snli_ve", "vqa", "scenes")  # what the generator writes under --out
FORMAT_VERSION = 1  # bump when the same config would write different files
# Unseen outside test_shifted: every colour once, every shape once or twice (6 of 24 pairs).
DEFAULT_HELD_OUT: tuple[Pair, ...] = (
    ("red", "ring"),
    ("green", "pyramid"),
    ("blue", "ball"),
    ("orange", "box"),
    ("yellow", "pyramid"),
    ("purple", "ring"),
)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate; the default writes 2,400 images in a few seconds on 2 CPU cores."""

    seed: int = 0
    image_size: int = 64  # pixels per side
    train: int = 1500  # images per split (each image: 2 VQA questions, 3 SNLI-VE pairs, 1 VCR)
    val: int = 300
    test: int = 300
    test_shifted: int = 300
    max_objects: int = 3
    vqa_per_image: int = 2
    vcr_per_image: int = 1
    snli_per_image: int = 3  # SNLI-VE proper has ~16.5 hypotheses per image
    synonym_rate: float = 0.5  # share of test_shifted texts that use synonyms
    held_out: tuple[Pair, ...] = DEFAULT_HELD_OUT
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        object.__setattr__(self, "held_out", tuple(tuple(pair) for pair in self.held_out))
        if min(self.counts().values()) < 0:
            raise ValueError(f"image counts must be >= 0, got {self.counts()}")
        if self.image_size < 32:
            raise ValueError(f"image_size {self.image_size} is too small; use 32 or more")
        if not 1 <= self.max_objects <= 3:
            raise ValueError(f"max_objects must be 1..3, got {self.max_objects}")
        if not 1 <= self.vqa_per_image <= 10 or min(self.vcr_per_image, self.snli_per_image) < 1:
            raise ValueError(
                "vqa_per_image must be 1..10, and vcr_per_image and snli_per_image >= 1"
            )
        if not 0.0 <= self.synonym_rate <= 1.0:
            raise ValueError(f"synonym_rate must be in [0, 1], got {self.synonym_rate}")
        unknown = [p for p in self.held_out if p[0] not in COLOURS or p[1] not in SHAPES]
        if unknown or not self.held_out:
            raise ValueError(
                f"held_out must be a non-empty list of (colour, shape) pairs from {COLOURS} x "
                f"{SHAPES}; bad: {unknown}"
            )

    def counts(self) -> dict[str, int]:
        return {
            "train": self.train,
            "val": self.val,
            "test": self.test,
            "test_shifted": self.test_shifted,
        }

    def scene_config(self, split: str) -> SceneConfig:
        return SceneConfig(
            size=self.image_size,
            max_objects=self.max_objects,
            held_out=self.held_out,
            shifted=split == "test_shifted",
            jpeg_quality=self.jpeg_quality,
        )

    def settings(self) -> dict[str, Any]:
        """What ``generator.json`` holds: the config and the format version, JSON-normalised."""
        config = json.loads(json.dumps(asdict(self)))
        return {"generator": __name__, "format_version": FORMAT_VERSION, "config": config}


@dataclass
class GenerationResult:
    out: Path
    counts: dict[str, dict[str, int]]  # split -> {"images", "vcr", "snli_ve", "vqa"}
    seconds: float
    skipped: bool = False  # the output was already complete with these settings
    settings: dict[str, Any] = field(default_factory=dict)


def generate(config: GeneratorConfig, out: str | Path) -> GenerationResult:
    """Write the three datasets under ``out``; a no-op when it already holds this config."""
    started = time.perf_counter()
    out = Path(out)
    settings = config.settings()
    previous = read_settings(out)
    if previous is not None and previous.get("settings") == settings and whole(out, previous):
        log.info("%s already holds these datasets (%s); nothing to do", out, SETTINGS_FILE)
        counts = {s: previous["counts"][s] for s in SPLIT_CODES if s in previous["counts"]}
        return GenerationResult(out, counts, 0.0, True, settings)
    prepare(out, previous is not None)
    counts = {}
    for split, count in config.counts().items():
        if count:
            counts[split] = write_split(out, split, build_split(config, split))
            log.info("synthetic/%s: %s", split, counts[split])
    record = {"settings": settings, "counts": counts}
    write_atomic(
        out / SETTINGS_FILE, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    )
    (out / IN_PROGRESS).unlink()
    return GenerationResult(out, counts, time.perf_counter() - started, False, settings)


def read_settings(out: Path) -> dict[str, Any] | None:
    """The previous run's ``generator.json`` (None when absent or unreadable)."""
    try:
        record = json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def whole(out: Path, previous: dict[str, Any]) -> bool:
    """Every annotation file the previous run wrote is still there."""
    splits = previous.get("counts", {})
    return all((out / name).is_file() for split in splits for name in annotation_files(split))


def prepare(out: Path, ours: bool) -> None:
    """Clear what an earlier (possibly killed) run wrote; never touch folders it did not write."""
    ours = ours or (out / IN_PROGRESS).exists()
    present = [name for name in OWNED if (out / name).exists()]
    if present and not ours:
        raise FileExistsError(
            f"{out} already holds {present} but no {SETTINGS_FILE}: not written by this "
            "generator. Choose another --out, or remove those folders"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / IN_PROGRESS).touch()
    (out / SETTINGS_FILE).unlink(missing_ok=True)
    for name in present:
        shutil.rmtree(out / name)


def build_split(config: GeneratorConfig, split: str) -> list[ImageEntry]:
    """Scenes, JPEGs and texts of one split, question kinds balanced over the split."""
    count, code = config.counts()[split], SPLIT_CODES[split]
    plan = np.random.default_rng([config.seed, code, 10**9])
    vqa_kinds = schedule(VQA_KINDS, count * config.vqa_per_image, plan)
    vcr_kinds = schedule(VCR_KINDS, count * config.vcr_per_image, plan)
    entries = []
    for index in range(count):
        vqa = vqa_kinds[index * config.vqa_per_image : (index + 1) * config.vqa_per_image]
        vcr = vcr_kinds[index * config.vcr_per_image : (index + 1) * config.vcr_per_image]
        entries.append(build_entry(config, split, index, vqa, vcr))
    return entries


def build_entry(
    config: GeneratorConfig, split: str, index: int, vqa_kinds: list[str], vcr_kinds: list[str]
) -> ImageEntry:
    """One image and its texts; each dataset draws from its own seeded stream."""
    seed = [config.seed, SPLIT_CODES[split], index]
    rng = np.random.default_rng([*seed, 0])
    scene = sample_scene(rng, config.scene_config(split))
    entry = ImageEntry(split, index, scene, render(scene, rng, config.jpeg_quality))

    def say(stream: int) -> Say:
        stream_rng = np.random.default_rng([*seed, stream])
        held_out = frozenset(config.held_out)
        return Say(split == "test_shifted", held_out, stream_rng, config.synonym_rate)

    words = say(1)
    for kind in vqa_kinds:
        item = with_fallback(lambda k: vqa_question(scene, k, words), kind, VQA_KINDS)
        item["answers"] = annotator_answers(item["answer"], item.pop("wrong"), words.rng)
        entry.vqa.append(item)
    entry.snli = snli_items(scene, say(2), config.snli_per_image)
    words = say(3)
    entry.vcr = [
        with_fallback(lambda k: vcr_item(scene, k, words), kind, VCR_KINDS) for kind in vcr_kinds
    ]
    return entry
