"""``python -m train.compare --out DIR NAME=RUN_DIR ...``: several runs side by side.

Each RUN_DIR holds a ``results.json`` (one seed, or the mean +- sample std (ddof=1) of several).
The table puts every method (including a ``:random``-teacher control) in a row and every split's
score in a column, and a bar plot shows the same with the std as error bars.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from extract.store.atomic import write_bytes_atomic, write_json_atomic
from train.report import METRICS, format_summary, save_figure


def load_scores(run_dir: Path) -> dict[str, dict[str, dict]]:
    """split -> metric -> {"mean", "std", "values"} for a single or a multi-seed run."""
    results = json.loads((run_dir / "results.json").read_text())
    scores: dict[str, dict[str, dict]] = {}
    for split, metrics in results["splits"].items():
        for name in METRICS:
            value = metrics.get(name)
            if isinstance(value, dict):
                scores.setdefault(split, {})[name] = value
            elif value is not None:
                scores.setdefault(split, {})[name] = {
                    "mean": value,
                    "std": None,
                    "n": 1,
                    "values": [value],
                }
    return scores


def headline(scores: dict[str, dict[str, dict]]) -> str:
    """The one metric a table shows per split: Q->AR, accuracy or VQA overall."""
    names = {name for metrics in scores.values() for name in metrics}
    return next(name for name in ("q2ar", "accuracy", "overall", "q2a") if name in names)


def comparison_table(runs: dict[str, dict]) -> tuple[str, str, list[str]]:
    metric = headline(next(iter(runs.values())))
    found = dict.fromkeys(split for scores in runs.values() for split in scores)
    splits = sorted(
        found, key=lambda split: (split not in ("val", "dev"), split)
    )  # validation first
    lines = ["| method | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for name, scores in runs.items():
        cells = []
        for split in splits:
            value = scores.get(split, {}).get(metric)
            cells.append("-" if value is None else format_summary(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), metric, splits


def plot(path: Path, runs: dict[str, dict], metric: str, splits: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(2.2 + 1.6 * len(splits), 3.6))
    width = 0.8 / len(runs)
    for number, (name, scores) in enumerate(runs.items()):
        means = [scores.get(s, {}).get(metric, {}).get("mean", np.nan) for s in splits]
        stds = [scores.get(s, {}).get(metric, {}).get("std") or 0.0 for s in splits]
        positions = np.arange(len(splits)) + (number - (len(runs) - 1) / 2) * width
        axes.bar(positions, means, width, yerr=stds, capsize=3, label=name)
    axes.set_xticks(np.arange(len(splits)), splits)
    axes.set(ylabel=f"{metric} (%)", title=f"{metric}: mean +- sample std over seeds")
    axes.legend(fontsize=8)
    save_figure(figure, path)


def compare(out: Path, named_dirs: dict[str, Path]) -> str:
    runs = {name: load_scores(directory) for name, directory in named_dirs.items()}
    table, metric, splits = comparison_table(runs)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "comparison.json", {"metric": metric, "runs": runs})
    write_bytes_atomic(out / "comparison.md", (table + "\n").encode())
    plot(out / "comparison.png", runs, metric, splits)
    return table


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the comparison goes.",
)
@click.argument("runs", nargs=-1, required=True)
def main(out: Path, runs: tuple[str, ...]) -> None:
    """Compare runs given as NAME=RUN_DIR (each with a results.json)."""
    named = {}
    for item in runs:
        name, sep, directory = item.partition("=")
        if not sep or not (Path(directory) / "results.json").is_file():
            raise click.BadParameter(
                f"{item!r}: expected NAME=RUN_DIR with a results.json in RUN_DIR"
            )
        named[name] = Path(directory)
    click.echo(compare(out, named))


if __name__ == "__main__":
    main()
