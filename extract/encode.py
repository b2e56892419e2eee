"""One batch through the teachers: images and texts in, per-sample numpy arrays out."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from extract.loader import Item, image_key
from extract.plan import Plan, PlanOptions
from extract.resize import unit_boxes


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on CPU (where bf16 is slow and changes the bytes)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def stack_images(items: list[Item], key, device: torch.device) -> torch.Tensor:
    images = [item.images[key] for item in items]
    if all(image.device.type == "cpu" for image in images):
        # numpy's one-thread copy: torch.stack splits this memcpy over its intra-op threads,
        # which costs 0.1-0.3 s a batch of 32 224 px images when a core is busy elsewhere
        batch = torch.from_numpy(np.stack([image.numpy() for image in images]))
    else:  # decoded on the device
        batch = torch.stack(images)
    if device.type == "cuda" and batch.device.type == "cpu":
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


def encode_batch(
    plan: Plan, items: list[Item], device: torch.device
) -> list[dict[str, np.ndarray]]:
    """Run every encoder of the plan on the good items; returns one dict of arrays per item."""
    texts = [text for item in items for text in item.record.texts]
    spans = None
    if "token_spans" in plan.fields:  # [B*C, L], [B*C], [B*C, L, 2]
        token_ids, lengths, spans = plan.text.tokenize_with_spans(texts)
    else:
        token_ids, lengths = plan.text.tokenize(texts)
    count, num_texts = len(items), len(items[0].record.texts)
    distinct, where = distinct_images(items)
    where = None if len(distinct) == count else where.to(device)  # None: one item per image
    out: dict[str, torch.Tensor] = {}
    stacks: dict[tuple, torch.Tensor] = {}  # teacher and student often share the image size

    def stacked(preprocess) -> torch.Tensor:
        key = image_key(preprocess, plan.options.resize)
        if key not in stacks:
            stacks[key] = stack_images(distinct, key, device)
        return stacks[key]

    with torch.inference_mode(), autocast(device):
        encoded = plan.image.encode(stacked(plan.image.preprocess))
        image = {name: per_item(value, where) for name, value in encoded.items()}
        text = plan.text.encode(token_ids.to(device, non_blocking=True), lengths.to(device))
        out["img_emb"] = image["global"]
        out["txt_emb"] = text["global"].reshape(count, num_texts, -1)
        if "img_grid" in plan.fields:
            out["img_grid"] = image["grid"]
        if "txt_tok" in plan.fields:
            out["txt_tok"] = text["tokens"].reshape(count, num_texts, *text["tokens"].shape[1:])
        if "zeroshot" in plan.fields:
            out["zeroshot"] = zero_shot(out["img_emb"], out["txt_emb"], plan.image.logit_scale)
        if "pixels" in plan.fields:
            student = plan.student.encode(stacked(plan.student.preprocess))
            out["pixels"] = per_item(student["patches"], where)
        if "student_grid" in plan.fields:
            student = plan.student.encode(stacked(plan.student.preprocess))
            out["student_grid"] = per_item(student["grid"], where)
        if "regions" in plan.fields:
            out.update(region_features(image["grid"], items, plan.options))
        if "student_regions" in plan.fields:  # the same boxes over the student's own features
            pooled = region_features(out["student_grid"], items, plan.options)
            out["student_regions"] = pooled["regions"]
    # (a group added to a finished cache gets region counts it does not store: for its means)
    storage = {name: spec.storage for name, spec in plan.fields.items()}
    arrays = {name: to_numpy(value, storage.get(name, "fp32")) for name, value in out.items()}
    arrays["token_ids"] = token_ids.reshape(count, num_texts, -1).numpy()
    arrays["token_len"] = lengths.reshape(count, num_texts).numpy()
    if spans is not None:
        arrays["token_spans"] = spans.reshape(count, num_texts, -1, 2)
    return [{name: value[i] for name, value in arrays.items()} for i in range(count)]


def to_numpy(value: torch.Tensor, storage: str) -> np.ndarray:
    """A batch of one field as numpy. fp16 fields are rounded here, in one vectorised cast of the
    whole batch (the same round-to-nearest-even as the store's), instead of per sample in numpy."""
    if not value.is_floating_point():
        return value.cpu().numpy()
    return (value.half() if storage == "fp16" else value.float()).cpu().numpy()


def per_item(values: torch.Tensor, where: torch.Tensor | None) -> torch.Tensor:
    """Per-image rows -> per-item rows (``where=None``: they are already one per item)."""
    return values if where is None else values[where]


def distinct_images(items: list[Item]) -> tuple[list[Item], torch.Tensor]:
    """One item per distinct image, and for every item the index of its image among them.

    Datasets with several questions per image (VQA, SNLI-VE) list them together, so a batch
    encodes each image once.
    """
    first: dict[str, int] = {}
    where = [first.setdefault(item.record.image, len(first)) for item in items]
    distinct = [items[where.index(number)] for number in range(len(first))]
    return distinct, torch.tensor(where)


def zero_shot(image: torch.Tensor, texts: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """``[B, D]``, ``[B, C, D]`` -> ``[B, C]``: scaled cosine of the image with each candidate."""
    with torch.autocast(image.device.type, enabled=False):  # bf16 would blur logits by ~0.3
        return _zero_shot(image, texts, logit_scale)


def _zero_shot(image: torch.Tensor, texts: torch.Tensor, logit_scale: float) -> torch.Tensor:
    image = torch.nn.functional.normalize(image.float(), dim=-1)
    texts = torch.nn.functional.normalize(texts.float(), dim=-1)
    return logit_scale * torch.einsum("bd,bcd->bc", image, texts)


def region_features(
    grid: torch.Tensor, items: list[Item], options: PlanOptions
) -> dict[str, torch.Tensor]:
    """RoI-align the teacher grid ``[B, T, D]`` over each record's boxes (to 1x1, i.e. pooled),
    in the coordinates of the square the encoders saw (``options.resize``)."""
    max_regions = options.max_regions
    from torchvision.ops import roi_align

    batch, cells, width = grid.shape
    side = int(round(cells**0.5))
    feature_map = grid.float().transpose(1, 2).reshape(batch, width, side, side)
    regions = torch.zeros(batch, max_regions, width, device=grid.device)
    boxes_out = torch.zeros(batch, max_regions, 4)
    counts = torch.zeros(batch, 1, dtype=torch.int32)
    for row, item in enumerate(items):
        boxes = torch.tensor(item.record.boxes or [], dtype=torch.float32).reshape(-1, 4)[
            :max_regions
        ]
        if not len(boxes):
            continue
        unit = unit_boxes(boxes, *item.original_size, options.resize)  # 0..1
        on_grid = (unit * side).to(grid.device)
        pooled = roi_align(feature_map[row : row + 1], [on_grid], output_size=1, aligned=True)
        regions[row, : len(boxes)] = pooled.flatten(1)
        boxes_out[row, : len(boxes)] = unit
        counts[row, 0] = len(boxes)
    return {"regions": regions, "region_boxes": boxes_out, "region_count": counts}
