"""``python -m train.run --cache shards/vcr ...``: train a student against a feature cache."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from train.choices import DISTANCES, MODES, SELECTIONS, TARGETS, TASKS
from train.report import aggregate, run_table, write_run_report, write_summary

if TYPE_CHECKING:  # torch and the trainer load when a run starts: --help answers at once
    from train.mad import DistillConfig
    from train.trainer import TrainConfig


def parse_seeds(value: str | None) -> list[int] | None:
    """``1,2,3`` -> ``[1, 2, 3]``: distinct integers."""
    if value is None:
        return None
    try:
        seeds = [int(seed) for seed in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give integers, e.g. 1,2,3") from None
    if len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{value!r}: give each seed once")
    return seeds


def split_list(values: tuple[str, ...]) -> list[str] | None:
    names = [name for value in values for name in value.split(",") if name]
    return names or None


def bar(total: int, description: str):
    return tqdm(total=total, desc=description, unit="batch", leave=False, dynamic_ncols=True)


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(
            "no CUDA device is available; use --device cpu", param_hint="--device"
        )
    return name


@click.command(context_settings={"show_default": True})
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Feature cache made by python -m extract.run.",
)
@click.option(
    "--teachers",
    default=None,
    help="The cache's teachers' column group to distil (its name, or one of its teacher ids); "
    "default: the group extracted with the cache.",
)
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default=None,
    help="Task; default from the cache (vcr -> vcr-qar).",
)
@click.option(
    "--distill",
    type=click.Choice(MODES),
    default="mad",
    help="none: task loss only; naive: every token, w = 1; "
    "mad: selected tokens, confidence weights.",
)
@click.option(
    "--select",
    type=click.Choice(SELECTIONS),
    default="cls-attn",
    help="Token selection for mad: [CLS] attention, or the tokens the student matches least.",
)
@click.option(
    "--topk",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    help="Tokens kept per instance: a count >= 1 or a fraction < 1.",
)
@click.option(
    "--confidence",
    type=click.Choice(["auto", "zeroshot", "knn", "none"]),
    default="auto",
    help="Instance weights: zero-shot scores (shared-space teachers) or kNN label agreement.",
)
@click.option(
    "--distance",
    type=click.Choice(DISTANCES),
    default="cosine",
    help="Distance between projected student tokens and teacher targets.",
)
@click.option(
    "--lambda",
    "weight",
    type=click.FloatRange(min=0),
    default=1.0,
    help="Weight of the distillation loss.",
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="tokens",
    help="Per-token targets, or the pooled embedding for every token.",
)
@click.option(
    "--branches", default="vis,txt", help="Which token branches to distil: vis, txt or vis,txt."
)
@click.option(
    "--train-fraction",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Low-shot: a stratified, seeded fraction of the training split.",
)
@click.option(
    "--train-count",
    type=click.IntRange(min=1),
    default=None,
    help="Low-shot: this many training samples (stratified, seeded).",
)
@click.option(
    "--distill-pool",
    type=click.Choice(["labelled", "all"]),
    default="labelled",
    help="all: distil also the training samples outside the low-shot subset (their cached "
    "targets need no label; the task loss stays on the subset).",
)
@click.option("--seed", type=int, default=0, help="Seed (subset, initialisation, order).")
@click.option(
    "--seeds",
    default=None,
    callback=lambda context, parameter, value: parse_seeds(value),
    help="Several seeds, e.g. 1,2,3: one run each, then mean +- std.",
)
@click.option("--train-split", default="train", help="Split to train on.")
@click.option(
    "--val-split",
    default=None,
    help="Split for model selection (default val or dev; never a test split).",
)
@click.option(
    "--eval-split",
    "eval_splits",
    multiple=True,
    help="Splits to evaluate (repeatable or comma-separated); default: all but the training split.",
)
@click.option(
    "--train-where",
    multiple=True,
    help="Keep training samples whose json KEY equals VALUE, e.g. source=lsmdc (domain shift).",
)
@click.option(
    "--eval-where",
    multiple=True,
    help="The same filter for evaluation splits, e.g. source=movieclips.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, help="Training epochs.")
@click.option(
    "--keep",
    type=click.Choice(["best", "last"]),
    default="best",
    help="The model kept: the best epoch on the validation split (validated after every "
    "epoch), or the last epoch (validated once: cheaper).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    help="Samples per batch and rank (under torchrun a global batch is this x the world size "
    "x --accumulate).",
)
@click.option(
    "--accumulate",
    type=click.IntRange(min=1),
    default=1,
    help="Batches per optimiser step (gradient accumulation).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=3e-4,
    help="Peak learning rate (AdamW, warmup then cosine).",
)
@click.option(
    "--student",
    default="tiny",
    help="The student: tiny|small|base (own transformer from zero), hf:<model id or path> "
    "(ViLT or VisualBERT), visualbert-init:minilm or visualbert-init:<BERT folder>.",
)
@click.option(
    "--student-tokenizer",
    default=None,
    help="Tokenizer id or folder for an hf: student that ships none ('minilm': the packaged "
    "BERT-uncased vocabulary).",
)
@click.option(
    "--student-visual",
    default="auto",
    help="Cached field the student sees: pixels, student_grid, img_grid, regions, "
    "student_regions (auto: the cache's student input).",
)
@click.option(
    "--lr-new",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Peak learning rate of the parameters a pretrained student starts without (task head, "
    "adapters, projection heads); default: --lr.",
)
@click.option(
    "--dropout",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    help="Dropout of the own students (tiny|small|base); pretrained ones keep their own.",
)
@click.option(
    "--workers", type=click.IntRange(min=0), default=0, help="DataLoader workers reading the cache."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/latest"),
    help="Output folder.",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt when it exists.")
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=1,
    help="Epochs between saves of OUT/last.pt (each save writes the model and optimiser "
    "state; a resume trains again the epochs after the last save).",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", help="Where to train."
)
@click.option(
    "--check-cache",
    type=click.Choice(["read", "full", "off"]),
    default="read",
    help="read: before training, the size of every cache file the run reads and the sha256 of "
    "its offset indices and shared arrays; the shards' bytes are checked as they are read "
    "(each member's CRC-32, each HDF5 chunk's checksum), so unread fields are never read. "
    "full: also every shard's sha256 before training (one read of each, at disk speed). off: "
    "nothing before training. Always: a damaged member, a NaN or infinite value in a batch, "
    "or a non-finite loss stops the run.",
)
def main(**options) -> None:
    """Train a cross-modal student against cached teacher features, with the adaptive
    distillation objective (or a baseline), evaluate with the official metrics, and write
    results.json, report.md, curves.png, metrics.jsonl and checkpoints."""
    from train import distributed

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    if options["train_fraction"] is not None and options["train_count"] is not None:
        raise click.UsageError("give --train-fraction or --train-count, not both")
    world = distributed.start(pick_device(options["device"]))
    try:
        runs = execute(options, progress=bar, echo=click.echo if world.main else None)
    except (ValueError, FileNotFoundError) as error:  # bad input or state: one line, exit 1
        click.echo(f"error: {one_line(error)}", err=True)  # (usage errors exit 2 with click's;
        sys.exit(1)  # anything else is a bug and keeps its traceback)
    finally:
        distributed.stop()
    if len(runs) > 1 and world.main:
        click.echo(write_summary(options["out"], aggregate(runs)))


def one_line(error: Exception) -> str:
    """The error's message; for one raised in a DataLoader worker, which torch raises again with
    the worker's traceback in its text, the original message alone."""
    text = str(error)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        return last.partition(": ")[2] or last
    return text


def execute(options: dict, progress=None, echo=None) -> list[dict]:
    """The runs the options ask for, one per seed, each with its report written; what ``main``
    does once the command line is parsed (``train.protocol`` calls it for every cell)."""
    from train.mad import DistillConfig
    from train.trainer import Trainer

    seeds = options["seeds"] or [options["seed"]]
    distill = DistillConfig(
        options["distill"],
        options["select"],
        options["topk"],
        options["distance"],
        options["weight"],
        options["target"],
        tuple(options["branches"].split(",")),
    )
    runs = []
    if len(seeds) > 1:  # an earlier summary must not outlive a failed rerun
        for name in ("results.json", "report.md"):
            (options["out"] / name).unlink(missing_ok=True)
    for seed in seeds:
        out = options["out"] if len(seeds) == 1 else options["out"] / f"seed-{seed}"
        trainer = Trainer(make_config(options, distill, seed, out))
        results = trainer.fit(progress=progress)
        if trainer.world.main:
            write_run_report(out, results)
        if echo is not None:
            echo(f"seed {seed}: {out}\n{run_table(results)}\n")
        runs.append(results)
    return runs


def make_config(options: dict, distill: DistillConfig, seed: int, out: Path) -> TrainConfig:
    from train.data import parse_where
    from train.trainer import TrainConfig

    return TrainConfig(
        cache=options["cache"],
        out=out,
        task=options["task"],
        teachers=options["teachers"],
        distill=distill,
        confidence=options["confidence"],
        train_split=options["train_split"],
        val_split=options["val_split"],
        eval_splits=split_list(options["eval_splits"]),
        train_fraction=options["train_fraction"],
        train_count=options["train_count"],
        distill_pool=options["distill_pool"],
        train_where=parse_where(options["train_where"]),
        eval_where=parse_where(options["eval_where"]),
        seed=seed,
        epochs=options["epochs"],
        keep=options["keep"],
        batch_size=options["batch_size"],
        lr=options["lr"],
        lr_new=options["lr_new"],
        accumulate=options["accumulate"],
        student=options["student"],
        student_tokenizer=options["student_tokenizer"],
        student_visual=options["student_visual"],
        dropout=options["dropout"],
        workers=options["workers"],
        device=pick_device(options["device"]),
        resume=options["resume"],
        check_cache=options["check_cache"],
        checkpoint_every=options["checkpoint_every"],
    )


if __name__ == "__main__":
    main()
