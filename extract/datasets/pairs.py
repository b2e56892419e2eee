"""Generic image-caption corpora: a caption table beside the images, or WebDataset tars.

Layouts under the root (both may be mixed as long as split names do not collide):

* ``captions.csv`` (header ``path,caption``) or ``captions.jsonl`` (``{"path", "caption"}`` per
  line) -> split ``train``; ``<split>.csv`` / ``<split>.jsonl`` -> split ``<split>``. ``path`` is
  relative to the root; an image may have several captions. Key: ``<path>#<n>``, n = 0-based index
  of the caption among that image's captions in the file.
* ``*.tar`` directly under the root -> split ``train``; ``<split>/*.tar`` -> split ``<split>``.
  Each sample is ``<key>.jpg|.jpeg|.png`` + ``<key>.txt`` (WebDataset naming: the key is the
  member name up to the first dot of its base name). Key: the sample key; ``Record.image`` is
  ``<tar path relative to root>#<member name>``.
"""

from __future__ import annotations

import csv
import logging
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from .base import Record
from .common import (
    KeyTracker,
    check_options,
    check_root,
    check_split,
    get_field,
    read_jsonl,
    where,
)

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
TABLE_SUFFIXES = (".csv", ".jsonl")
HINT = (
    'Put captions.csv (columns path,caption), captions.jsonl ({"path", "caption"} per line) or '
    "<split>.csv/<split>.jsonl beside the images, or WebDataset shards (*.tar with <key>.jpg + "
    "<key>.txt) directly under the root or under <root>/<split>/."
)


class PairsAdapter:
    name = "pairs"
    num_texts = 1

    def __init__(self, root: str | Path, **options: Any) -> None:
        check_options(options, (), self.name)
        self.root = check_root(root, "image-caption", HINT)
        if not self.splits():
            raise FileNotFoundError(f"no caption table or tar shard in {self.root}. {HINT}")
        self._member_index: dict[Path, dict[str, tuple[int, int]]] = {}

    def splits(self) -> list[str]:
        return sorted(self._layout())

    def input_files(self, split: str) -> list[Path]:
        check_split(split, self.splits(), self.name, self.root)
        return self._layout()[split]

    def task(self) -> dict[str, Any]:
        return {"name": "pairs", "kind": "retrieval"}

    def records(self, split: str) -> Iterator[Record]:
        files = self.input_files(split)
        keys = KeyTracker()
        count = 0
        for path in files:
            rows = _tar_records(path, self.root) if path.suffix == ".tar" else _table_records(path)
            for record, at in rows:
                keys.add(record.key, at)
                count += 1
                yield record
        log.info("pairs/%s: %d records from %d file(s)", split, count, len(files))

    def read_image_bytes(self, record: Record) -> bytes:
        """The image file, or the tar member for ``<shard>.tar#<member>`` images."""
        tar_name, sep, member = record.image.partition(".tar#")
        tar_path = self.root / f"{tar_name}.tar"
        if sep and tar_path.is_file():
            return self._read_member(tar_path, member, record.key)
        path = self.root / record.image
        if not path.is_file():
            raise FileNotFoundError(f"image {path} of sample {record.key!r} not found. {HINT}")
        return path.read_bytes()

    def _read_member(self, tar_path: Path, member: str, key: str) -> bytes:
        # Offsets only (no open file kept), so forked data-loader workers can share the index.
        if tar_path not in self._member_index:
            with tarfile.open(tar_path) as tar:
                self._member_index[tar_path] = {
                    info.name: (info.offset_data, info.size) for info in tar if info.isfile()
                }
        if member not in self._member_index[tar_path]:
            raise FileNotFoundError(
                f"member {member!r} of sample {key!r} is not in {tar_path}; "
                "the shard changed since the records were listed"
            )
        offset, size = self._member_index[tar_path][member]
        with open(tar_path, "rb") as file:
            file.seek(offset)
            return file.read(size)

    def _layout(self) -> dict[str, list[Path]]:
        """split -> its caption table, or its tar shards (sorted by name)."""
        layout: dict[str, list[Path]] = {}
        for path in sorted(self.root.iterdir()):
            if path.is_file() and path.suffix in TABLE_SUFFIXES:
                split = "train" if path.stem == "captions" else path.stem
                _add_split(layout, split, [path])
        top_tars = sorted(self.root.glob("*.tar"))
        if top_tars:
            _add_split(layout, "train", top_tars)
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            tars = sorted(folder.glob("*.tar"))
            if tars:
                _add_split(layout, folder.name, tars)
        return layout


def _add_split(layout: dict[str, list[Path]], split: str, files: list[Path]) -> None:
    if split in layout:
        raise ValueError(
            f"split {split!r} is given twice: by {[str(p) for p in layout[split]]} "
            f"and by {[str(p) for p in files]}; keep one of them"
        )
    layout[split] = files


def _table_rows(path: Path) -> Iterator[tuple[str, str, str]]:
    """(image path, caption, file:line) per row of a csv or jsonl caption table."""
    if path.suffix == ".jsonl":
        for line, obj in read_jsonl(path, "fix the line, or write the caption table again"):
            at = where(path, line)
            yield get_field(obj, "path", str, at), get_field(obj, "caption", str, at), at
        return
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        if not {"path", "caption"} <= set(reader.fieldnames or ()):
            raise ValueError(
                f"{where(path, 1)}: the header must name the columns 'path' and "
                f"'caption', got {reader.fieldnames}; add a header line"
            )
        for row in reader:
            at = where(path, reader.line_num)
            if row["path"] is None or row["caption"] is None:
                raise ValueError(f"{at}: the row has no 'path' or 'caption' value; fix the row")
            yield row["path"], row["caption"], at


def _table_records(path: Path) -> Iterator[tuple[Record, str]]:
    seen: Counter[str] = Counter()
    for image, caption, at in _table_rows(path):
        image = _relative_image(image, at)
        text = _caption(caption, at)
        index = seen[image]
        seen[image] += 1
        meta = {"path": image, "caption_index": index}
        yield Record(key=f"{image}#{index}", image=image, texts=[text], meta=meta), at


def _relative_image(image: str, at: str) -> str:
    path = PurePosixPath(image.strip())
    if not image.strip() or path.is_absolute() or ".." in path.parts:
        raise ValueError(
            f"{at}: image path {image!r} must be relative to the dataset root "
            "(no leading '/', no '..'); fix the path"
        )
    return path.as_posix()


def _caption(text: str, at: str) -> str:
    caption = text.strip()
    if not caption:
        raise ValueError(f"{at}: empty caption; remove the row or fill in the caption")
    return caption


def _sample_key(name: str) -> tuple[str, str]:
    """WebDataset's split of a member name: key up to the first dot of the base name, extension."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def _tar_groups(path: Path) -> Iterator[tuple[str, dict[str, bytes | str]]]:
    """(sample key, {extension: caption text or image member name}) in archive order."""
    key, group = None, {}
    with tarfile.open(path) as tar:
        for info in tar:
            if not info.isfile():
                continue
            member_key, ext = _sample_key(info.name)
            if member_key != key and key is not None:
                yield key, group
                group = {}
            key = member_key
            if ext.lower() == "txt":
                group["txt"] = _read_text(tar, info, path)
            elif ext.lower() in IMAGE_EXTENSIONS:
                if "image" in group:
                    raise ValueError(
                        f"{path}: sample {key!r} has two images ({group['image']!r} "
                        f"and {info.name!r}); keep one"
                    )
                group["image"] = info.name
    if key is not None:
        yield key, group


def _read_text(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> str:
    data = tar.extractfile(info).read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}#{info.name}: caption is not UTF-8; re-encode it") from None


def _tar_records(path: Path, root: Path) -> Iterator[tuple[Record, str]]:
    shard = path.relative_to(root).as_posix()
    for key, group in _tar_groups(path):
        for part, what in (("image", "an image (.jpg/.jpeg/.png)"), ("txt", "a .txt caption")):
            if part not in group:
                raise ValueError(
                    f"{path}#{key}: sample {key!r} lacks {what}; every sample needs an image and "
                    "a caption (fix or rebuild the shard)"
                )
        at = f"{path}#{group['image']}"
        text = _caption(group["txt"], at)
        meta = {"shard": shard, "member": group["image"]}
        image = f"{shard}#{group['image']}"
        yield Record(key=key, image=image, texts=[text], meta=meta), at
