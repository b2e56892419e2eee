"""What a training run leaves behind for a reader: results.json, report.md and curves.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extract.store.atomic import write_bytes_atomic, write_json_atomic
from train.stats import summarize

METRICS = ("q2a", "qa2r", "q2ar", "accuracy", "overall")


def metric_names(splits: dict) -> list[str]:
    found = {name for metrics in splits.values() for name in metrics if name in METRICS}
    return [name for name in METRICS if name in found]


def run_table(results: dict) -> str:
    splits = results["splits"]
    names = metric_names(splits)
    lines = ["| split | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for split, metrics in splits.items():
        cells = [fmt(metrics.get(name)) for name in names]
        lines.append(f"| {split} | {metrics.get('n', 0)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_type_table(results: dict) -> str:
    lines = []
    for split, metrics in results["splits"].items():
        for name, value in (metrics.get("per_type") or {}).items():
            lines.append(f"| {split} | {name} | {fmt(value)} |")
    return "\n".join(["| split | type | score |", "|---|---|---|", *lines]) if lines else ""


def weights_table(results: dict) -> str:
    summary = results.get("weights") or {}
    lines = []
    for facet in ("label", "question_type"):
        for name, stats in (summary.get(facet) or {}).items():
            values = [stats[k] for k in ("n", "mean", "std", "min", "max")]
            lines.append(f"| {facet} | {name} | " + " | ".join(map(str, values)) + " |")
    if not lines:
        return "No confidence weighting in this run (w = 1)."
    header = ["| by | group | n | mean | std | min | max |", "|---|---|---|---|---|---|---|"]
    return "\n".join(header + lines)


def student_section(info: dict) -> str:
    """What the student is, what it reads, and which weights were loaded."""
    if not info:
        return "-"
    lines = [
        f"- {info['kind']}: `{info['source']}`, {info['parameters']:,} parameters",
        f"- visual input: `{info['visual_input']}`; text: {info['text_input']}",
    ]
    if info.get("loaded"):
        lines.append(
            f"- weights loaded: {info['loaded']} tensors; missing from the checkpoint: "
            f"{names(info['missing'])}; in the checkpoint but unused: {names(info['unexpected'])}"
        )
    if info.get("adapters"):
        lines.append(
            "- adapters (learned, trained with the student): " + "; ".join(info["adapters"])
        )
    lines += [f"- {note}" for note in info.get("notes", [])]
    return "\n".join(lines)


def names(values: list[str], shown: int = 8) -> str:
    if not values:
        return "none"
    listed = ", ".join(f"`{v}`" for v in values[:shown])
    return listed + (f" and {len(values) - shown} more" if len(values) > shown else "")


def fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def write_run_report(out: Path, results: dict) -> None:
    write_json_atomic(out / "results.json", results)
    config = results["config"]
    share = results.get("distill_share") or {}
    text = [
        f"# Training run: {results['task']}, --distill {config['distill']['mode']}, "
        f"seed {config['seed']}",
        "",
        f"Cache `{results['cache']}` (key `{results['cache_key'][:16]}`), "
        f"{results['train_samples']} training samples, model selected on "
        f"`{results['val_split']}` (best epoch {results['best_epoch']}).",
        "",
        run_table(results),
        "",
        "## Student",
        "",
        student_section(results.get("student") or {}),
        "",
        "## Per type",
        "",
        per_type_table(results),
        "",
        f"## Confidence weights ({results['confidence']})",
        "",
        weights_table(results),
        "",
        "Share of the distillation loss per branch: "
        + (", ".join(f"{k} {v:.0%}" for k, v in share.items()) if share else "no distillation")
        + ".",
        "",
    ]
    write_bytes_atomic(out / "report.md", "\n".join(text).encode())
    plot_curves(out / "curves.png", results["history"])


def plot_curves(path: Path, history: list[dict]) -> None:
    """Loss terms and the validation score per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [entry["epoch"] for entry in history]
    figure, (losses, scores) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("loss", "task", "distill_vis", "distill_txt"):
        values = [entry.get(name, 0.0) for entry in history]
        if any(values):
            losses.plot(epochs, values, marker="o", label=name)
    losses.set(xlabel="epoch", ylabel="training loss", title="loss terms")
    losses.legend()
    values = [entry.get("val", {}).get("score") for entry in history]
    if any(v is not None for v in values):
        scores.plot(
            epochs, [np.nan if v is None else v for v in values], marker="o", color="tab:green"
        )
    scores.set(xlabel="epoch", ylabel="score (%)", title="validation")
    save_figure(figure, path)


def save_figure(figure, path: Path) -> None:
    """Lay out, write atomically (a temporary name, then rename) and close a figure."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)


def summary_of(values: list[float]) -> dict:
    summary = summarize(values)
    std = None if summary.std is None else round(summary.std, 2)
    return {"mean": round(summary.mean, 2), "std": std, "n": summary.n, "values": values}


def aggregate(runs: list[dict]) -> dict:
    """Mean, sample std (ddof=1; None for one seed) and n over seeds of every split metric."""
    splits: dict[str, dict[str, list[float]]] = {}
    for results in runs:
        for split, metrics in results["splits"].items():
            for name in METRICS:
                if metrics.get(name) is not None:
                    splits.setdefault(split, {}).setdefault(name, []).append(float(metrics[name]))
    summary = {
        split: {name: summary_of(v) for name, v in metrics.items()}
        for split, metrics in splits.items()
    }
    return {
        "seeds": [r["config"]["seed"] for r in runs],
        "splits": summary,
        "cache_key": runs[0]["cache_key"],
        "config": {k: v for k, v in runs[0]["config"].items() if k not in ("seed", "out")},
    }


def format_summary(summary: dict) -> str:
    if summary["std"] is None:
        return f"{summary['mean']:.2f}"
    return f"{summary['mean']:.2f} +- {summary['std']:.2f}"


def write_summary(out: Path, summary: dict) -> str:
    write_json_atomic(out / "results.json", summary)
    names = [n for n in METRICS if any(n in m for m in summary["splits"].values())]
    lines = [
        f"Mean +- sample std (ddof=1) over seeds {summary['seeds']}, n = {len(summary['seeds'])}"
        f" (cache key {summary['cache_key'][:16]})",
        "",
        "| split | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for split, metrics in summary["splits"].items():
        cells = [format_summary(metrics[n]) if n in metrics else "-" for n in names]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    write_bytes_atomic(out / "report.md", text.encode())
    return text
