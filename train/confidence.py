"""The teacher's confidence in each training sample's gold label: the instance weight of MAD.

- ``zeroshot`` (teachers sharing a space, e.g. CLIP): softmax over the candidates of the cached
  ``scale * cos(image, candidate)``, taken at the gold candidate (averaged over a sample's groups).
- ``knn`` (unaligned teachers, the offline default): the fraction of the k nearest *other*
  training samples, in the teachers' joint feature space, that share the sample's label (the
  class, the gold choice, or VQA's top answer). An exact FAISS inner-product index over the
  training subset; features are the centred, L2-normalised image and gold-text embeddings.
- ``none``: 1 for every sample.
"""

from __future__ import annotations

import logging

import numpy as np

from extract.store import CacheReader
from train.tasks import TaskSpec

log = logging.getLogger(__name__)
KNN_NEIGHBOURS = 10


def resolve_confidence(requested: str, cache: CacheReader, task: TaskSpec) -> str:
    """``auto`` -> ``zeroshot`` when the cache has zero-shot scores and the task has choices."""
    has_scores = "zeroshot" in cache.fields and task.kind == "multiple_choice"
    if requested == "auto":
        return "zeroshot" if has_scores else "knn"
    if requested == "zeroshot" and "zeroshot" not in cache.fields:
        raise ValueError(
            f"--confidence zeroshot needs zero-shot scores; {cache.cache_dir} has none (its "
            "teachers share no space). Use --confidence knn"
        )
    if requested == "zeroshot" and not has_scores:
        raise ValueError(
            f"--confidence zeroshot needs candidates to choose among; the {task.name} task has "
            "one text per sample. Use --confidence knn"
        )
    return requested


def knn_label(task: TaskSpec, meta: dict) -> str:
    """The label neighbours must share: the class, the gold choice, or VQA's top answer."""
    if task.kind == "soft_score":
        targets = meta.get("targets") or {}
        return max(targets, key=lambda index: (targets[index], index)) if targets else "none"
    return str(meta.get(task.groups[0].label_key))


def zero_shot_weights(samples: list[dict], task: TaskSpec, gold: list[list[int]]) -> np.ndarray:
    weights = []
    for sample, golds in zip(samples, gold, strict=True):
        scores = sample["zeroshot"].astype(np.float64)
        per_group = []
        for group, index in zip(task.groups, golds, strict=True):
            logits = scores[group.start : group.stop]
            probs = np.exp(logits - logits.max())
            per_group.append(probs[index - group.start] / probs.sum())
        weights.append(np.mean(per_group))
    return np.asarray(weights, dtype=np.float32)


def knn_weights(
    features: np.ndarray, labels: list[str], neighbours: int = KNN_NEIGHBOURS
) -> np.ndarray:
    """Fraction of each row's nearest other rows (inner product) with the same label."""
    import faiss

    count = len(labels)
    if count < 2:
        return np.ones(count, dtype=np.float32)
    k = min(neighbours, count - 1)
    index = faiss.IndexFlatIP(features.shape[1])
    index.add(np.ascontiguousarray(features, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(features, dtype=np.float32), k + 1)
    label_array = np.asarray(labels)
    weights = np.empty(count, dtype=np.float32)
    for row in range(count):
        others = [j for j in found[row] if j != row and j >= 0][:k]
        weights[row] = float(np.mean(label_array[others] == label_array[row]))
    return weights


def joint_features(
    samples: list[dict], gold: list[list[int]], means: dict[str, np.ndarray]
) -> np.ndarray:
    """Centred, L2-normalised image and gold-text embeddings, concatenated (one row a sample)."""

    def unit(values: np.ndarray, mean: np.ndarray) -> np.ndarray:
        centred = values.astype(np.float64) - mean
        return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)

    image = unit(np.stack([s["img_emb"] for s in samples]), means["img_emb"])
    text = unit(
        np.stack([s["txt_emb"][g[0]] for s, g in zip(samples, gold, strict=True)]), means["txt_emb"]
    )
    return (np.concatenate([image, text], axis=1) / np.sqrt(2)).astype(np.float32)
