"""Distillation on unlabelled samples (--distill-pool all): task loss on the low-shot subset,
distillation also on the rest of the training split, whose labels never reach training."""

import json

import pytest
import torch

from extract.store import CacheReader
from tests.train.tiny_cache import build
from train.data import Collate, PooledBatches
from train.mad import DistillConfig
from train.tasks import resolve_task
from train.trainer import TrainConfig, Trainer


def test_each_batch_joins_labelled_and_pool_samples():
    batches = list(PooledBatches(labelled=5, pool=3, batch_size=2, seed=1, epoch=0))
    labelled = [i for b in batches for i in b if i < 5]
    pool = [i for b in batches for i in b if i >= 5]
    assert sorted(labelled) == [0, 1, 2, 3, 4]  # every labelled sample once an epoch
    assert [len(b) for b in batches] == [4, 4, 2] and len(pool) == 5  # as many from the pool
    assert sorted(pool[:3]) == [5, 6, 7] and pool[3:] == pool[:2]  # the pool, then round again
    assert batches == list(PooledBatches(5, 3, 2, seed=1, epoch=0))  # seeded
    assert batches != list(PooledBatches(5, 3, 2, seed=1, epoch=1))


def test_pool_samples_are_collated_without_their_labels(tmp_path):
    cache = build(tmp_path / "cache", "vcr")
    samples = list(CacheReader(cache).split("train", ["pixels", "token_ids", "token_len"]))[:6]
    task = resolve_task(None, {"name": "vcr"}, cache)
    pool = frozenset(s["__key__"] for s in samples[3:])
    batch = Collate(task, "pixels", unlabelled=pool)(samples)
    assert batch["labelled"].tolist() == [True] * 3 + [False] * 3
    assert (batch["labels"][3:] == -1).all() and (batch["labels"][:3] >= 0).all()
    assert batch["gold"][3:].tolist() == [[0, 4]] * 3  # the first candidate, not the gold one
    answers = [s["meta"]["answer_label"] for s in samples[:3]]
    assert batch["gold"][:3, 0].tolist() == answers


def test_vqa_pool_has_no_soft_targets_and_no_task_loss(tmp_path):
    cache = build(tmp_path / "cache", "vqa")
    trainer = Trainer(TrainConfig(cache=cache, out=tmp_path / "run", device="cpu"))
    samples = list(CacheReader(cache).split("train", trainer.fields.training))[:4]
    pool = frozenset(s["__key__"] for s in samples[2:])
    batch = trainer.collate(unlabelled=pool)(samples)
    assert batch["soft"][2:].abs().sum() == 0 and batch["soft"][:2].sum() == 2
    model = trainer.build()
    _, logits = model.encode(batch)
    mixed = model.task_loss(logits, batch)
    labelled = {k: v[:2] if isinstance(v, torch.Tensor) else v[:2] for k, v in batch.items()}
    labelled.pop("labelled")
    assert torch.allclose(mixed, model.task_loss(logits[:2], labelled))


@pytest.mark.parametrize("kind", ["snli_ve", "vcr"])
def test_training_with_the_pool(tmp_path, kind):
    cache = build(tmp_path / "cache", kind)
    values = dict(cache=cache, epochs=2, batch_size=8, train_fraction=0.25, device="cpu")
    results = Trainer(TrainConfig(out=tmp_path / "pool", distill_pool="all", **values)).fit()
    assert results["train_samples"] == 15 and results["pool_samples"] == 45
    plain = Trainer(TrainConfig(out=tmp_path / "plain", **values)).fit()
    assert plain["pool_samples"] == 0 and results["distill_share"]["vis"] > 0
    # the labelled subset sets the epoch: the same optimiser steps as without the pool
    assert steps(tmp_path / "pool") == steps(tmp_path / "plain") == [1, 2, 3, 4]
    none = DistillConfig(mode="none")
    with pytest.raises(ValueError, match="needs distillation"):
        Trainer(TrainConfig(out=tmp_path / "x", distill_pool="all", distill=none, **values))


def steps(run) -> list[int]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line["step"] for line in lines if line["kind"] == "step"]
