"""Reading and preprocessing images in DataLoader workers.

Each item is one record's image, decoded once and resized to every (size, interpolation) the
encoders need, as uint8 ``[3, S, S]``. A record whose image cannot be read becomes an item with
an ``error`` instead of images; the extraction loop skips or fails on it (``--on-error``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from extract.datasets.base import Record
from extract.encoders import Preprocess

INTERPOLATION = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
ImageKey = tuple[int, str]  # (size, interpolation)


def image_key(preprocess: Preprocess) -> ImageKey:
    return preprocess.size, preprocess.interpolation


@dataclass
class Item:
    position: int
    record: Record
    images: dict[ImageKey, torch.Tensor] | None
    original_size: tuple[int, int] | None  # (width, height)
    error: str | None = None


class RecordImages(Dataset):
    """Records from ``first_position`` on, with their images decoded and resized."""

    def __init__(self, adapter, records: list[Record], first_position: int, keys: list[ImageKey]):
        self.adapter, self.records = adapter, records
        self.first_position, self.keys = first_position, sorted(set(keys))
        self._last: Item | None = None  # the previous item, whose image the next may share

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Item:
        record = self.records[index]
        position = self.first_position + index
        last = self._last
        if last is not None and last.error is None and last.record.image == record.image:
            # VQA and SNLI-VE list several questions of one image together: decode it once
            item = Item(position, record, last.images, last.original_size)
        else:
            item = self._read(position, record)
        self._last = item
        return item

    def _read(self, position: int, record: Record) -> Item:
        try:
            image = Image.open(io.BytesIO(self.adapter.read_image_bytes(record)))
            original = image.size  # boxes are in these pixels; draft() below may shrink .size
            largest = max(size for size, _ in self.keys)
            image.draft("RGB", (largest, largest))  # JPEG: decode at a reduced scale when large
            image = image.convert("RGB")
            images = {key: resize(image, *key) for key in self.keys}
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            reason = f"{type(error).__name__}: {error}"
            return Item(position, record, None, None, f"image {record.image!r}: {reason}")
        return Item(position, record, images, original)


def resize(image: Image.Image, size: int, interpolation: str) -> torch.Tensor:
    """Squash to ``size`` x ``size`` (no crop: teacher cells and student patches stay aligned)."""
    resized = image.resize((size, size), INTERPOLATION[interpolation])
    return torch.from_numpy(np.array(resized)).permute(2, 0, 1).contiguous()


def collate(items: list[Item]) -> list[Item]:
    return items
