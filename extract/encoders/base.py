"""What an encoder is: modality, output fields and shapes, preprocessing, fingerprint.

Image encoders take uint8 images ``[B, 3, S, S]`` (already resized by the loader to their
``preprocess.size``) and normalise them on the device themselves, so DataLoader workers ship 4x
fewer bytes. Images are resized to a square without cropping, so that every cell of a teacher's
grid covers the same part of the image as the student's patch at the same position.

Text encoders own their tokenizer: the own student reads the same token ids, so student token j
and teacher token j are the same token. They also give each token's character span, so that a
student with another tokenizer can be aligned to the teacher's tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

RANDOM_SEED = 0


@dataclass(frozen=True)
class Preprocess:
    """Image preprocessing tied to the weights: square size and per-channel mean/std on 0..255."""

    size: int
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    interpolation: str = "bicubic"

    def describe(self) -> str:
        return f"resize{self.size}-{self.interpolation}-mean{list(self.mean)}-std{list(self.std)}"

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, S, S]`` -> float, normalised."""
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        return (images.float() - mean) / std


class Encoder:
    """Common description; subclasses set the attributes and implement ``encode``.

    ``fields`` maps an output name (``global``, ``grid`` for images; ``global``, ``tokens`` for
    text) to its per-item shape. ``space`` names a shared embedding space: two encoders with the
    same non-empty ``space`` give comparable ``global`` vectors (zero-shot scores make sense),
    with ``logit_scale`` as the temperature of those scores.
    """

    id: str
    modality: str
    fields: dict[str, tuple[int, ...]]
    weights_sha256: str
    space: str = ""
    logit_scale: float = 100.0

    @property
    def fingerprint(self) -> str:
        return f"{self.id}|weights={self.weights_sha256[:16]}|{self.describe_preprocessing()}"

    def describe_preprocessing(self) -> str:
        return ""

    def to(self, device: torch.device) -> Encoder:
        """Move the weights to ``device`` (no-op for encoders without weights)."""
        return self


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def random_weights_tag(config: str) -> str:
    """What stands for the weights' hash of a randomly initialised control teacher."""
    return hashlib.sha256(f"random-init seed={RANDOM_SEED} {config}".encode()).hexdigest()


def seeded_init() -> torch.Generator:
    """Seed torch for building a ``:random`` control teacher (same weights on every run)."""
    return torch.manual_seed(RANDOM_SEED)


class ImageEncoder(Encoder):
    preprocess: Preprocess

    def describe_preprocessing(self) -> str:
        return self.preprocess.describe()

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class TextEncoder(Encoder):
    """Texts are tokenized to ``max_length`` ids, padded at the end; ``lengths`` counts the real
    tokens (a pad id alone cannot tell, since some tokenizers pad with their end token)."""

    max_length: int
    vocab_size: int  # token ids lie in 0..vocab_size-1 (the student's embedding table size)

    def describe_preprocessing(self) -> str:
        return f"tokens{self.max_length}"

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``[N, max_length]`` and the number of real tokens of each text ``[N]``."""
        raise NotImplementedError

    gives_spans: bool = True  # False: the tokenizer cannot say which characters a token covers

    def tokenize_with_spans(
        self, texts: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """``tokenize`` and ``token_spans`` together (one tokenizer pass where it can)."""
        ids, lengths = self.tokenize(texts)
        return ids, lengths, self.token_spans(texts)

    def token_spans(self, texts: list[str]) -> np.ndarray:
        """``[N, max_length, 2]`` int32: each token's ``(start, end)`` characters in its text,
        ``(0, 0)`` for special tokens and padding (see :mod:`extract.encoders.spans`)."""
        raise NotImplementedError

    def encode(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class HFTokenizedText(TextEncoder):
    """A text encoder whose ``self.tokenizer`` is a transformers fast tokenizer: ids, lengths and
    character spans from it, padded and truncated to ``max_length``."""

    tokenizer: object

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return hf_tokenize(self.tokenizer, texts, self.max_length)

    def token_spans(self, texts: list[str]) -> np.ndarray:
        from .spans import hf_spans

        return hf_spans(self.tokenizer, texts, self.max_length)

    def tokenize_with_spans(
        self, texts: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        from .spans import hf_tokens

        return hf_tokens(self.tokenizer, texts, self.max_length)


def length_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """``[N]`` lengths -> ``[N, max_length]`` mask, 1 on real tokens."""
    positions = torch.arange(max_length, device=lengths.device)
    return (positions.unsqueeze(0) < lengths.unsqueeze(1)).long()


def hf_tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch = tokenizer(
        texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )
    return batch["input_ids"], batch["attention_mask"].sum(1)
