"""``make bench`` (``python -m benchmarks.run_all``): every benchmark script, one after another,
each in its own process (so memory peaks and imported state stay apart); then the table in
``BENCHMARKS.md`` is rewritten from ``benchmarks/results.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import click

from benchmarks.common import RESULTS
from benchmarks.report import BENCHMARKS_MD, rewrite
from extract.store.atomic import write_json_atomic

SCRIPTS = {  # name -> (whether it takes --device, the figures it records)
    "extraction": (True, ("extract_efficiency", "extract_scaling")),
    "training": (True, ("cache_speedup", "cache_speedup_vit_b16", "loader_headroom")),
    "students": (True, ("student_train_samples_per_s",)),
    "reader_memory": (False, ("reader_memory_growth",)),
    "ranks": (False, ("extract_ranks_max_abs_diff", "ddp_equivalence_max_abs_diff")),
    "layout": (True, ("image_dedup_bytes_ratio", "ragged_text_bytes_ratio")),
    "groups": (True, ("column_read_bytes_ratio", "add_group_time_ratio")),
    "faiss_index": (True, ("faiss_recall_at_10", "faiss_build_s_per_1e5")),
    "faults": (
        False,
        (
            "faults_extract_kill_identical",
            "faults_train_kill_identical",
            "faults_damage_caught_verify",
            "faults_damage_caught_train",
            "faults_damage_caught_train_full",
            "faults_bad_input_clear",
            "faults_concurrent_writers_refused",
            "faults_skipped_retried",
        ),
    ),
    "int8": (
        True,
        (
            "int8_bytes_ratio",
            "int8_whole_sample_bytes_ratio",
            "int8_cosine_error",
            "int8_accuracy_delta",
        ),
    ),
    "real_images": (
        True,
        (
            "fast_decode_cosine",
            "fast_decode_speedup",
            "decode_jpeg_speedup",
            "extract_efficiency_real",
            "extract_efficiency_real_default",
            "extract_memory_growth",
        ),
    ),
}


def forget(keys: tuple[str, ...]) -> None:
    """Drop a failed script's figures: an older run's must not pass for this one's."""
    if RESULTS.is_file():
        results = json.loads(RESULTS.read_text())
        write_json_atomic(RESULTS, {k: v for k, v in results.items() if k not in keys})


@click.command()
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--only", default="", help=f"Comma-separated subset of: {', '.join(SCRIPTS)}.")
def main(device: str, only: str) -> None:
    """Run the benchmarks and rewrite the results table of BENCHMARKS.md."""
    names = [name.strip() for name in only.split(",") if name.strip()] or list(SCRIPTS)
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        raise click.BadParameter(f"{unknown}; choose from {list(SCRIPTS)}", param_hint="--only")
    started, failed = time.perf_counter(), []
    for name in names:
        command = [sys.executable, "-m", f"benchmarks.{name}"]
        command += ["--device", device] if SCRIPTS[name][0] else []
        click.secho(f"$ {' '.join(command[1:])}", fg="cyan")
        begun = time.perf_counter()
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
            forget(SCRIPTS[name][1])
        click.echo(f"  ({time.perf_counter() - begun:.0f} s)")
    click.echo(
        f"\n{rewrite()}\n\n{BENCHMARKS_MD.name} rewritten; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    missed = [
        key for key, entry in json.loads(RESULTS.read_text()).items() if entry["met"] is False
    ]
    if missed:
        click.secho(f"targets missed: {', '.join(missed)} (see BENCHMARKS.md)", fg="red")
    if failed:
        raise click.ClickException(f"these benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
