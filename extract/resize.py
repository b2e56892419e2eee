"""How an image becomes the square a teacher (or the student) sees: ``squash`` or ``crop``.

``squash`` (the default) resizes the whole image to S x S: every teacher grid cell and student
patch covers the same part of the image whatever its shape, and nothing is cut away. ``crop`` is
CLIP's own preprocessing (torchvision ``Resize(S)`` of the shorter side, then ``CenterCrop(S)``):
a non-square image's features are then open_clip's exactly (squashed ones differ by cosine down
to about 0.92), but the ends of the longer side are cut off, for the teacher and the student
alike, and dataset boxes are clipped to the crop (counted in the sample's json).
"""

from __future__ import annotations

import torch

MODES = ("squash", "crop")


def resized_crop(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """torchvision's ``Resize(size)`` then ``CenterCrop(size)``: the resized width and height,
    and the crop's left and top in the resized image."""
    short, long = sorted((width, height))
    new_long = int(size * long / short)
    new_width, new_height = (size, new_long) if width <= height else (new_long, size)
    return (
        new_width,
        new_height,
        int(round((new_width - size) / 2.0)),
        int(round((new_height - size) / 2.0)),
    )


def unit_boxes(boxes: torch.Tensor, width: int, height: int, mode: str) -> torch.Tensor:
    """Boxes ``[N, 4]`` in original pixels -> 0..1 coordinates of the square the encoders see
    (for ``crop``: the centred square of the shorter side, boxes clipped to it)."""
    if mode == "squash":
        return boxes / torch.tensor([width, height, width, height], dtype=boxes.dtype)
    return _in_crop(boxes, width, height).clamp(0, 1)


def clipped_count(boxes: list[list[float]], width: int, height: int, mode: str) -> int:
    """How many boxes the crop cuts (always 0 for ``squash``)."""
    if mode == "squash" or not boxes:
        return 0
    unit = _in_crop(torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), width, height)
    return int(((unit < 0) | (unit > 1)).any(dim=1).sum())


def _in_crop(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    side = min(width, height)
    offset = torch.tensor([width - side, height - side] * 2, dtype=boxes.dtype) / 2
    return (boxes - offset) / side
