"""Are a cache's inputs still those it was extracted from? The annotation files' sizes and
sha256s are in the manifest, each image's sha256 in its samples' json (``image_sha256``, taken
from the bytes the extraction read). ``python -m extract.verify --cache DIR --inputs ROOT``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from extract.datasets import open_dataset
from extract.datasets.base import Record
from extract.retry import reads
from extract.store import CacheReader
from extract.store.atomic import sha256_bytes, sha256_file

LISTED = 10  # problems of one kind listed by name; the rest are counted


@dataclass
class InputsReport:
    root: Path
    files: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)
    retryable: list[str] = field(default_factory=list)  # skipped samples whose image now reads

    @property
    def ok(self) -> bool:
        return not self.problems


def check_inputs(
    cache_dir: str | Path, root: str | Path, on_image: Callable[[], None] | None = None
) -> InputsReport:
    """Every annotation file and every image of the cache against its fingerprint."""
    cache = CacheReader(cache_dir)
    report = InputsReport(Path(root))
    dataset = cache.manifest.spec.dataset
    for name, expected in dataset.get("inputs", {}).items():
        report.files += 1
        report.problems += _file_problem(report.root / name, expected)
    adapter = open_dataset(dataset["adapter"], root, **dataset.get("options", {}))
    images = _fingerprints(cache)
    changed, missing, unknown = [], [], []
    for image, (key, expected) in images.items():
        report.images += 1
        try:
            found = sha256_bytes(adapter.read_image_bytes(Record(key, image, [])))
        except OSError:
            missing.append(image)
            continue
        finally:
            if on_image is not None:
                on_image()
        if expected is None:
            unknown.append(image)
        elif found != expected:
            changed.append(image)
    report.problems += _listed(changed, "image(s) changed since extraction (sha256 differs)")
    report.problems += _listed(missing, "image(s) missing or unreadable")
    report.problems += _listed(unknown, "image(s) without a stored sha256 (an older cache)")
    report.retryable = _readable_skips(cache, adapter)
    return report


def _file_problem(path: Path, expected: dict) -> list[str]:
    if not path.is_file():
        return [f"{path}: missing (the cache was extracted from it)"]
    if path.stat().st_size != expected["bytes"] or sha256_file(path) != expected["sha256"]:
        return [f"{path}: changed since extraction (size or sha256 differs)"]
    return []


def _fingerprints(cache: CacheReader) -> dict[str, tuple[str, str | None]]:
    """Image -> (a sample key that uses it, its stored sha256), over every split."""
    images: dict[str, tuple[str, str | None]] = {}
    for split in cache.splits:
        for sample in cache.split(split, fields=[]):
            meta = sample["meta"]
            images.setdefault(meta["image"], (sample["__key__"], meta.get("image_sha256")))
    return images


def _readable_skips(cache: CacheReader, adapter) -> list[str]:
    """Keys of skipped samples whose image reads now (``--retry-skipped`` would add them)."""
    keys = []
    for split in cache.splits:
        for skipped in cache.manifest.splits[split].skipped:
            image = skipped.get("image")
            if image is None:
                continue
            if reads(adapter, skipped["key"], image):
                keys.append(skipped["key"])
    return keys


def _listed(names: list[str], what: str) -> list[str]:
    if not names:
        return []
    shown = ", ".join(names[:LISTED]) + (
        f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    )
    return [f"{len(names)} {what}: {shown}"]


def format_inputs_report(report: InputsReport) -> str:
    lines = [
        f"inputs under {report.root}: {report.files} annotation file(s), {report.images} image(s)"
    ]
    if report.ok:
        lines.append("OK: every input is the one the cache was extracted from")
    else:
        lines.append(f"CHANGED: {len(report.problems)} problem(s)")
        lines += [f"  - {problem}" for problem in report.problems]
    if report.retryable:
        lines.append(
            f"{len(report.retryable)} skipped sample(s) read now: run the extraction again with "
            "--retry-skipped to add them"
        )
    return "\n".join(lines)
