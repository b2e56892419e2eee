"""``pixels:P`` (or ``pixels:P@S``): no parameters, the image resized to S x S (default 224) and cut
into P x P patches, stored as uint8: the student's input in ViLT style."""

from __future__ import annotations

import torch

from .base import ImageEncoder, Preprocess

DEFAULT_SIZE = 224


class PixelPatches(ImageEncoder):
    modality = "image"
    weights_sha256 = "none"

    def __init__(self, spec: str):
        patch, _, size = spec.partition("@")
        try:
            self.patch, self.size = int(patch), int(size or DEFAULT_SIZE)
        except ValueError as error:
            raise ValueError(
                f"pixels:{spec}: expected pixels:P or pixels:P@S with integers"
            ) from error
        if self.patch <= 0 or self.size % self.patch:
            raise ValueError(
                f"pixels:{spec}: the image size {self.size} must be a multiple of P={self.patch}"
            )
        self.id = f"pixels:{self.patch}@{self.size}"
        self.preprocess = Preprocess(self.size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        side = self.size // self.patch
        self.fields = {"patches": (side * side, self.patch * self.patch * 3)}

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 ``[B, 3, S, S]`` -> ``[B, (S/P)^2, P*P*3]``; patches row-major, pixels HWC."""
        batch, p = images.shape[0], self.patch
        side = self.size // p
        patches = images.reshape(batch, 3, side, p, side, p).permute(0, 2, 4, 3, 5, 1)
        return {"patches": patches.reshape(batch, side * side, p * p * 3)}
