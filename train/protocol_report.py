"""The protocol's report: per split, a paper-style table (mean, sample std, n per cell), the
paired differences between methods per seed with 95% t-intervals, a low-shot curve and a bar plot
of the differences; ``report.md``, ``results.json`` and PNGs in the protocol's folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from extract.store.atomic import write_bytes_atomic, write_json_atomic
from train.grid import RESULTS, GridSpec
from train.report import save_figure
from train.stats import paired_interval, summarize, t_quantile

METRIC = {"vcr-qar": "Q->AR", "vcr-qa": "Q->A", "snli_ve": "accuracy", "vqa": "VQA accuracy"}
QUESTIONS = {
    ("mad", "none"): "does distillation add to finetuning alone?",
    (
        "mad",
        "naive",
    ): "do MAD's token selection and confidence weights beat distilling every token?",
    ("naive", "none"): "does distilling every token add to finetuning alone?",
    ("mad-pool", "mad"): "do the unlabelled training samples add to the labelled ones?",
}
CONTROL_QUESTION = "is the gain the teachers' knowledge rather than the extra loss itself?"


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    question: str

    @property
    def name(self) -> str:
        return f"{self.first} - {self.second}"


def comparisons(spec: GridSpec) -> list[Comparison]:
    """The differences the report shows, where both arms are in the grid."""
    found = [Comparison(a, b, q) for (a, b), q in QUESTIONS.items()]
    for cache in list(spec.caches)[1:]:
        found += [Comparison(m, f"{m}@{cache}", CONTROL_QUESTION) for m in spec.control_methods]
    arms = {cell.arm for cell in spec.cells()}
    order = {("mad", "none"): 0, ("mad", "naive"): 1}
    found = [c for c in found if c.first in arms and c.second in arms]
    return sorted(found, key=lambda c: (order.get((c.first, c.second), 2), "@" not in c.second))


def collect(spec: GridSpec, out: Path) -> tuple[list[dict], str]:
    """One record per finished cell: its key and each split's score; and the task's name."""
    records, task = [], ""
    for cell in spec.cells():
        path = cell.folder(out) / RESULTS
        if not path.is_file():
            continue
        results = json.loads(path.read_text())
        task = results["task"]
        scores = {split: m.get("score") for split, m in results["splits"].items()}
        types = {
            split: m.get("per_question_type") or m.get("per_type") or {}
            for split, m in results["splits"].items()
        }
        records.append({**cell.__dict__, "arm": cell.arm, "scores": scores, "types": types})
    return records, task


def per_seed(records: list[dict], student: str, arm: str, fraction: float, split: str) -> dict:
    return {
        r["seed"]: r["scores"][split]
        for r in records
        if (r["student"], r["arm"], r["fraction"]) == (student, arm, fraction)
        and r["scores"].get(split) is not None
    }


def summaries(spec: GridSpec, records: list[dict], split: str) -> list[dict]:
    rows = []
    arms = list(dict.fromkeys(cell.arm for cell in spec.cells()))
    for student in spec.students:
        for arm in arms:
            for fraction in spec.fractions:
                values = per_seed(records, student, arm, fraction, split)
                if values:
                    summary = summarize(list(values.values())).as_dict()
                    rows.append({"student": student, "arm": arm, "fraction": fraction, **summary})
    return rows


def intervals(spec: GridSpec, records: list[dict], split: str) -> list[dict]:
    rows = []
    for student in spec.students:
        for fraction in spec.fractions:
            for comparison in comparisons(spec):
                interval = paired_interval(
                    per_seed(records, student, comparison.first, fraction, split),
                    per_seed(records, student, comparison.second, fraction, split),
                )
                if interval is not None:
                    rows.append(
                        {
                            "student": student,
                            "fraction": fraction,
                            "comparison": comparison.name,
                            "question": comparison.question,
                            **interval.as_dict(),
                        }
                    )
    return rows


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary_table(spec: GridSpec, rows: list[dict]) -> str:
    header = "| student | method | " + " | ".join(f"{f:.0%}" for f in spec.fractions) + " |"
    lines = [header, "|---|---|" + "---|" * len(spec.fractions)]
    cells = {(r["student"], r["arm"], r["fraction"]): r for r in rows}
    for student, arm in dict.fromkeys((r["student"], r["arm"]) for r in rows):
        values = []
        for fraction in spec.fractions:
            row = cells.get((student, arm, fraction))
            values.append(
                "-" if row is None else f"{row['mean']:.2f} ± {number(row['std'])} (n={row['n']})"
            )
        lines.append(f"| {student} | {arm} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def interval_table(rows: list[dict]) -> str:
    lines = [
        "| student | fraction | difference | mean | 95% CI | n | excludes 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ci = "-" if row["low"] is None else f"[{row['low']:.2f}, {row['high']:.2f}]"
        verdict = {True: "**yes**", False: "no", None: "-"}[row["excludes_zero"]]
        lines.append(
            f"| {row['student']} | {row['fraction']:.0%} | {row['comparison']} | "
            f"{row['mean']:+.2f} | {ci} | {row['n']} | {verdict} |"
        )
    return "\n".join(lines)


def type_table(records: list[dict], split: str) -> str:
    """Mean over seeds of the per-type scores (question types, or VCR sources, or labels)."""
    groups: dict[tuple, dict[str, list[float]]] = {}
    for r in records:
        for kind, value in (r["types"].get(split) or {}).items():
            row = groups.setdefault((r["student"], r["arm"], r["fraction"]), {})
            row.setdefault(kind, []).append(value)
    kinds = sorted({kind for row in groups.values() for kind in row})
    if not kinds:
        return ""
    lines = [
        "| student | method | fraction | " + " | ".join(kinds) + " |",
        "|---|---|---|" + "---|" * len(kinds),
    ]
    for (student, arm, fraction), row in groups.items():
        cells = [number(sum(row[k]) / len(row[k])) if k in row else "-" for k in kinds]
        lines.append(f"| {student} | {arm} | {fraction:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(path: Path, spec: GridSpec, rows: list[dict], split: str, metric: str) -> None:
    """Score against the low-shot fraction, a line per method, the 95% CI of the mean shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = list(dict.fromkeys(r["student"] for r in rows))
    figure, axes = plt.subplots(1, len(students), figsize=(5.5 * len(students), 4), squeeze=False)
    for axis, student in zip(axes[0], students, strict=True):
        for arm in dict.fromkeys(r["arm"] for r in rows if r["student"] == student):
            points = sorted(
                (r for r in rows if (r["student"], r["arm"]) == (student, arm)),
                key=lambda r: r["fraction"],
            )
            x = [100 * r["fraction"] for r in points]
            mean = [r["mean"] for r in points]
            axis.plot(x, mean, marker="o", label=arm)
            half = [
                0.0
                if r["std"] is None
                else t_quantile(0.975, r["n"] - 1) * r["std"] / r["n"] ** 0.5
                for r in points
            ]
            low = [m - h for m, h in zip(mean, half, strict=True)]
            high = [m + h for m, h in zip(mean, half, strict=True)]
            axis.fill_between(x, low, high, alpha=0.15)
        axis.set(xlabel="training data (%)", ylabel=f"{metric} on {split}", title=student)
        axis.legend(fontsize=8)
    save_figure(figure, path)


def plot_differences(path: Path, rows: list[dict], split: str) -> None:
    """Each paired difference with its 95% CI (a bar a student, fraction and comparison)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['student']} {r['fraction']:.0%}: {r['comparison']}" for r in rows]
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2))
    errors = [
        [0 if r["low"] is None else r["mean"] - r["low"] for r in rows],
        [0 if r["high"] is None else r["high"] - r["mean"] for r in rows],
    ]
    colours = ["tab:green" if r["excludes_zero"] else "tab:gray" for r in rows]
    axis.barh(range(len(rows)), [r["mean"] for r in rows], xerr=errors, color=colours)
    axis.set_yticks(range(len(rows)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set(xlabel=f"paired difference on {split} (points; green: 95% CI excludes 0)")
    save_figure(figure, path)


def pairing_notes(spec: GridSpec) -> list[str]:
    """Which question the distillation comparisons answer for each student-teacher pairing."""
    from extract.store import CacheReader

    teachers = CacheReader(next(iter(spec.caches.values()))).config.get("teachers", [])
    notes = []
    for student in spec.students:
        source = student.partition(":")[2] if student.startswith("visualbert-init:") else None
        if source is not None and source in teachers:
            notes.append(
                f"`{student}` starts from the text teacher `{source}` itself: its text "
                "distillation measures *retention* of the student's own pretrained knowledge "
                "during finetuning, not transfer from another model. `none` on the same student "
                "shows what finetuning alone keeps; the random-teacher control separates the "
                "teachers' knowledge from the extra loss."
            )
        elif ":" in student:
            notes.append(
                f"`{student}` is pretrained apart from the teachers: distillation measures "
                "transfer from the teachers into a pretrained VL encoder."
            )
        else:
            notes.append(
                f"`{student}` starts from zero: every gain of distillation is transfer (or an "
                "optimisation side effect, which the random-teacher control shows)."
            )
    return notes


def write_report(spec: GridSpec, out: Path, failed: dict[str, str]) -> str:
    """report.md, results.json and the plots; returns the markdown."""
    records, task = collect(spec, out)
    metric = METRIC.get(task, "score")
    splits = list(
        dict.fromkeys(s for r in records for s, v in r["scores"].items() if v is not None)
    )
    splits.sort(key=lambda split: (split not in ("val", "dev"), split))  # validation first
    counts = sorted(
        {n for split in splits for n in [r["n"] for r in summaries(spec, records, split)]}
    )
    text = [
        "# Evaluation protocol",
        "",
        f"Task `{task}`, {metric}; {len(records)} of {len(spec.cells())} cells finished; "
        f"seeds per cell: n = {', '.join(map(str, counts)) or '-'} "
        f"(seeds {', '.join(map(str, spec.seeds))}). Caches: "
        + ", ".join(
            f"`{name}` = `{path}`"
            + (f" (group `{spec.teachers[name]}`)" if name in spec.teachers else "")
            for name, path in spec.caches.items()
        )
        + ". Methods: "
        + ", ".join(f"`{name}` (`{options}`)" for name, options in spec.methods.items())
        + f"; on the control cache(s): {', '.join(spec.control_methods) or 'none'}. "
        f"Options of every run: `{' '.join(spec.train_options)}`"
        + "".join(f"; of `{s}`: `{o}`" for s, o in spec.student_options.items())
        + ".",
        "",
        "Methods at the same seed train on the same low-shot subset, so they are compared by "
        "their differences per seed: mean and 95% t-interval over seeds. Std is the sample "
        "standard deviation (ddof = 1).",
        "",
        *[f"- {note}" for note in pairing_notes(spec)],
        "",
        "What each difference answers:",
        "",
        *[f"- `{c.name}`: {c.question}" for c in comparisons(spec)],
        "",
    ]
    summary: dict = {"task": task, "metric": metric, "cells": records, "splits": {}}
    for split in splits:
        rows, diffs = summaries(spec, records, split), intervals(spec, records, split)
        summary["splits"][split] = {"summaries": rows, "differences": diffs}
        plot_curves(out / f"lowshot-{split}.png", spec, rows, split, metric)
        if diffs:
            plot_differences(out / f"differences-{split}.png", diffs, split)
        text += [f"## {split}", "", summary_table(spec, rows), "", interval_table(diffs), ""]
        types = type_table(records, split)
        text += ["Per type (mean over seeds):", "", types, ""] if types else []
        text += [f"![low-shot curve](lowshot-{split}.png)"]
        text += [f"![paired differences](differences-{split}.png)" if diffs else "", ""]
    if failed:
        text += ["## Cells that failed", "", *[f"- `{k}`: {v}" for k, v in failed.items()], ""]
    markdown = "\n".join(text)
    write_json_atomic(out / "results.json", summary)
    write_bytes_atomic(out / "report.md", markdown.encode())
    return markdown
