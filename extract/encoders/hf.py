"""transformers teachers: ``hf:<model id or local path>``.

- CLIP models (configs with ``text_config`` and ``vision_config``): both towers, one shared space.
- Vision models (ViT-like or CNN): ``global`` is the pooler output (or the grid mean), ``grid`` the
  patch tokens without ``[CLS]`` (or the flattened feature map).
- Text models (BERT-like): ``global`` is the attention-masked mean of the last hidden states.
Offline, ``<model id>`` must already be in the local Hugging Face cache; a local path always works.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .base import (
    HFTokenizedText,
    ImageEncoder,
    Preprocess,
    length_mask,
    random_weights_tag,
    seeded_init,
    sha256_of,
)


def weights_hash(source: str) -> str:
    """sha256 of the weights file (safetensors preferred), found locally or in the HF cache."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        local = Path(source) / name
        if local.is_file():
            return sha256_of(local)
    try:
        from huggingface_hub import hf_hub_download

        return sha256_of(hf_hub_download(source, "model.safetensors"))
    except Exception as error:  # the hub raises many kinds; all mean "no weights file here"
        raise FileNotFoundError(
            f"hf:{source}: no model.safetensors or pytorch_model.bin found locally; download the "
            "model on a machine with internet and pass its local directory"
        ) from error


def load(source: str, random_init: bool, model_class):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    if random_init:
        seeded_init()
        return model_class.from_config(config).eval(), random_weights_tag(f"hf:{source}"), config
    return model_class.from_pretrained(source).eval(), weights_hash(source), config


def hf_encoders(source: str, random_init: bool = False, max_length: int = 64) -> list:
    from transformers import AutoConfig, AutoModel, CLIPModel

    config = AutoConfig.from_pretrained(source)
    model_id = f"hf:{source}" + (":random" if random_init else "")
    if hasattr(config, "text_config") and hasattr(config, "vision_config"):
        model, weights, _ = load(source, random_init, CLIPModel)
        return [
            HFCLIPImage(model, model_id, weights, source),
            HFText(model, model_id, weights, source, max_length),
        ]
    model, weights, config = load(source, random_init, AutoModel)
    if hasattr(config, "num_channels") or hasattr(config, "image_size"):
        return [HFVision(model, model_id, weights, source)]
    return [HFText(model, model_id, weights, source, max_length)]


def image_preprocess(source: str, default_size: int) -> Preprocess:
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError):
        return Preprocess(default_size, (127.5,) * 3, (127.5,) * 3)
    side = _side(processor.size)
    mean = tuple(255 * m for m in processor.image_mean)
    std = tuple(255 * s for s in processor.image_std)
    return Preprocess(int(side), mean, std)


def _side(size) -> int:
    """The square side from an image processor's ``size`` (an int, a dict or a SizeDict)."""
    if isinstance(size, int):
        return size
    for name in ("shortest_edge", "height"):
        value = size.get(name) if isinstance(size, dict) else getattr(size, name, None)
        if value:
            return int(value)
    raise ValueError(f"cannot tell the image size from the processor's size {size!r}")


class HFVision(ImageEncoder):
    modality = "image"

    def __init__(self, model, model_id: str, weights: str, source: str):
        self.model, self.id, self.weights_sha256 = model, model_id, weights
        self.preprocess = image_preprocess(source, getattr(model.config, "image_size", 224))
        with torch.inference_mode():
            probe = self.encode(
                torch.zeros(1, 3, self.preprocess.size, self.preprocess.size, dtype=torch.uint8)
            )
        self.fields = {name: tuple(value.shape[1:]) for name, value in probe.items()}

    def to(self, device: torch.device) -> HFVision:
        self.model.to(device)
        return self

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(pixel_values=self.preprocess.normalize(images))
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # CNN feature map [B, C, h, w]
            grid = hidden.flatten(2).transpose(1, 2)
        else:  # transformer tokens [B, 1 + T, W]; drop [CLS]
            grid = hidden[:, 1:]
        pooled = getattr(out, "pooler_output", None)
        if pooled is None or pooled.dim() != 2:
            pooled = grid.mean(1)
        return {"global": pooled, "grid": grid}


class HFCLIPImage(ImageEncoder):
    modality = "image"

    def __init__(self, model, model_id: str, weights: str, source: str):
        self.model, self.id, self.weights_sha256 = model, model_id, weights
        self.space = model_id
        self.logit_scale = float(model.logit_scale.detach().exp())
        vision = model.config.vision_config
        self.preprocess = image_preprocess(source, vision.image_size)
        grid = (vision.image_size // vision.patch_size) ** 2
        self.fields = {"global": (model.config.projection_dim,), "grid": (grid, vision.hidden_size)}

    def to(self, device: torch.device) -> HFCLIPImage:
        self.model.to(device)
        return self

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model.vision_model(pixel_values=self.preprocess.normalize(images))
        pooled = self.model.visual_projection(out.pooler_output)
        return {"global": pooled, "grid": out.last_hidden_state[:, 1:]}


class HFText(HFTokenizedText):
    modality = "text"

    def __init__(self, model, model_id: str, weights: str, source: str, max_length: int):
        from transformers import AutoTokenizer

        self.model, self.id, self.weights_sha256 = model, model_id, weights
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.vocab_size = len(self.tokenizer)
        self.clip = hasattr(model, "text_model") and hasattr(model, "text_projection")
        config = model.config.text_config if self.clip else model.config
        self.max_length = min(max_length, getattr(config, "max_position_embeddings", max_length))
        if self.clip:
            self.space = model_id
            self.logit_scale = float(model.logit_scale.detach().exp())
            self.fields = {
                "global": (model.config.projection_dim,),
                "tokens": (self.max_length, config.hidden_size),
            }
        else:
            self.fields = {
                "global": (config.hidden_size,),
                "tokens": (self.max_length, config.hidden_size),
            }

    def to(self, device: torch.device) -> HFText:
        self.model.to(device)
        return self

    def encode(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = length_mask(lengths, token_ids.shape[1])
        weights = mask.unsqueeze(-1)
        if self.clip:
            out = self.model.text_model(input_ids=token_ids, attention_mask=mask)
            pooled = self.model.text_projection(out.pooler_output)
            return {"global": pooled, "tokens": out.last_hidden_state * weights}
        hidden = self.model(input_ids=token_ids, attention_mask=mask).last_hidden_state
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        return {"global": pooled, "tokens": hidden * weights}
