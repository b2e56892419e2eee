"""The results table of ``BENCHMARKS.md``, rewritten from ``benchmarks/results.json``.

Only the part between the two markers is replaced; the text around it (what each figure means,
profiles, what is left to do) is written by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, TARGETS
from extract.store.atomic import write_bytes_atomic

BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
START = "<!-- results: written by `make bench` from benchmarks/results.json; do not edit -->"
END = "<!-- end of results -->"
ORDER = [
    *TARGETS,
    "cache_speedup_vit_b16",
    "int8_whole_sample_bytes_ratio",
    "faiss_build_s_per_1e5",
    "student_train_samples_per_s",
    "extract_efficiency_real_default",
    "fast_decode_cosine",
    "fast_decode_speedup",
    "decode_jpeg_speedup",
]


def number(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}: {number(v)}" for key, v in value.items())
    if isinstance(value, float):
        text = f"{value:.3g}"  # three significant digits: 0.97, -0.05, 8.02e-05
        return text if any(c in text for c in ".ena") else f"{text}.0"  # a float stays one: 1.0
    return str(value)


def table(results: dict) -> str:
    keys = sorted(results, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))
    lines = [
        "| figure | target | measured | met | command | machine | date |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in keys:
        entry = results[key]
        verdict = {True: "yes", False: "**no**", None: "-"}[entry["met"]]
        lines.append(
            f"| `{key}` | {entry['target']} | {number(entry['value'])} | {verdict} | "
            f"`{entry['command']}` | {entry['machine']} | {entry['date']} |"
        )
    return "\n".join(lines)


def rewrite(path: Path = BENCHMARKS_MD, results_path: Path = RESULTS) -> str:
    """Replace the table in ``path`` (creating the file if needed); returns the table."""
    results = json.loads(results_path.read_text())
    text = path.read_text() if path.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise ValueError(
            f"{path} lacks the markers around the results table; put these two lines where the "
            f"table goes:\n{START}\n{END}"
        )
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    rendered = table(results)
    write_bytes_atomic(path, f"{head}{START}\n{rendered}\n{END}{tail}".encode())
    return rendered


if __name__ == "__main__":
    print(rewrite())
