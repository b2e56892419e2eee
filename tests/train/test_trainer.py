"""The trainer end to end on tiny caches written with the store API."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from tests.train.tiny_cache import build
from train.data import low_shot_keys
from train.evaluation import multiple_choice_scores
from train.mad import DistillConfig
from train.results_io import read_vcr_leaderboard, read_vqa_results
from train.run import main as train_cli
from train.tasks import resolve_task
from train.trainer import TrainConfig, Trainer


def config(cache, out, **changes) -> TrainConfig:
    values = dict(cache=cache, out=out, epochs=8, batch_size=16, seed=0, device="cpu")
    values.update(changes)
    return TrainConfig(**values)


@pytest.mark.parametrize(
    "kind,metric,floor",
    [("snli_ve", "accuracy", 80.0), ("vcr", "q2ar", 60.0), ("vqa", "overall", 80.0)],
)
def test_training_beats_chance_on_an_easy_task(tmp_path, kind, metric, floor):
    cache = build(tmp_path / "cache", kind)
    results = Trainer(config(cache, tmp_path / "run")).fit()
    assert results["splits"]["val"][metric] >= floor  # chance: 33, 6, 33
    assert results["best_epoch"] is not None and results["train_samples"] == 60
    assert results["distill_share"]["vis"] > 0 and results["distill_share"]["txt"] > 0


@pytest.mark.parametrize("kind", ["vcr", "vqa"])
def test_an_hdf5_cache_trains_exactly_as_its_tar_twin(tmp_path, kind):
    """The same samples in both formats: the same batches, so the same losses and scores (a
    keyed low-shot subset and a streamed whole split)."""
    runs = {}
    for fmt in ("wds", "hdf5"):
        cache = build(tmp_path / fmt, kind, fmt=fmt)
        for name, changes in (("subset", {"train_fraction": 0.5}), ("whole", {})):
            out = tmp_path / f"{fmt}-{name}"
            runs[fmt, name] = Trainer(config(cache, out, epochs=1, **changes)).fit()
    for name in ("subset", "whole"):
        tar, hdf5 = runs["wds", name], runs["hdf5", name]
        assert [e["loss"] for e in tar["history"]] == [e["loss"] for e in hdf5["history"]]
        assert tar["splits"] == hdf5["splits"]


@pytest.mark.parametrize("target", ["tokens", "global"])
def test_a_token_grid_wider_than_the_embedding_is_a_target(tmp_path, target):
    # open_clip ViT-B/16: grid tokens are 768 wide, the pooled embedding 512
    cache = build(tmp_path / "cache", grid_width=12)
    trainer = Trainer(
        config(cache, tmp_path / "run", epochs=1, distill=DistillConfig(target=target))
    )
    heads = trainer.build().distill_heads
    assert heads.vis.out_features == (12 if target == "tokens" else 8)
    results = trainer.fit()
    assert results["distill_share"]["vis"] > 0


def test_resume_ends_with_the_same_weights(tmp_path):
    cache = build(tmp_path / "cache")
    Trainer(config(cache, tmp_path / "whole", epochs=3)).fit()

    def interrupt(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(config(cache, tmp_path / "cut", epochs=3), on_epoch_end=interrupt).fit()
    Trainer(config(cache, tmp_path / "cut", epochs=3, resume=True)).fit()
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert whole["model"].keys() == cut["model"].keys()
    assert all(torch.equal(whole["model"][k], cut["model"][k]) for k in whole["model"])
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line) for line in lines if json.loads(line)["kind"] == "epoch"]
    assert [entry["epoch"] for entry in epochs] == [1, 2, 3]
    steps = [json.loads(line)["step"] for line in lines if json.loads(line)["kind"] == "step"]
    assert steps == list(range(1, 13))  # 60 samples / 16 per batch = 4 steps an epoch, none twice


def test_a_cache_without_the_needed_fields_is_refused(tmp_path):
    cache = build(tmp_path / "cache", image_tokens=False)
    with pytest.raises(ValueError) as error:
        Trainer(config(cache, tmp_path / "run"))
    assert "['img_grid']" in str(error.value) and "--no-image-tokens" in str(error.value)
    Trainer(config(cache, tmp_path / "run", distill=DistillConfig(target="global")))  # global works
    Trainer(config(cache, tmp_path / "run", distill=DistillConfig(mode="none")))


def test_low_shot_subsets_are_stratified_and_seeded():
    task = resolve_task("snli_ve", {"name": "snli_ve", "labels": ["e", "n", "c"]}, "cache")
    metas = [(f"k{i}", {"label": i % 3}) for i in range(300)]
    first = low_shot_keys(metas, task, 0.1, None, seed=1)
    assert first == low_shot_keys(metas, task, 0.1, None, seed=1)
    assert first != low_shot_keys(metas, task, 0.1, None, seed=2)
    assert len(first) == 30
    labels = [int(key[1:]) % 3 for key in first]
    assert [labels.count(c) for c in range(3)] == [10, 10, 10]
    assert len(low_shot_keys(metas, task, None, 7, seed=0)) == 7
    with pytest.raises(ValueError, match="more than the 300"):
        low_shot_keys(metas, task, None, 301, seed=0)


def test_domain_shift_filters_and_no_test_selection(tmp_path):
    cache = build(tmp_path / "cache")
    trainer = Trainer(
        config(
            cache,
            tmp_path / "run",
            epochs=1,
            train_where=[("source", "lsmdc")],
            eval_where=[("source", "movieclips")],
        )
    )
    results = trainer.fit()
    assert results["train_samples"] == 30 and results["splits"]["val"]["n"] == 15
    with pytest.raises(ValueError, match="held-out test split, which model selection never uses"):
        Trainer(config(cache, tmp_path / "run", val_split="test"))


def test_exported_student_has_no_projection_heads(tmp_path):
    cache = build(tmp_path / "cache")
    Trainer(config(cache, tmp_path / "run", epochs=1)).fit()
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    assert best and not any(name.startswith("distill_heads") for name in best)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    assert any(name.startswith("distill_heads") for name in last)


def test_official_prediction_files(tmp_path):
    cache = build(tmp_path / "vcr", "vcr", counts={"train": 30, "val": 6, "test": 3})
    Trainer(config(cache, tmp_path / "run", epochs=1)).fit()
    board = read_vcr_leaderboard(tmp_path / "run" / "predictions" / "test.vcr_leaderboard.csv")
    assert len(board) == 3  # hidden-label records of one question become one row
    vqa = build(tmp_path / "vqa", "vqa", counts={"train": 30, "val": 6})
    Trainer(config(vqa, tmp_path / "vqa-run", epochs=1)).fit()
    answers = read_vqa_results(tmp_path / "vqa-run" / "predictions" / "val.vqa_results.json")
    assert sorted(answers) == [1000 + i for i in range(6)]


def test_q2ar_counts_only_both_right():
    task = resolve_task("vcr-qar", {"name": "vcr"}, "cache")
    rows = [
        {
            "key": "a",
            "meta": {"answer_label": 0, "rationale_label": 1},
            "probs": {"qa": [0.7, 0.1, 0.1, 0.1], "qar": [0.1, 0.7, 0.1, 0.1]},
        },
        {
            "key": "b",
            "meta": {"answer_label": 0, "rationale_label": 1},
            "probs": {"qa": [0.7, 0.1, 0.1, 0.1], "qar": [0.7, 0.1, 0.1, 0.1]},
        },
        {
            "key": "c",
            "meta": {"answer_label": 2, "rationale_label": 1},
            "probs": {"qa": [0.7, 0.1, 0.1, 0.1], "qar": [0.1, 0.7, 0.1, 0.1]},
        },
    ]
    scores = multiple_choice_scores(task, rows)
    assert (scores["q2a"], scores["qa2r"], scores["q2ar"]) == (66.67, 66.67, 33.33)


def test_cli_several_seeds_report_mean_and_std(tmp_path):
    cache = build(tmp_path / "cache")
    out = tmp_path / "runs"
    args = [
        "--cache",
        str(cache),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--seeds",
        "1,2",
        "--train-fraction",
        "0.5",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(train_cli, args)
    assert result.exit_code == 0, result.output
    assert "Mean +- sample std (ddof=1) over seeds [1, 2], n = 2" in result.output
    summary = json.loads((out / "results.json").read_text())
    accuracy = summary["splits"]["val"]["accuracy"]
    assert len(accuracy["values"]) == 2 and accuracy["n"] == 2
    first, second = accuracy["values"]
    assert accuracy["std"] == pytest.approx(abs(first - second) / 2**0.5, abs=0.006)
    for seed in (1, 2):
        for name in ("results.json", "report.md", "curves.png", "metrics.jsonl", "best.pt"):
            assert (out / f"seed-{seed}" / name).is_file()
    bad = CliRunner().invoke(train_cli, ["--cache", str(cache), "--distill", "kd"])
    assert bad.exit_code == 2


def test_compare_places_methods_side_by_side(tmp_path):
    from train.compare import main as compare_cli

    cache = build(tmp_path / "cache")
    for mode in ("none", "mad"):
        args = [
            "--cache",
            str(cache),
            "--out",
            str(tmp_path / mode),
            "--epochs",
            "1",
            "--distill",
            mode,
            "--seeds",
            "1,2",
            "--device",
            "cpu",
            "--batch-size",
            "16",
        ]
        assert CliRunner().invoke(train_cli, args).exit_code == 0
    result = CliRunner().invoke(
        compare_cli,
        ["--out", str(tmp_path / "cmp"), f"none={tmp_path / 'none'}", f"mad={tmp_path / 'mad'}"],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "| method | val |"  # the test split has hidden labels: no score
    assert lines[2].startswith("| none | ") and lines[3].startswith("| mad | ") and "+-" in lines[3]
    assert (tmp_path / "cmp" / "comparison.png").is_file()


def test_keeping_the_last_epoch_validates_once(tmp_path):
    cache = build(tmp_path / "cache")
    results = Trainer(config(cache, tmp_path / "run", epochs=3, keep="last")).fit()
    validated = [entry["epoch"] for entry in results["history"] if "val" in entry]
    assert validated == [3] and results["best_epoch"] == 3
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(value, last[name]) for name, value in best.items())
    assert results["splits"]["val"]["score"] == results["history"][-1]["val"]["score"]


def test_checkpoints_every_few_epochs_resume_from_the_last_save(tmp_path):
    cache = build(tmp_path / "cache")
    Trainer(config(cache, tmp_path / "whole", epochs=4)).fit()

    def interrupt(epoch):
        if epoch == 3:  # epoch 3 trained but not saved: the resume trains it again
            raise KeyboardInterrupt

    cut = config(cache, tmp_path / "cut", epochs=4, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cut, on_epoch_end=interrupt).fit()
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["state"]["epoch"] == 2
    Trainer(config(cache, tmp_path / "cut", epochs=4, resume=True)).fit()
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    again = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert all(torch.equal(whole["model"][k], again["model"][k]) for k in whole["model"])
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in lines if json.loads(line)["kind"] == "epoch"]
    assert epochs == [1, 2, 3, 4]


def test_a_cache_without_answers_to_learn_is_refused():
    with pytest.raises(ValueError, match="answer vocabulary holds 0 answer"):
        resolve_task(None, {"name": "vqa", "kind": "soft_score", "answer_vocab": []}, "c")


@pytest.mark.parametrize(
    "option,value",
    [
        ("--epochs", "0"), ("--train-fraction", "1.5"), ("--train-fraction", "0"), ("--lr", "0"),
        ("--seeds", "1,x"), ("--seeds", "1,1"),
    ],
)  # fmt: skip
def test_numbers_out_of_range_are_usage_errors(tmp_path, option, value):
    result = CliRunner().invoke(train_cli, ["--cache", str(tmp_path), option, value])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
    assert "Usage:" in result.output
