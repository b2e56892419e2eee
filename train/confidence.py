"""The teacher's confidence in each training sample's gold label: the instance weight of MAD.

- ``zeroshot`` (teachers sharing a space, e.g. CLIP): softmax over the candidates of the cached
  ``scale * cos(image, candidate)``, taken at the gold candidate (averaged over a sample's groups).
- ``knn`` (unaligned teachers, the offline default): a vote of the k nearest *other* training
  samples (an exact FAISS inner-product index over the training subset; embeddings centred by
  their training mean and L2-normalised).
  - Classification and VQA: the share of the neighbours, found by image and gold-text embedding,
    with the sample's label (the class, or VQA's top answer).
  - Multiple choice (VCR): per group (Q->A, QA->R), neighbours found by the image and the mean of
    the group's candidate texts (neither depends on the gold label or the order) each vote for
    the candidate most like their own gold text (cosine; a tie splits the vote); the weight is
    the gold candidate's share, averaged over the groups. The gold *position*, the label before,
    is shuffled per question: on a 600-question synthetic VCR cache agreement on it averaged
    0.25 and correlated -0.02 with itself after re-drawing the positions, and told true from
    wrong gold answers at chance (AUC 0.50); the vote is the same for any candidate order,
    averages 0.41 and tells them apart with AUC 0.74.
- ``none``: 1 for every sample.
"""

from __future__ import annotations

import logging

import numpy as np

from extract.store import CacheReader
from train.tasks import Group, TaskSpec

log = logging.getLogger(__name__)
KNN_NEIGHBOURS = 10
VOTE_BLOCK = 4096  # samples whose neighbours' votes are counted at once (bounds the memory)


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
    """The label neighbours must share (classification, VQA): the class or the top answer."""
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


def knn_confidence(
    samples: list[dict],
    task: TaskSpec,
    gold: list[list[int]],
    means: dict[str, np.ndarray],
    metas: list[dict],
) -> np.ndarray:
    """The ``knn`` weights of ``samples`` (one ``meta`` each): a vote over the candidates for
    multiple choice, label agreement otherwise."""
    if task.kind == "multiple_choice":
        return choice_vote_weights(samples, task, gold, means)
    labels = [knn_label(task, meta) for meta in metas]
    return knn_weights(joint_features(samples, gold, means), labels)


def nearest(features: np.ndarray, neighbours: int) -> np.ndarray:
    """``[N, k]``: each row's k nearest other rows by inner product (exact), nearest first."""
    import faiss

    count = len(features)
    k = min(neighbours, count - 1)
    rows = np.ascontiguousarray(features, dtype=np.float32)
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    _, found = index.search(rows, k + 1)
    others = [[j for j in found[row] if j != row and j >= 0][:k] for row in range(count)]
    return np.asarray(others, dtype=np.int64).reshape(count, k)


def knn_weights(
    features: np.ndarray, labels: list[str], neighbours: int = KNN_NEIGHBOURS
) -> np.ndarray:
    """Fraction of each row's nearest other rows (inner product) with the same label."""
    count = len(labels)
    if count < 2:
        return np.ones(count, dtype=np.float32)
    label_array = np.asarray(labels)
    same = label_array[nearest(features, neighbours)] == label_array[:, None]
    return same.mean(axis=1).astype(np.float32)


def unit(values: np.ndarray, mean: np.ndarray | float = 0.0) -> np.ndarray:
    """Centred by ``mean`` and L2-normalised along the last axis."""
    centred = values.astype(np.float64) - mean
    return centred / np.maximum(np.linalg.norm(centred, axis=-1, keepdims=True), 1e-12)


def joint_features(
    samples: list[dict], gold: list[list[int]], means: dict[str, np.ndarray]
) -> np.ndarray:
    """Centred, L2-normalised image and gold-text embeddings, concatenated (one row a sample)."""
    image = unit(np.stack([s["img_emb"] for s in samples]), means["img_emb"])
    text = unit(
        np.stack([s["txt_emb"][g[0]] for s, g in zip(samples, gold, strict=True)]), means["txt_emb"]
    )
    return (np.concatenate([image, text], axis=1) / np.sqrt(2)).astype(np.float32)


def choice_vote_weights(
    samples: list[dict],
    task: TaskSpec,
    gold: list[list[int]],
    means: dict[str, np.ndarray],
    neighbours: int = KNN_NEIGHBOURS,
) -> np.ndarray:
    """Multiple choice: the gold candidate's share of the neighbours' votes, mean over groups."""
    count = len(samples)
    if count < 2:
        return np.ones(count, dtype=np.float32)
    image = unit(np.stack([s["img_emb"] for s in samples]), means["img_emb"])  # [N, Di]
    shares = np.zeros((len(task.groups), count))
    for at, group in enumerate(task.groups):
        texts = group_texts(samples, group, means["txt_emb"])  # [N, C, Dt]
        golds = np.asarray([g[at] - group.start for g in gold])  # [N]
        found = nearest(choice_features(image, texts), neighbours)  # [N, k]
        gold_texts = texts[np.arange(count), golds]  # [N, Dt]
        for start in range(0, count, VOTE_BLOCK):
            rows = slice(start, start + VOTE_BLOCK)
            shares[at, rows] = gold_share(texts[rows], gold_texts[found[rows]], golds[rows])
    return shares.mean(axis=0).astype(np.float32)


def group_texts(samples: list[dict], group: Group, mean: np.ndarray) -> np.ndarray:
    """``[N, C, D]`` float32: the group's candidate text embeddings, centred and L2-normalised."""
    width = samples[0]["txt_emb"].shape[-1]
    texts = np.empty((len(samples), group.stop - group.start, width), dtype=np.float32)
    for row, sample in enumerate(samples):
        texts[row] = unit(sample["txt_emb"][group.start : group.stop], mean)
    return texts


def choice_features(image: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """The neighbour space of a multiple-choice group: the image and the mean candidate text
    (the question and its answer set). Not the gold text: neighbours picked for resembling it
    would vote for it whatever the teacher knows. The mean sums each dimension's sorted values,
    so it is bit-identical for every candidate order."""
    context = unit(np.sort(texts, axis=1).sum(axis=1))  # [N, Dt]
    return (np.concatenate([image, context], axis=1) / np.sqrt(2)).astype(np.float32)


def gold_share(candidates: np.ndarray, voters: np.ndarray, golds: np.ndarray) -> np.ndarray:
    """Each voter (``[N, k, D]``, unit) votes for the most similar of its sample's unit
    ``candidates`` (``[N, C, D]``), a tie split evenly; the share of the votes on ``golds``."""
    similarity = np.einsum("ncd,nkd->nkc", candidates, voters)  # [N, k, C]
    best = similarity == similarity.max(axis=2, keepdims=True)
    votes = best / best.sum(axis=2, keepdims=True)  # [N, k, C], each voter's row sums to 1
    return votes[np.arange(len(golds)), :, golds].mean(axis=1)  # [N]
