"""``python -m train.demo`` (``make demo``): the whole pipeline on embedded synthetic data.

It runs, as a user would, each stage's own command: generate the synthetic datasets, extract the
VQA set with the offline teachers (EfficientNet-Lite0 + MiniLM), add their ``:random`` controls
to the same cache as a second column group (``--add-teachers``), verify it, then ``python -m
train.protocol``: students x methods (``none``, ``naive``, ``mad``, ``mad-pool``, and ``mad``
and ``mad-pool`` against the random teachers' group) x low-shot fractions x 8 seeds, evaluated
on val, test and test_shifted, with paired per-seed differences. Every step is
skipped when its output exists, so a second run reuses the data, the caches and every finished
cell.

``make demo`` runs the grid that fits about 20 minutes on 2 CPU cores from a fresh clone: the
from-zero student at 5%. ``make demo-full`` (``--full``) runs the whole grid: the from-zero and
the offline pretrained student (VisualBERT initialised from MiniLM) at 5%, 10% and 25%, hours on
2 CPU cores (BENCHMARKS.md and README give the measured cost of a cell).

This is a demonstration of the mechanism on synthetic data with unaligned teachers, not a
reproduction of the paper's numbers.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

TEACHERS = {"real": "effnet-lite0,minilm", "random": "effnet-lite0:random,minilm:random"}
CONTROL_GROUP = "random-teachers"  # the :random controls' column group, added to the cache
PRETRAINED = "visualbert-init:minilm"


@dataclass
class DemoConfig:
    """Settings of the demo; chosen on the validation split (see README, "The demo")."""

    data: Path = Path("data/synthetic")
    out: Path = Path("shards/demo")
    task: str = "vqa"
    students: str = "tiny"
    fractions: str = "0.05"
    seeds: str = "1-8"
    methods: str = "none,naive,mad,mad-pool"
    control_methods: str = "mad,mad-pool"
    jobs: int = 2
    train_options: list[str] = field(
        default_factory=lambda: [
            "--epochs", "15", "--batch-size", "32", "--lr", "1e-3", "--keep", "last",
            "--checkpoint-every", "5",
            "--topk", "0.5", "--lambda", "1.0", "--eval-split", "val,test,test_shifted",
        ]
    )  # fmt: skip
    student_options: dict[str, str] = field(
        default_factory=lambda: {PRETRAINED: "--lr 3e-4 --lr-new 3e-3 --epochs 20"}
    )
    student_input: str = "pixels:16@64"
    max_text_length: int = 16
    generator_options: list[str] = field(default_factory=list)
    workers: int | None = None  # extraction's image decoders (None: its default)
    device: str = "cpu"  # where the students train (the settings were chosen on CPU)

    def full(self) -> DemoConfig:
        """The whole grid (``make demo-full``)."""
        self.students = f"tiny,{PRETRAINED}"
        self.fractions = "0.05,0.1,0.25"
        return self


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


def extract(config: DemoConfig, *teachers: str) -> Path:
    """The VQA cache: its base and the real teachers' group, or (``--add-teachers ...``) one
    more column group beside them."""
    cache = config.out / config.task
    workers = [] if config.workers is None else ["--workers", str(config.workers)]
    run(
        python(
            "extract.run", "--dataset", config.task, "--root", str(config.data / config.task),
            "--out", str(cache), *teachers, "--student-input", config.student_input,
            "--max-text-length", str(config.max_text_length), *workers,
        )
    )  # fmt: skip
    return cache


def protocol(config: DemoConfig, cache: Path) -> None:
    students = [name for name in config.students.split(",") if name]
    options = [
        f"--student-options={name}={value}"
        for name, value in config.student_options.items()
        if name in students
    ]
    run(
        python(
            "train.protocol", "--cache", f"real={cache}", "--cache", f"control={cache}",
            "--teachers", f"control={CONTROL_GROUP}",
            "--students", config.students, "--fractions", config.fractions,
            "--seeds", config.seeds, "--methods", config.methods,
            "--control-methods", config.control_methods, *options,
            "--jobs", str(config.jobs), "--out", str(config.out),
            "--", *config.train_options, "--device", config.device,
        )
    )  # fmt: skip


def run_demo(config: DemoConfig) -> None:
    config.out.mkdir(parents=True, exist_ok=True)
    generate(config)
    cache = extract(config, "--teachers", TEACHERS["real"])
    extract(config, "--add-teachers", TEACHERS["random"], "--group", CONTROL_GROUP)
    run(python("extract.verify", "--cache", str(cache)))  # the base and both groups, aligned
    protocol(config, cache)


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
    help="Where caches, cells and the report go.",
)
@click.option("--seeds", default=DemoConfig.seeds, show_default=True, help="Seeds per cell.")
@click.option("--jobs", type=click.IntRange(min=1), default=DemoConfig.jobs, show_default=True)
@click.option("--full", is_flag=True, help="The whole grid: both students, 5%, 10% and 25%.")
@click.option(
    "--small", is_flag=True, help="A tiny configuration (for tests): few images, short training."
)
def main(data: Path, out: Path, seeds: str, jobs: int, full: bool, small: bool) -> None:
    """Run the whole pipeline on embedded synthetic data and the evaluation protocol over it;
    writes OUT/report.md with its plots."""
    config = DemoConfig(data=data, out=out, seeds=seeds, jobs=jobs)
    if full:
        config.full()
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
        config.fractions = "0.25"
        config.train_options[1] = "1"  # one epoch
    started = time.perf_counter()
    run_demo(config)
    click.echo(f"\nreport: {out / 'report.md'} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
