"""``python -m train.demo`` (``make demo``): the whole pipeline on embedded synthetic data.

It runs, as a user would, each stage's own command: generate the synthetic datasets, extract
them with the offline teachers (EfficientNet-Lite0 + MiniLM) and with their ``:random``
controls, train the student in a low-shot setting with ``--distill none``, ``naive`` and ``mad``
(and ``mad`` against the random-teacher cache) over several seeds, and compare them on val,
test and test_shifted. Every step is skipped when its output already exists, so a second run
reuses the data, the caches and the finished runs.

This is a demonstration of the mechanism on synthetic data with unaligned teachers, not a
reproduction of the paper's numbers.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from extract.store.atomic import write_bytes_atomic
from train.compare import compare, load_scores
from train.report import fmt

TEACHERS = {"real": "effnet-lite0,minilm", "random": "effnet-lite0:random,minilm:random"}


@dataclass
class DemoConfig:
    """Settings of the demo; chosen on the validation split (see README, "The demo")."""

    data: Path = Path("data/synthetic")
    out: Path = Path("shards/demo")
    task: str = "vqa"
    seeds: str = "1,2,3"
    train_fraction: float = 0.25
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    student_input: str = "pixels:16@64"
    max_text_length: int = 16
    distill_options: list[str] = field(default_factory=lambda: ["--topk", "0.5", "--lambda", "1.0"])
    generator_options: list[str] = field(default_factory=list)
    workers: int | None = None  # extraction's image decoders (None: its default)
    device: str = "cpu"  # where the students train (the demo's settings were chosen on CPU)


def run(command: list[str]) -> None:
    """Run one stage's command, showing it; stop the demo when it fails."""
    click.secho("$ " + " ".join(shlex.quote(part) for part in command), fg="cyan")
    started = time.perf_counter()
    if subprocess.run(command, check=False).returncode != 0:
        raise click.ClickException(f"this step failed: {' '.join(command)}")
    click.echo(f"  ({time.perf_counter() - started:.0f} s)")


def python(*arguments: str) -> list[str]:
    return [sys.executable, "-m", *arguments]


def generate(config: DemoConfig) -> None:
    run(python("extract.synthetic", "--out", str(config.data), *config.generator_options))


def extract(config: DemoConfig, teachers: str) -> Path:
    cache = config.out / f"{config.task}-{teachers}"
    run(
        python(
            "extract.run",
            "--dataset",
            config.task,
            "--root",
            str(config.data / config.task),
            "--out",
            str(cache),
            "--teachers",
            TEACHERS[teachers],
            "--student-input",
            config.student_input,
            "--max-text-length",
            str(config.max_text_length),
            *([] if config.workers is None else ["--workers", str(config.workers)]),
        )
    )
    return cache


def train(config: DemoConfig, cache: Path, name: str, distill: str) -> Path:
    out = config.out / "runs" / name
    if (out / "results.json").is_file():
        click.echo(f"reusing {out} (delete it to train again)")
        return out
    options = config.distill_options if distill != "none" else []
    run(
        python(
            "train.run",
            "--cache",
            str(cache),
            "--distill",
            distill,
            *options,
            "--train-fraction",
            str(config.train_fraction),
            "--seeds",
            config.seeds,
            "--epochs",
            str(config.epochs),
            "--batch-size",
            str(config.batch_size),
            "--lr",
            str(config.lr),
            "--eval-split",
            "val,test,test_shifted",
            "--device",
            config.device,
            "--out",
            str(out),
        )
    )
    return out


def per_type_table(runs: dict[str, Path]) -> str:
    """Mean over seeds of the per-question-type scores: a row per method and split."""
    scores: dict[tuple[str, str], dict[str, list[float]]] = {}
    for name, directory in runs.items():
        seeds = sorted(directory.glob("seed-*/results.json")) or [directory / "results.json"]
        for path in seeds:
            for split, metrics in json.loads(path.read_text())["splits"].items():
                types = metrics.get("per_question_type") or metrics.get("per_type") or {}
                for kind, value in types.items():
                    scores.setdefault((name, split), {}).setdefault(kind, []).append(value)
    kinds = sorted({kind for row in scores.values() for kind in row})
    lines = ["| method | split | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    order = sorted(
        scores, key=lambda key: (list(runs).index(key[0]), key[1] not in ("val", "dev"), key[1])
    )
    for name, split in order:
        row = scores[(name, split)]
        cells = [fmt(sum(row[k]) / len(row[k])) if k in row else "-" for k in kinds]
        lines.append(f"| {name} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(config: DemoConfig, runs: dict[str, Path]) -> str:
    table = compare(config.out, runs)
    metric = next(iter(load_scores(next(iter(runs.values()))).values()))
    text = "\n".join(
        [
            "# MAD demo (synthetic data, offline unaligned teachers)",
            "",
            f"Task {config.task}, {config.train_fraction:.0%} of the training split, "
            f"seeds {config.seeds}, {config.epochs} epochs; mean +- std over seeds of the "
            f"{', '.join(metric)} score.",
            "",
            table,
            "",
            "## Per question type (mean over seeds)",
            "",
            per_type_table(runs),
            "",
            "Synthetic data and unaligned offline teachers: a demonstration of the mechanism, "
            "not the paper's numbers.",
            "",
        ]
    )
    write_bytes_atomic(config.out / "report.md", text.encode())
    (config.out / "comparison.png").replace(config.out / "report.png")
    return table


def run_demo(config: DemoConfig) -> str:
    config.out.mkdir(parents=True, exist_ok=True)
    generate(config)
    real, control = extract(config, "real"), extract(config, "random")
    runs = {
        "none": train(config, real, "none", "none"),
        "naive": train(config, real, "naive", "naive"),
        "mad": train(config, real, "mad", "mad"),
        "mad (random teachers)": train(config, control, "mad-random", "mad"),
    }
    return write_report(config, runs)


@click.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=DemoConfig.data,
    show_default=True,
    help="Where the synthetic datasets go.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=DemoConfig.out,
    show_default=True,
    help="Where caches, runs and the report go.",
)
@click.option("--seeds", default=DemoConfig.seeds, show_default=True, help="Seeds per method.")
@click.option(
    "--epochs", type=int, default=DemoConfig.epochs, show_default=True, help="Training epochs."
)
@click.option(
    "--train-fraction",
    type=float,
    default=DemoConfig.train_fraction,
    show_default=True,
    help="Low-shot fraction of the training split.",
)
@click.option(
    "--small", is_flag=True, help="A tiny configuration (for tests): few images, short training."
)
def main(
    data: Path, out: Path, seeds: str, epochs: int, train_fraction: float, small: bool
) -> None:
    """Run the whole pipeline on embedded synthetic data and compare none / naive / mad and the
    random-teacher control; writes OUT/report.md and OUT/report.png."""
    config = DemoConfig(
        data=data, out=out, seeds=seeds, epochs=epochs, train_fraction=train_fraction
    )
    if small:
        config.generator_options = [
            "--train",
            "48",
            "--val",
            "12",
            "--test",
            "12",
            "--shifted",
            "12",
        ]
        config.workers = 0
    started = time.perf_counter()
    table = run_demo(config)
    click.echo(
        f"\n{table}\n\nreport: {out / 'report.md'}, plot: {out / 'report.png'} "
        f"({time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
