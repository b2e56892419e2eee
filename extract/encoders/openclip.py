"""open_clip teachers: both towers of one model, in one shared space (zero-shot scores available).

Ids (after the ``openclip:`` prefix):
- ``ARCH/TAG``: a pretrained tag (``ViT-B-16/openai``); needs the weights in the local cache.
- ``ARCH@/path/ckpt.pt``: a local checkpoint.
- ``ARCH:random``: the architecture with seeded random weights (the control teacher). ``ARCH``
  alone names no weights and is refused: a random model must never pass for a real teacher.
``ARCH`` may be a path to a model-config JSON file, registered under its file stem (tests build
tiny models this way).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import (
    ImageEncoder,
    Preprocess,
    TextEncoder,
    length_mask,
    random_weights_tag,
    seeded_init,
    sha256_of,
)
from .spans import openclip_gives_spans, openclip_spans

DEFAULT_MEAN = (0.48145466, 0.4578275, 0.40821073)
DEFAULT_STD = (0.26862954, 0.26130258, 0.27577711)


def parse(spec: str) -> tuple[str, str | None, str | None]:
    """``ARCH/TAG``, ``ARCH@PATH`` or ``ARCH`` -> ``(arch, tag or None, path or None)``."""
    if "@" in spec:
        arch, path = spec.split("@", 1)
        return arch, None, path
    if spec.endswith(".json") or "/" not in spec:
        return spec, None, None
    arch, tag = spec.rsplit("/", 1)
    return arch, tag, None


def load_model(spec: str, random_init: bool) -> tuple[torch.nn.Module, str, str]:
    """The model, the arch name, and the sha256 of its weights (or a tag for random weights)."""
    import open_clip

    arch, tag, path = parse(spec)
    if arch.endswith(".json"):
        config = Path(arch)
        if not config.is_file():
            raise FileNotFoundError(f"open_clip model config {config} does not exist")
        open_clip.add_model_config(config)
        arch = config.stem
    if arch not in open_clip.list_models():
        raise ValueError(
            f"openclip:{spec}: unknown architecture {arch!r}; see open_clip.list_models()"
        )
    if not random_init and tag is None and path is None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ValueError(
            f"openclip:{spec} names no weights: give a pretrained tag (openclip:{arch}/TAG; "
            f"tags for {arch}: {', '.join(tags) or 'none'}), a checkpoint "
            f"(openclip:{spec}@/path/ckpt.pt), or add :random for random weights (the control)"
        )
    seeded_init()
    if random_init:
        model = open_clip.create_model(arch, pretrained=None)
        return model.eval(), arch, random_weights_tag(f"openclip:{arch}")
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"openclip:{spec}: checkpoint {path} does not exist")
        model = open_clip.create_model(arch, pretrained=path)
        return model.eval(), arch, sha256_of(path)
    model = open_clip.create_model(arch, pretrained=tag)
    cached = open_clip.pretrained.download_pretrained(open_clip.get_pretrained_cfg(arch, tag))
    return model.eval(), arch, sha256_of(cached)


def clip_towers(spec: str, random_init: bool = False, max_length: int = 64) -> list:
    model, arch, weights = load_model(spec, random_init)
    model_id = f"openclip:{spec}" + (":random" if random_init else "")
    image = OpenCLIPImage(model, model_id, weights)
    text = OpenCLIPText(model, model_id, weights, arch, max_length)
    return [image, text]


class OpenCLIPImage(ImageEncoder):
    modality = "image"

    def __init__(self, model, model_id: str, weights: str):
        self.model, self.id, self.weights_sha256 = model, model_id, weights
        self.space = model_id
        self.logit_scale = float(model.logit_scale.detach().exp())
        visual = model.visual
        size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        mean = tuple(255 * m for m in cfg.get("mean", DEFAULT_MEAN))
        std = tuple(255 * s for s in cfg.get("std", DEFAULT_STD))
        self.preprocess = Preprocess(int(size), mean, std, cfg.get("interpolation", "bicubic"))
        visual.output_tokens = True
        grid = visual.grid_size[0] * visual.grid_size[1]
        self.fields = {
            "global": (model.visual.output_dim,),
            "grid": (grid, visual.transformer.width),
        }

    def to(self, device: torch.device) -> OpenCLIPImage:
        self.model.to(device)
        return self

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled, tokens = self.model.visual(self.preprocess.normalize(images))
        return {"global": pooled, "grid": tokens}


class OpenCLIPText(TextEncoder):
    modality = "text"

    def __init__(self, model, model_id: str, weights: str, arch: str, max_length: int):
        import open_clip

        self.model, self.id, self.weights_sha256 = model, model_id, weights
        self.space = model_id
        self.logit_scale = float(model.logit_scale.detach().exp())
        context = model.context_length if hasattr(model, "context_length") else 77
        self.max_length = min(max_length, context)
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.gives_spans = openclip_gives_spans(self.tokenizer)
        self.vocab_size = int(model.token_embedding.num_embeddings)
        width = model.transformer.width if hasattr(model, "transformer") else model.text.width
        self.fields = {
            "global": (model.text_projection.shape[-1],),
            "tokens": (self.max_length, width),
        }

    def to(self, device: torch.device) -> OpenCLIPText:
        self.model.to(device)
        return self

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenizer(texts, context_length=self.max_length)
        return ids, (ids != 0).sum(1)  # open_clip pads with 0, which no real token uses

    def token_spans(self, texts: list[str]) -> np.ndarray:
        return openclip_spans(self.tokenizer, texts, self.max_length)

    def encode(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        cast = model.transformer.get_cast_dtype()
        x = model.token_embedding(token_ids).to(cast)  # [N, L, width]
        length = token_ids.shape[1]
        x = x + model.positional_embedding[:length].to(cast)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        tokens = model.ln_final(x)  # [N, L, width]
        pooled = (
            tokens[torch.arange(tokens.shape[0]), token_ids.argmax(dim=-1)] @ model.text_projection
        )
        mask = length_mask(lengths, length).unsqueeze(-1).to(tokens.dtype)
        return {"global": pooled, "tokens": tokens * mask}
