"""Reading and preprocessing images in DataLoader workers (or, for JPEGs, on the GPU).

Each item is one record's image, decoded once and resized to every (size, interpolation) the
encoders need, as uint8 ``[3, S, S]``. A record whose image cannot be read becomes an item with
an ``error`` instead of images; the extraction loop skips or fails on it (``--on-error``).

With ``device_decode`` the workers only read the files: a JPEG stays its bytes, and
:func:`decode_on_device` decodes a whole batch of them on the teachers' GPU with nvJPEG
(``torchvision.io.decode_jpeg``) and resizes them there (antialiased ``interpolate``). Other
formats, and JPEGs nvJPEG cannot read, are decoded by PIL at full size instead, counted as
fallbacks, and resized the same way, so one cache never mixes two resizing methods.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from extract.datasets.base import Record
from extract.encoders import Preprocess
from extract.resize import resized_crop
from extract.store.atomic import sha256_bytes

log = logging.getLogger(__name__)
INTERPOLATION = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
ImageKey = tuple[int, str, str]  # (size, interpolation, resize mode: squash or crop)


def image_key(preprocess: Preprocess, mode: str = "squash") -> ImageKey:
    return preprocess.size, preprocess.interpolation, mode


@dataclass
class Item:
    position: int
    record: Record
    images: dict[ImageKey, torch.Tensor] | None
    original_size: tuple[int, int] | None  # (width, height)
    error: str | None = None
    # device decoding: the JPEG file's bytes (1-D), or a PIL-decoded [3, H, W] (other formats)
    source: torch.Tensor | None = None
    image_sha256: str | None = None  # of the file's bytes, stored so edits can be found later


class RecordImages(Dataset):
    """Records from ``first_position`` on, with their images decoded and resized."""

    def __init__(
        self,
        adapter,
        records: list[Record],
        first_position: int,
        keys: list[ImageKey],
        device_decode: bool = False,
        fast_decode: bool = False,
    ):
        """``fast_decode``: JPEGs decoded at a reduced DCT scale (while both sides stay at least
        the largest size asked for) before the resize; faster on large photos, not exact."""
        self.adapter, self.records = adapter, records
        self.first_position, self.keys = first_position, sorted(set(keys))
        self.device_decode, self.fast_decode = device_decode, fast_decode
        self._last: Item | None = None  # the previous item, whose image the next may share

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Item:
        record = self.records[index]
        position = self.first_position + index
        last = self._last
        if last is not None and last.error is None and last.record.image == record.image:
            # VQA and SNLI-VE list several questions of one image together: decode it once
            item = replace(last, position=position, record=record)
        else:
            item = self._read(position, record)
        self._last = item
        return item

    def _read(self, position: int, record: Record) -> Item:
        if self.device_decode:
            return self._read_for_device(position, record)
        try:
            data = self.adapter.read_image_bytes(record)
            image = Image.open(io.BytesIO(data))
            original = image.size  # boxes are in these pixels; draft() below may shrink .size
            if self.fast_decode:  # JPEG: decode at 1/2, 1/4 or 1/8 scale while still >= largest
                largest = max(key[0] for key in self.keys)
                image.draft("RGB", (largest, largest))
            image = image.convert("RGB")
            images = {key: resize(image, *key) for key in self.keys}
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            reason = f"{type(error).__name__}: {error}"
            return Item(position, record, None, None, f"image {record.image!r}: {reason}")
        return Item(position, record, images, original, image_sha256=sha256_bytes(data))

    def _read_for_device(self, position: int, record: Record) -> Item:
        """The file's bytes for nvJPEG; other formats decoded here at full size."""
        try:
            data = self.adapter.read_image_bytes(record)
            image = Image.open(io.BytesIO(data))  # reads the header: size and format
            # MPO: a camera's JPEG with extra frames (nvJPEG reads the first, as PIL does)
            if image.format in ("JPEG", "MPO") and image.mode in ("RGB", "L"):
                source = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            else:
                source = to_tensor(image.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            reason = f"{type(error).__name__}: {error}"
            return Item(position, record, None, None, f"image {record.image!r}: {reason}")
        return Item(
            position, record, None, image.size, source=source, image_sha256=sha256_bytes(data)
        )


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def decode_on_device(items: list[Item], keys: list[ImageKey], device: torch.device) -> int:
    """Give every good item of a batch its images, decoded and resized on ``device``: the JPEGs
    in one nvJPEG call, each distinct image once. Returns how many images fell back to PIL."""
    pending = [item for item in items if item.error is None and item.images is None]
    distinct: dict[str, Item] = {}
    for item in pending:
        distinct.setdefault(item.record.image, item)
    decoded, fallbacks = decode_sources(list(distinct.values()), device)
    resized = {
        name: {key: resize_tensor(image, *key) for key in sorted(set(keys))}
        for name, image in decoded.items()
        if not isinstance(image, str)
    }
    for item in pending:
        if item.record.image in resized:
            item.images = resized[item.record.image]
        else:  # neither nvJPEG nor PIL could read it
            item.error = decoded[item.record.image]
    return fallbacks


def decode_sources(items: list[Item], device: torch.device) -> tuple[dict, int]:
    """Image name -> ``[3, H, W]`` uint8 on ``device`` (or why it cannot be read); and how many
    were not nvJPEG's."""
    from torchvision.io import ImageReadMode, decode_jpeg

    jpegs = [item for item in items if item.source.dim() == 1]
    others = [item for item in items if item.source.dim() != 1]
    decoded = {item.record.image: item.source.to(device) for item in others}
    fallbacks = len(others)
    images: list = [None] * len(jpegs)
    if jpegs:
        try:
            images = decode_jpeg([i.source for i in jpegs], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # one unreadable file fails the batch: decode them one by one
            pass
    for item, image in zip(jpegs, images, strict=True):
        if image is None:
            try:
                image = decode_jpeg(item.source, mode=ImageReadMode.RGB, device=device)
            except RuntimeError as error:
                log.info("%s: nvJPEG cannot read it (%s); trying PIL", item.record.image, error)
                image = pil_decode(item, device)
                fallbacks += not isinstance(image, str)  # an unreadable one is a skip
        decoded[item.record.image] = image
    return decoded, fallbacks


def pil_decode(item: Item, device: torch.device) -> torch.Tensor | str:
    try:
        image = Image.open(io.BytesIO(item.source.numpy().tobytes())).convert("RGB")
    except (OSError, ValueError) as error:
        return f"image {item.record.image!r}: {type(error).__name__}: {error}"
    return to_tensor(image).to(device)


def resize_tensor(
    image: torch.Tensor, size: int, interpolation: str, mode: str = "squash"
) -> torch.Tensor:
    """``[3, H, W]`` uint8 to ``[3, size, size]`` where it lies (antialiased like PIL):
    squashed, or resized by its shorter side and centre-cropped (:mod:`extract.resize`)."""
    smooth = interpolation != "nearest"
    height, width = image.shape[1:]
    new_width, new_height, left, top = (
        (size, size, 0, 0) if mode == "squash" else resized_crop(width, height, size)
    )
    resized = torch.nn.functional.interpolate(
        image[None].float(), size=(new_height, new_width), mode=interpolation, antialias=smooth,
        align_corners=False if smooth else None,
    )  # fmt: skip
    resized = resized[0, :, top : top + size, left : left + size]
    return resized.round().clamp(0, 255).to(torch.uint8)


def resize(image: Image.Image, size: int, interpolation: str, mode: str = "squash") -> torch.Tensor:
    """Squash to ``size`` x ``size`` (teacher cells and student patches cover the same parts of
    any image), or resize the shorter side and centre-crop, as CLIP's transforms do."""
    if mode == "squash":
        return to_tensor(image.resize((size, size), INTERPOLATION[interpolation]))
    new_width, new_height, left, top = resized_crop(*image.size, size)
    resized = image.resize((new_width, new_height), INTERPOLATION[interpolation])
    return to_tensor(resized.crop((left, top, left + size, top + size)))


def collate(items: list[Item]) -> list[Item]:
    return items
