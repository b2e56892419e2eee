"""``python -m train.protocol``: the evaluation protocol as one command.

A grid of students x methods x low-shot fractions x seeds on a cache (and control methods on its
``:random``-teacher twin), each cell one ``train.run``; missing cells run (``--jobs`` at a time),
finished ones are reused, an interrupted one resumes. Then ``OUT/report.md``: per split the
mean, sample std and n of every cell, the paired per-seed differences between methods with 95%
t-intervals, a low-shot curve and a bar plot of the differences::

    python -m train.protocol --cache real=shards/vqa --cache control=shards/vqa \\
        --teachers control=effnet-lite0-random-minilm-random \\
        --students tiny,visualbert-init:minilm --fractions 0.05,0.1,0.25 --seeds 1-8 \\
        --methods none,naive,mad,mad-pool --control-methods mad --jobs 2 --out runs/protocol \\
        -- --epochs 10 --eval-split val,test
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from train.grid import GridSpec, parse_methods, parse_student_options, run_grid
from train.protocol_report import write_report


def names(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_seeds(value: str) -> list[int]:
    """``1-8`` or ``1,2,5``."""
    seeds = []
    for item in names(value):
        first, dash, last = item.partition("-")
        try:
            seeds += list(range(int(first), int(last) + 1)) if dash else [int(item)]
        except ValueError:
            raise click.BadParameter(f"{value!r}: give seeds as 1-8 or 1,2,5") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{value!r}: give distinct seeds, e.g. 1-8")
    return seeds


def parse_fractions(value: str) -> list[float]:
    try:
        fractions = [float(item) for item in names(value)]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give fractions such as 0.05,0.1,0.25") from None
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise click.BadParameter(f"{value!r}: every fraction must lie in (0, 1]")
    return sorted(set(fractions))


def parse_caches(values: tuple[str, ...]) -> dict[str, Path]:
    caches = {}
    for value in values:
        name, sep, path = value.partition("=")
        name, path = (name, path) if sep else (Path(value).name, value)
        if name in caches or not name or "@" in name:
            raise click.BadParameter(f"{value!r}: cache names must be distinct, without '@'")
        caches[name] = Path(path)
    return caches


def parse_teachers(values: tuple[str, ...], caches: dict[str, Path]) -> dict[str, str]:
    """``NAME=GROUP``: the column group the cells of cache NAME distil."""
    teachers = {}
    for value in values:
        name, sep, group = value.partition("=")
        if not sep or not group or name not in caches:
            raise click.BadParameter(
                f"{value!r}: write CACHE=GROUP for one of the caches {list(caches)}, "
                "e.g. control=effnet-lite0-random-minilm-random"
            )
        teachers[name] = group
    return teachers


def gpus() -> list[str]:
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


@click.command(context_settings={"show_default": True})
@click.option(
    "--cache",
    "caches",
    multiple=True,
    required=True,
    help="NAME=PATH (or PATH); the first is the main cache, the others controls.",
)
@click.option(
    "--teachers",
    "teachers",
    multiple=True,
    help="NAME=GROUP: the column group the cells of cache NAME distil [default: its first], "
    "e.g. a control that is the same cache's :random teachers' group.",
)
@click.option("--students", default="tiny", help="Student ids, comma-separated.")
@click.option("--fractions", default="0.05,0.1,0.25", help="Low-shot fractions.")
@click.option("--seeds", default="1-8", help="Seeds: 1-8 or 1,2,5.")
@click.option("--methods", default="none,naive,mad,mad-pool", help="Methods on the main cache.")
@click.option("--control-methods", default="mad", help="Methods also run on each control cache.")
@click.option(
    "--method",
    "defined",
    multiple=True,
    help="Define a method: NAME=OPTIONS of train.run, e.g. 'mad-k8=--distill mad --topk 8'.",
)
@click.option(
    "--student-options",
    multiple=True,
    help="STUDENT=OPTIONS of train.run for that student's cells (they override the others), "
    "e.g. 'visualbert-init:minilm=--lr 1e-4 --lr-new 1e-3'.",
)
@click.option("--jobs", type=click.IntRange(min=1), default=1, help="Cells trained at once.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/protocol"))
@click.option("--report-only", is_flag=True, help="Rewrite the report from finished cells.")
@click.argument("train_options", nargs=-1, type=click.UNPROCESSED)
def main(
    caches, teachers, students, fractions, seeds, methods, control_methods, defined,
    student_options, jobs, out, report_only, train_options,
) -> None:  # fmt: skip
    """Run the grid's missing cells and write OUT/report.md (options after -- go to every
    train.run, e.g. -- --epochs 10 --eval-split val,test)."""
    try:
        chosen = names(methods) + [m for m in names(control_methods) if m not in names(methods)]
        paths = parse_caches(caches)
        spec = GridSpec(
            caches=paths,
            teachers=parse_teachers(teachers, paths),
            students=names(students),
            methods=parse_methods(list(defined), chosen),
            control_methods=names(control_methods),
            fractions=parse_fractions(fractions),
            seeds=parse_seeds(seeds),
            train_options=list(train_options),
            student_options=parse_student_options(list(student_options), names(students)),
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    failed = {} if report_only else run_missing(spec, out, jobs)
    click.echo(write_report(spec, out, failed))
    click.echo(f"\nreport: {out / 'report.md'}")
    if failed:
        click.echo(f"{len(failed)} cell(s) failed; see the report", err=True)
        sys.exit(1)


def run_missing(spec: GridSpec, out: Path, jobs: int) -> dict[str, str]:
    """Train every unfinished cell; returns the failures (cell folder -> one line)."""
    cells = spec.cells()
    todo = [cell for cell in cells if not cell.finished(out)]
    click.echo(f"{len(cells)} cells: {len(cells) - len(todo)} finished, {len(todo)} to train")
    failed: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc="cells", unit="cell", dynamic_ncols=True)

    def done(folder: Path, error: str | None) -> None:
        bar.update(1)
        if error is not None:
            failed[str(folder.relative_to(out))] = error
            bar.write(f"failed: {folder}: {error}")

    work = [(spec.arguments(cell, out), cell.folder(out)) for cell in todo]
    try:
        run_grid(work, jobs, gpus(), done)
    finally:
        bar.close()
    return failed


if __name__ == "__main__":
    main()
