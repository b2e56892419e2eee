"""Splits by role, not by name: a held-out split is never trained on nor used for selection,
the stored means centre only the split they were computed on, and a run restricted to one
domain centres its targets by that domain's means."""

from __future__ import annotations

import numpy as np
import pytest

from extract.store import CacheReader
from tests.train.tiny_cache import build
from train.centring import domain_means
from train.mad import DistillConfig
from train.trainer import TrainConfig, Trainer

LABELLED = {"role": "train", "labels": True}


def config(cache, out, **changes) -> TrainConfig:
    values = dict(cache=cache, out=out, epochs=1, batch_size=16, seed=0, device="cpu")
    values.update(changes)
    return TrainConfig(**values)


def test_a_held_out_split_of_any_name_is_never_selected_on(tmp_path):
    cache = build(tmp_path / "cache", counts={"train": 40, "dev": 20, "heldout": 12})
    trainer = Trainer(config(cache, tmp_path / "run"))
    assert trainer.val_split == "dev" and trainer.eval_splits == ["dev", "heldout"]
    with pytest.raises(ValueError, match="records it as a held-out test split, which model sel"):
        Trainer(config(cache, tmp_path / "run", val_split="heldout"))
    with pytest.raises(ValueError, match="--train-split heldout: .* which training never uses"):
        Trainer(config(cache, tmp_path / "run", train_split="heldout"))


def test_recorded_roles_decide_over_names(tmp_path):
    roles = {
        "train": LABELLED,
        "eval": {"role": "val", "labels": True},
        "val": {"role": "test", "labels": True},  # the user said: held out
        "hidden": {"role": "test", "labels": False},
    }
    counts = {"train": 40, "eval": 20, "val": 12, "hidden": 12}
    cache = build(tmp_path / "cache", counts=counts, roles=roles)
    assert Trainer(config(cache, tmp_path / "run")).val_split == "eval"
    with pytest.raises(ValueError, match="--val-split val: .* held-out test split"):
        Trainer(config(cache, tmp_path / "run", val_split="val"))
    roles["hidden"] = {"role": "train", "labels": False}
    cache = build(tmp_path / "other", counts=counts, roles=roles)
    with pytest.raises(ValueError, match="--train-split hidden: its labels are hidden"):
        Trainer(config(cache, tmp_path / "run", train_split="hidden"))


def test_the_stored_means_centre_only_their_own_split(tmp_path):
    cache = build(tmp_path / "cache")
    with pytest.raises(ValueError, match="target means were computed on split 'train'"):
        Trainer(config(cache, tmp_path / "run", train_split="val"))
    Trainer(config(cache, tmp_path / "run", train_split="val", distill=DistillConfig(mode="none")))


def test_a_domain_restricted_run_centres_by_its_domains_means(tmp_path):
    cache = build(tmp_path / "cache")
    reader = CacheReader(cache)
    samples = list(CacheReader(cache, as_float32=True).split("train"))
    lsmdc = [s for s in samples if s["meta"]["source"] == "lsmdc"]
    means = domain_means(reader, "train", [s["__key__"] for s in lsmdc], ["img_emb", "txt_tok"])
    images = np.stack([s["img_emb"] for s in lsmdc]).astype(np.float64)
    np.testing.assert_allclose(means["img_emb"], images.mean(0), rtol=1e-6, atol=1e-7)
    tokens = np.concatenate([s["txt_tok"][0, : int(s["token_len"][0])] for s in lsmdc])
    np.testing.assert_allclose(means["txt_tok"], tokens.mean(0), rtol=1e-5, atol=1e-6)
    trainer = Trainer(config(cache, tmp_path / "run", train_where=[("source", "lsmdc")]))
    centred = trainer.means()
    np.testing.assert_allclose(centred["img_grid"].numpy(), np.mean(
        [s["img_grid"] for s in lsmdc], 0).mean(0), rtol=1e-5, atol=1e-6)  # fmt: skip
    assert trainer.means_source() == "the 'train' samples with source=lsmdc (computed by the run)"
    whole = Trainer(config(cache, tmp_path / "all"))
    assert not whole.means()["img_grid"].any()  # the tiny cache's stored means are zeros
    assert whole.means_source() == "the cache's means over 'train'"


def test_a_filter_that_empties_the_validation_or_an_eval_split_is_refused(tmp_path):
    cache = build(tmp_path / "cache")
    nowhere = [("source", "nowhere")]
    with pytest.raises(ValueError, match="no sample of the eval split 'test' matches --eval-where"):
        Trainer(config(cache, tmp_path / "run", eval_where=nowhere))
    with pytest.raises(ValueError, match="of the validation split 'val' matches --train-where"):
        Trainer(config(cache, tmp_path / "run", train_where=nowhere))
    lsmdc = Trainer(config(cache, tmp_path / "run", eval_where=[("source", "lsmdc")]))
    assert sorted(lsmdc.eval_splits) == ["test", "val"]  # a filter some samples match is fine
