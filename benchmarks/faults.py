"""``python -m benchmarks.faults``: what kills, damaged files, bad input and a second writer do to
the two stages, measured with the real commands run as a user runs them (each one a subprocess:
``extract.synthetic``, ``extract.run``, ``extract.verify``, ``train.run``), on a small synthetic
VQA set (24 training images: 48 + 16 + 16 questions of train, val and test, shards of 8, the
default teachers, FAISS indices built). Every figure is a count "n / n":

* ``faults_extract_kill_identical``: ``kill -9`` of an extraction at seeded points (one in each
  equal stratum of the files a whole extraction writes before its manifest, counted as they
  appear, then a seeded fraction of the time the uninterrupted run took to the next file), then
  the same command again: the resumed cache equals an uninterrupted one byte for byte (every
  file, FAISS indices included; the manifest without its timings; not writer.lock).
* ``faults_train_kill_identical``: ``kill -9`` of ``train.run`` inside epoch 1, 2 and 3 (a seeded
  fraction of the epoch, as long as the run's previous one; a run that ends before its kill is
  started again, up to 3 times), then ``--resume``: last.pt (model, optimiser, scheduler, loop
  state, random states), best.pt, results.json's scores and history and metrics.jsonl equal
  those of an uninterrupted run.
* ``faults_damage_caught_verify`` / ``faults_damage_caught_train`` /
  ``faults_damage_caught_train_full``: damaged copies of the cache; caught = ``extract.verify``
  exits 1; ``train.run`` (the default ``--check-cache read``, then ``full``) exits 1 with one
  ``error:`` line, no traceback and no results.json.
* ``faults_bad_input_clear``: bad inputs; clear = exit 2 with click's usage and one ``Error:``
  line for what the parser checks, exit 1 with one ``error:`` line (the last line) for what is
  checked when used; never a traceback; the line names the option, value or file at fault.
* ``faults_concurrent_writers_refused``: two identical extractions into one ``--out``, started
  together (the last trial: the second once the first holds the lock); one proceeds, the other
  is refused before writing, naming the holder's pid, host and start time; the cache verifies
  and equals the uninterrupted one.
* ``faults_skipped_retried``: two training images removed: their questions are skipped and
  listed with a reason; images restored, ``--retry-skipped`` gives the uninterrupted cache's bytes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from benchmarks.common import ROOT, WORK, record

COMMAND = "python -m benchmarks.faults"
FOLDER = WORK / "faults"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TIMINGS = {"timing", "build_s"}  # manifest entries that hold durations, not content
NOT_COMPARED = {"manifest.json", "writer.lock"}  # the manifest is compared without TIMINGS
TRAIN_EPOCHS = 3  # of every training run killed and resumed
NAN16 = np.array([np.nan], "<f2").tobytes()


@dataclass
class Done:
    code: int
    out: str
    err: str


@dataclass
class Case:
    name: str
    module: str
    args: list[str]
    expected: int  # 2: the parser refuses it (usage); 1: refused when used (runtime)
    names: str  # what the error line must name (the option, value or file at fault)


def cli(module: str, *args: str) -> Done:
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=ENV, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    return Done(done.returncode, done.stdout, done.stderr)


def start(module: str, args: list[str], log: Path) -> subprocess.Popen:
    """A command in its own process group (so ``kill -9`` takes all of it), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=ROOT, env=ENV, stdout=handle,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def kill(process: subprocess.Popen) -> bool:
    """SIGKILL the process group; False when the command had already finished."""
    alive = process.poll() is None
    if alive:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return alive


# ---- pure helpers (tests/benchmarks/test_faults_bench.py) -------------------------------------
def without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def same_bytes(one: Path, two: Path) -> bool:
    return one.read_bytes() == two.read_bytes()


def cache_differences(one: Path, two: Path) -> list[str]:
    """Files that differ in bytes between two caches or that only one has, and manifest.json
    when it differs beyond its timings."""

    def files(folder: Path) -> set[str]:
        return {
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.name not in NOT_COMPARED
        }

    mine, theirs = files(one), files(two)
    differing = sorted(mine ^ theirs)
    differing += [n for n in sorted(mine & theirs) if not same_bytes(one / n, two / n)]
    manifests = [folder / "manifest.json" for folder in (one, two)]
    contents = {
        json.dumps(without_times(json.loads(p.read_text())), sort_keys=True)
        for p in manifests
        if p.is_file()
    }
    if not all(p.is_file() for p in manifests) or len(contents) != 1:
        differing.append("manifest.json")
    return differing


def error_form(code: int, output: str) -> str | None:
    """None when a failure is reported as promised (exit 1 and one ``error:`` line, the last; or
    exit 2, click's usage and one ``Error:`` line); otherwise what is wrong. A line shows what a
    terminal shows: the text after its last carriage return."""
    lines = [line.rsplit("\r", 1)[-1] for line in output.split("\n")]
    lines = [line for line in lines if line.strip()]
    if "Traceback" in output:
        return "a traceback"
    if code not in (1, 2):
        return f"exit status {code}"
    prefix = "error: " if code == 1 else "Error: "
    marked = [line for line in lines if line.startswith(prefix)]
    if len(marked) != 1:
        return f"{len(marked)} lines start with {prefix!r}"
    if lines[-1] != marked[0]:
        return f"the {prefix.strip(': ')} line is not the last: {lines[-1][:80]!r} follows"
    if code == 2 and not any(line.startswith("Usage: ") for line in lines):
        return "no usage line"
    return None


def kill_points(files: int, count: int, rng: random.Random) -> list[tuple[int, float]]:
    """One point in each of ``count`` equal strata of [1, files]: kill once that many files of
    the cache have appeared (``files``: those a whole extraction writes before its manifest),
    and a fraction of the way to the next one."""
    edges = [1 + files * i / count for i in range(count + 1)]
    return [
        (rng.randint(int(low), max(int(low), int(high) - 1)), round(rng.random(), 3))
        for low, high in zip(edges, edges[1:], strict=False)
    ]


def same(one: Any, two: Any) -> bool:
    """Exact equality of nested checkpoints: tensors, arrays, dicts, lists, tuples, numbers."""
    if isinstance(one, torch.Tensor) or isinstance(two, torch.Tensor):
        return isinstance(one, torch.Tensor) and isinstance(two, torch.Tensor) and (
            one.dtype == two.dtype and one.shape == two.shape and torch.equal(one, two)
        )  # fmt: skip
    if isinstance(one, np.ndarray) or isinstance(two, np.ndarray):
        return np.array_equal(one, two)
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(same(one[k], two[k]) for k in one)
    if isinstance(one, list | tuple) and isinstance(two, list | tuple):
        return len(one) == len(two) and all(same(a, b) for a, b in zip(one, two, strict=True))
    return type(one) is type(two) and one == two


# ---- the commands ------------------------------------------------------------------------------
def extract_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--dataset", "vqa", "--root", str(root), "--out", str(out), "--split", "train",
        "--split", "val", "--split", "test", "--student-input", "pixels:16@64",
        "--max-text-length", "16", "--batch-size", "8", "--shard-samples", "8",
        "--dataset-option", "min_answer_count=1", "--device", "cpu", *extra,
    ]  # fmt: skip


def train_args(cache: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "--cache", str(cache), "--out", str(out), "--epochs", str(epochs), "--batch-size", "2",
        "--student", "tiny", "--seed", "1", "--device", "cpu", *extra,
    ]  # fmt: skip


def present(folder: Path) -> set[str]:
    try:
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    except OSError:  # a file renamed or a folder made while listing: the next poll sees it
        return set()


def watch(
    process: subprocess.Popen, folder: Path, stop_after: int | None = None
) -> list[tuple[str, float]]:
    """The files under ``folder`` (not the temporary ``.tmp`` ones) in the order they appeared,
    with the seconds from now when each was first seen (polled every 20 ms), while the process
    runs; with ``stop_after``, returns once that many have appeared."""
    order: list[tuple[str, float]] = []
    begun, seen = time.perf_counter(), set()

    def look() -> None:
        for name in sorted(present(folder) - seen):
            if not name.endswith(".tmp"):
                seen.add(name)
                order.append((name, round(time.perf_counter() - begun, 3)))

    while process.poll() is None:
        look()
        if stop_after is not None and len(order) >= stop_after:
            return order
        time.sleep(0.02)
    look()
    return order


def must(done: Done, what: str) -> Done:
    if done.code != 0:
        raise click.ClickException(f"{what} failed (exit {done.code}):\n{done.err[-3000:]}")
    return done


# ---- 1. kill -9 of an extraction ---------------------------------------------------------------
def extraction_kills(root: Path, reference: Path, order: list, count: int, rng) -> dict:
    """``kill -9`` once ``files`` files of the cache are there, at a seeded fraction of the time
    the uninterrupted extraction took from that file to the next; then the same command."""
    names = [name for name, _ in order]
    trials, before = [], names.index("manifest.json")
    for files, fraction in kill_points(before, count, rng):
        delay = round(fraction * (order[files][1] - order[files - 1][1]), 3)
        out = FOLDER / "killed-cache"
        shutil.rmtree(out, ignore_errors=True)
        process = start("extract.run", extract_args(root, out), FOLDER / "logs" / "killed.log")
        watch(process, out, stop_after=files)
        time.sleep(delay)
        killed = kill(process)
        left = present(out)
        resumed = cli("extract.run", *extract_args(root, out))
        differing = cache_differences(out, reference)
        trials.append({
            "after_files": files, "next_file": names[files], "then_s": delay, "killed": killed,
            "at_kill": {
                "shards": sum(n.endswith(".tar") for n in left),
                "partial_files": sorted(n for n in left if n.endswith(".tmp")),
                "manifest": "manifest.json" in left,
            },
            "resume_exit": resumed.code,
            "tmp_left": [n for n in present(out) if n.endswith(".tmp")],
            "differing": differing[:10],
            "identical": killed and resumed.code == 0 and not differing,
        })  # fmt: skip
    return {"files_before_the_manifest": before, "trials": trials}


# ---- 2. kill -9 of training --------------------------------------------------------------------
def epoch_lines(run: Path) -> int:
    path = run / "metrics.jsonl"
    text = path.read_text() if path.is_file() else ""
    return sum(line.startswith('{"kind": "epoch"') for line in text.splitlines())


def epoch_started(run: Path, epoch: int) -> bool:
    """Epoch 1 starts when the run log opens (its TensorBoard file appears), epoch e > 1 once
    e - 1 epoch lines are in metrics.jsonl (written at each epoch's end)."""
    if epoch == 1:
        return any(run.glob("events.out.tfevents.*"))
    return epoch_lines(run) >= epoch - 1


def epoch_seconds(cache: Path, run: Path, epochs: int) -> list[float]:
    """Train the uninterrupted reference; the duration of each epoch (with its validation)."""
    shutil.rmtree(run, ignore_errors=True)
    process = start("train.run", train_args(cache, run, epochs), FOLDER / "logs" / "train.log")
    marks: list[float] = []  # when epoch 1 starts, then when each epoch ends
    while True:
        running = process.poll() is None
        while len(marks) <= epochs and epoch_started(run, len(marks) + 1):
            marks.append(time.perf_counter())
        if not running:
            break
        time.sleep(0.02)
    if process.returncode != 0 or len(marks) <= epochs:
        raise click.ClickException(f"the reference training failed: see {FOLDER / 'logs'}")
    return [round(b - a, 2) for a, b in zip(marks, marks[1:], strict=False)]


def training_differences(one: Path, two: Path) -> list[str]:
    """What differs between two finished runs: checkpoints, scores, logged metrics."""
    if not (one / "last.pt").is_file():
        return ["last.pt missing"]
    a, b = (torch.load(d / "last.pt", map_location="cpu", weights_only=False) for d in (one, two))
    differing = [f"last.pt:{k}" for k in ("model", "optimizer", "scheduler", "state", "rng")
                 if not same(a[k], b[k])]  # fmt: skip
    best = [torch.load(d / "best.pt", map_location="cpu")["model"] for d in (one, two)]
    differing += [] if same(*best) else ["best.pt"]
    results = [json.loads((d / "results.json").read_text()) for d in (one, two)]
    keys = ("splits", "history", "best_epoch", "best_val_score")
    differing += [f"results.json:{k}" for k in keys if results[0][k] != results[1][k]]
    logs = [(d / "metrics.jsonl").read_bytes() for d in (one, two)]
    return differing + ([] if logs[0] == logs[1] else ["metrics.jsonl"])


def wait_for_epoch(process: subprocess.Popen, run: Path, epoch: int) -> list[float]:
    """Wait until the run starts ``epoch``; when each epoch up to it started."""
    starts: list[float] = []
    while process.poll() is None and len(starts) < epoch:
        if epoch_started(run, len(starts) + 1):
            starts.append(time.perf_counter())
        else:
            time.sleep(0.02)
    return starts


def kill_training(cache: Path, run: Path, epoch: int, fraction: float, first_s: float):
    """Start the run and ``kill -9`` it ``fraction`` into ``epoch`` (as long as this run's
    previous epoch, or ``first_s`` for the first); whether it was still running, and the
    epochs its last.pt holds."""
    shutil.rmtree(run, ignore_errors=True)
    process = start("train.run", train_args(cache, run, TRAIN_EPOCHS), FOLDER / "logs" / "tk.log")
    starts = wait_for_epoch(process, run, epoch)
    time.sleep(fraction * (starts[-1] - starts[-2] if len(starts) > 1 else first_s))
    killed = kill(process)
    if not (run / "last.pt").is_file():
        return killed, 0
    return killed, torch.load(run / "last.pt", weights_only=False)["state"]["epoch"]


def training_kills(cache: Path, count: int, rng) -> dict:
    """``kill -9`` inside epoch 1, 2, 3, 1, ... at a seeded fraction of the epoch, then
    ``--resume``; compared with the uninterrupted reference run."""
    epochs, reference = TRAIN_EPOCHS, FOLDER / "train-whole"
    seconds = epoch_seconds(cache, reference, epochs)
    trials, run = [], FOLDER / "train-killed"
    for trial in range(count):
        epoch, attempts = trial % epochs + 1, []
        while len(attempts) < 3:  # a run that ends before its kill (a busy machine) is no trial
            fraction = round(rng.uniform(0.2, 0.8), 3)
            attempts.append(fraction)
            killed, saved = kill_training(cache, run, epoch, fraction, seconds[0])
            if killed:
                break
        finished = (run / "results.json").is_file()
        resumed = cli("train.run", *train_args(cache, run, epochs, "--resume"))
        differing = training_differences(run, reference) if resumed.code == 0 else ["resume failed"]
        trials.append({
            "epoch": epoch, "fractions_tried": attempts, "killed": killed,
            "killed_in_epoch": saved + 1, "epochs_saved_at_kill": saved,
            "results_at_kill": finished, "resume_exit": resumed.code, "differing": differing,
            "identical": killed and not finished and resumed.code == 0 and not differing,
        })  # fmt: skip
    return {"epoch_seconds": seconds, "trials": trials}


# ---- 3. damaged caches -------------------------------------------------------------------------
def npy_start(data: bytes, at: int) -> tuple[int, str]:
    """Where the values of the .npy array at ``at`` start, and its header."""
    assert data[at : at + 6] == b"\x93NUMPY", "not an .npy array"
    size = 2 if data[at + 6] == 1 else 4  # the header length's bytes: version 1, or 2 and 3
    length = int.from_bytes(data[at + 8 : at + 8 + size], "little")
    begin = at + 8 + size
    return begin + length, data[begin : begin + length].decode("latin1")


def first_value(path: Path, suffix: str | None = None, dtype: str = "<f2") -> int:
    """The offset of the first value of an .npy file, or of a tar shard's first member ending
    with ``suffix``; its dtype must be ``dtype`` (float16: stored features; float32: means)."""
    at = 0
    if suffix is not None:
        with tarfile.open(path) as tar:
            at = next(m for m in tar.getmembers() if m.name.endswith(suffix)).offset_data
    start, header = npy_start(path.read_bytes(), at)
    assert f"'{dtype}'" in header, header
    return start


def flip(path: Path, offset: int) -> None:
    """Flip the lowest bit of a byte (of a float16 value: it stays finite)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def write_nan(path: Path, suffix: str) -> None:
    data = bytearray(path.read_bytes())
    at = first_value(path, suffix)
    data[at : at + 2] = NAN16
    path.write_bytes(bytes(data))


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def rehash(cache: Path, group: str, name: str) -> None:
    """Make the manifest (and the shard's offset index) agree with a changed shard of the group:
    a damage that no checksum can see."""
    manifest = json.loads((cache / "manifest.json").read_text())
    part = next(g for g in manifest["groups"] if g["name"] == group)
    shard = next(
        s for s in part["splits"][name.split("/")[0]]["shards"] if s["file"]["name"] == name
    )
    folder = cache / "groups" / group
    shard["file"].update(bytes=(folder / name).stat().st_size, sha256=sha256(folder / name))
    index_path = folder / shard["index"]["name"]
    index = json.loads(index_path.read_text())
    index["file"].update(shard["file"])
    index_path.write_text(json.dumps(index, separators=(",", ":")))
    shard["index"].update(bytes=index_path.stat().st_size, sha256=sha256(index_path))
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1))


def cut(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def edit_index(path: Path) -> None:
    """Swap the first two keys of an offset index (the same size: only the checksum differs)."""
    index = json.loads(path.read_text())
    keys = index["keys"]
    assert len(keys[0]) == len(keys[1]), keys[:2]
    keys[0], keys[1] = keys[1], keys[0]
    path.write_text(json.dumps(index, separators=(",", ":")))


def flip_value(path: Path, suffix: str | None = None, dtype: str = "<f2") -> None:
    flip(path, first_value(path, suffix, dtype) + (14 if suffix else 0))


def damages(group: str) -> dict[str, tuple[str, Any]]:
    """Name -> (the file damaged, relative to the cache; a function damaging it, given the
    cache and that file)."""
    g, nan = f"groups/{group}", f"groups/{group}/train/train-000000.tar"
    # fmt: off
    return {
        "flipped bit in a shard": (f"{g}/train/train-000001.tar",
                                   lambda c, f: flip_value(f, "img_grid.npy")),
        "truncated shard": ("train/train-000002.tar", lambda c, f: cut(f)),
        "deleted shard": ("val/val-000001.tar", lambda c, f: f.unlink()),
        "deleted manifest": ("manifest.json", lambda c, f: f.unlink()),
        "cut manifest": ("manifest.json", lambda c, f: cut(f)),
        "NaN, stale sha256": (nan, lambda c, f: write_nan(f, "txt_tok.npy")),
        "NaN, matching sha256": (nan, lambda c, f: (
            write_nan(f, "txt_tok.npy"), rehash(c, group, "train/train-000000.tar"))),
        "edited .idx.json": ("train/train-000001.idx.json", lambda c, f: edit_index(f)),
        "flipped shared mean": (f"{g}/shared/mean_img_emb.npy",
                                lambda c, f: flip_value(f, dtype="<f4")),
        "flipped FAISS file": (f"{g}/indices/train-image.faiss",
                               lambda c, f: flip(f, f.stat().st_size // 2)),
    }
    # fmt: on


def last_line(text: str, limit: int | None = 300) -> str:
    """The last line a terminal shows (the text after a line's last carriage return)."""
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return next((line for line in reversed(lines) if line.strip()), "")[:limit]


def damaged_caches(reference: Path, group: str) -> list[dict]:
    """Each damage on a fresh copy of the cache; what extract.verify and train.run make of it
    (and, for information, whether their messages name the damaged file as it lies in the
    cache)."""
    rows = []
    for name, (file, damage) in damages(group).items():
        cache, run = FOLDER / "damaged-cache", FOLDER / "damaged-run"
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(reference, cache)
        damage(cache, cache / file)
        verify = cli("extract.verify", "--cache", str(cache))
        problems = [line.strip() for line in verify.out.splitlines() if line.startswith("  - ")]
        row = {
            "damage": name, "file": file, "verify_exit": verify.code,
            "verify_problems": problems[:2], "verify_caught": verify.code == 1,
            "verify_names_file": any(file in problem for problem in problems),
        }  # fmt: skip
        for tool, mode in (("train", "read"), ("train_full", "full")):  # the default, then full
            shutil.rmtree(run, ignore_errors=True)
            train = cli("train.run", *train_args(cache, run, 1, "--check-cache", mode))
            form = error_form(train.code, train.err) if train.code == 1 else f"exit {train.code}"
            line, wrote = last_line(train.err), (run / "results.json").exists()
            row.update({
                f"{tool}_exit": train.code, f"{tool}_form": form, f"{tool}_line": line,
                f"{tool}_names_file": file in line, f"{tool}_wrote_results": wrote,
                f"{tool}_caught": form is None and not wrote,
            })  # fmt: skip
        rows.append(row)
    return rows


# ---- 4. bad inputs -----------------------------------------------------------------------------
QUESTIONS = "v2_OpenEnded_mscoco_train2014_questions.json"


def broken_inputs(data: Path) -> dict[str, Path]:
    """Copies of the synthetic data, each with one thing wrong."""
    broken = FOLDER / "broken"
    shutil.rmtree(broken, ignore_errors=True)
    roots = {}
    for name, source in (("cut-json", "vqa"), ("cut-line", "snli_ve"), ("no-questions", "vqa"),
                         ("no-images", "vqa"), ("no-image", "vqa")):  # fmt: skip
        roots[name] = broken / name
        shutil.copytree(data / source, roots[name])
    cut(roots["cut-json"] / QUESTIONS)
    lines = roots["cut-line"] / "snli_ve_train.jsonl"
    lines.write_bytes(lines.read_bytes().rstrip(b"\n")[:-20])  # the last line loses its end
    (roots["no-questions"] / QUESTIONS).unlink()
    shutil.rmtree(roots["no-images"] / "train2014")
    min(roots["no-image"].glob("train2014/*.jpg")).unlink()  # the first training image
    must(cli("extract.synthetic", "--out", str(broken / "tiny"), "--train", "2", "--val", "1",
             "--test", "1", "--shifted", "1"), "extract.synthetic")  # fmt: skip
    roots["tiny"], roots["nowhere"] = broken / "tiny" / "vqa", broken / "nowhere"
    return roots


def bad_inputs(data: Path, cache: Path, run: Path) -> list[Case]:
    """The bad inputs tried, with the exit status the project's convention gives each."""
    roots, out = broken_inputs(data), str(FOLDER / "broken" / "out")
    other = FOLDER / "broken" / "other-settings"  # a finished 3-epoch run, resumed with 2
    shutil.copytree(run, other)
    vqa, count = str(data / "vqa"), ("--dataset-option", "min_answer_count=1")

    def extract(root: Path | str, *extra: str, dataset: str = "vqa") -> list[str]:
        quick = ["--split", "train", "--limit", "4", "--no-index", "--device", "cpu"]
        return ["--dataset", dataset, "--root", str(root), "--out", out, *quick, *extra]

    def train(*extra: str, cache: Path | str = cache) -> list[str]:
        return [*train_args(Path(cache), FOLDER / "broken" / "run", 1), *extra]

    e, t = "extract.run", "train.run"
    # fmt: off
    return [
        Case("truncated VQA questions JSON", e, extract(roots["cut-json"], *count), 1, QUESTIONS),
        Case("truncated SNLI-VE jsonl line", e, extract(roots["cut-line"], dataset="snli_ve"), 1,
             "snli_ve_train.jsonl"),
        Case("missing VQA questions file", e, extract(roots["no-questions"], *count), 1,
             QUESTIONS),
        Case("missing VQA image folder", e, extract(roots["no-images"], *count), 1, "train2014"),
        Case("missing image with --on-error fail", e,
             extract(roots["no-image"], *count, "--on-error", "fail"), 1, "COCO_train2014_"),
        Case("VQA vocabulary empty at the default min_answer_count", e,
             extract(roots["tiny"]), 1, "min_answer_count"),
        Case("--root that does not exist", e, extract(roots["nowhere"], *count), 1, "nowhere"),
        Case("--split the dataset lacks", e, extract(vqa, *count, "--split", "nosuch"), 1,
             "nosuch"),
        Case("unknown --teachers id", e, extract(vqa, *count, "--teachers", "nosuch,minilm"), 1,
             "nosuch"),
        Case("openclip id without a tag", e,
             extract(vqa, *count, "--teachers", "openclip:ViT-B-16"), 1, "openclip:ViT-B-16"),
        Case("--split-role with a bad role", e,
             extract(vqa, *count, "--split-role", "train=tuning"), 2, "train=tuning"),
        Case("--limit -1", e, extract(vqa, *count, "--limit", "-1"), 2, "--limit"),
        Case("--dataset-option without =", e,
             extract(vqa, "--dataset-option", "min_answer_count"), 2, "--dataset-option"),
        Case("--add-teachers to a folder that is no cache", e,
             extract(vqa, *count, "--add-teachers", "minilm:random"), 1, "--add-teachers"),
        Case("train.run --epochs 0", t, train("--epochs", "0"), 2, "--epochs"),
        Case("train.run --cache of a folder that is no cache", t, train(cache=vqa), 1,
             "manifest.json"),
        Case("--train-split of a held-out split", t, train("--train-split", "test"), 1,
             "--train-split"),
        Case("--val-split of a held-out split", t, train("--val-split", "test"), 1, "--val-split"),
        Case("--train-split the cache lacks", t, train("--train-split", "nosuch"), 1, "nosuch"),
        Case("--train-fraction with --train-count", t,
             train("--train-fraction", "0.5", "--train-count", "4"), 2, "--train-count"),
        Case("--teachers naming no group of the cache", t, train("--teachers", "nosuch"), 1,
             "nosuch"),
        Case("unknown --student", t, train("--student", "huge"), 1, "huge"),
        Case("--seeds with a word", t, train("--seeds", "1,x"), 2, "--seeds"),
        Case("--resume of a run with other settings", t,
             [*train_args(cache, other, 2), "--resume"], 1, "last.pt"),
    ]
    # fmt: on


def try_bad_inputs(cases: list[Case]) -> list[dict]:
    rows = []
    for case in cases:
        done = cli(case.module, *case.args)
        form, line = error_form(done.code, done.err), last_line(done.err, None)
        if form is None and done.code != case.expected:
            form = f"exit {done.code}, expected {case.expected}"
        if form is None and case.names not in line:
            form = f"the error does not name {case.names!r}"
        rows.append({
            "input": case.name, "command": case.module, "exit": done.code, "line": line[:300],
            "problem": form, "clear": form is None,
        })  # fmt: skip
    return rows


# ---- 5. two writers ----------------------------------------------------------------------------
def wait_all(processes: list[subprocess.Popen]) -> list[float]:
    """Seconds from now until each process exits."""
    begun, ends = time.perf_counter(), [None] * len(processes)
    while any(end is None for end in ends):
        for i, process in enumerate(processes):
            if ends[i] is None and process.poll() is not None:
                ends[i] = round(time.perf_counter() - begun, 2)
        time.sleep(0.02)
    return ends


def two_writers(root: Path, reference: Path, staggered: bool) -> dict:
    out = FOLDER / "shared-cache"
    shutil.rmtree(out, ignore_errors=True)
    logs = [FOLDER / "logs" / f"writer-{i}.log" for i in (1, 2)]
    processes = [start("extract.run", extract_args(root, out), logs[0])]
    if staggered:
        watch(processes[0], out, stop_after=3)  # the two pending specs, then writer.lock
    processes.append(start("extract.run", extract_args(root, out), logs[1]))
    ends = wait_all(processes)
    codes = [p.returncode for p in processes]
    row: dict[str, Any] = {"staggered": staggered, "exits": codes, "exit_s": ends}
    if sorted(codes) != [0, 1]:
        return {**row, "refused": False}
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    text = logs[loser].read_text()
    holder = f"pid {processes[winner].pid} on {socket.gethostname()} (since "
    row.update(
        refusal=last_line(text),
        names_holder=holder in text,
        form=error_form(1, text),
        before_writing="extract train" not in text and ends[loser] < ends[winner],
        verify_exit=cli("extract.verify", "--cache", str(out)).code,
        differing=cache_differences(out, reference)[:10],
    )
    row["refused"] = bool(
        row["names_holder"] and row["form"] is None and row["before_writing"]
        and row["verify_exit"] == 0 and not row["differing"]
    )  # fmt: skip
    return row


# ---- 6. skipped samples ------------------------------------------------------------------------
def skipped_entries(cache: Path) -> list[dict]:
    path = cache / "manifest.json"
    splits = json.loads(path.read_text())["splits"] if path.is_file() else {}
    return [e for split in splits.values() for shard in split["shards"] for e in shard["skipped"]]


def nothing_lost(root: Path, reference: Path) -> dict:
    from extract.store import CacheReader

    data, away, out = FOLDER / "data-lost", FOLDER / "away", FOLDER / "lost-cache"
    for folder in (data, away, out):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(root, data)
    away.mkdir()
    metas = [sample["meta"] for sample in CacheReader(reference).split("train", fields=[])]
    images = [metas[2]["image"], metas[26]["image"]]  # in the first and the fourth shard
    expected = sum(meta["image"] in images for meta in metas)
    for image in images:
        (data / image).rename(away / Path(image).name)
    first = cli("extract.run", *extract_args(data, out))
    skipped = skipped_entries(out)
    for image in images:
        (away / Path(image).name).rename(data / image)
    listed = cli("extract.verify", "--cache", str(out), "--inputs", str(data))
    retried = cli("extract.run", *extract_args(data, out, "--retry-skipped"))
    left = skipped_entries(out)
    differing = cache_differences(out, reference)
    return {
        "images_removed": images, "questions_of_them": expected, "first_exit": first.code,
        "skipped": skipped, "said": [line for line in first.out.splitlines() if "skipped" in line],
        "counted": first.code == 0 and len(skipped) == expected
        and all(entry.get("reason") for entry in skipped),
        "verify_inputs": [line for line in listed.out.splitlines() if "retry" in line.lower()],
        "retry_exit": retried.code, "skipped_after_retry": len(left),
        "retried": len(skipped) - len(left) if retried.code == 0 else 0,
        "differing": differing[:10], "identical": retried.code == 0 and not differing,
    }  # fmt: skip


# ---- the run -----------------------------------------------------------------------------------
def tally(key: str, rows: list[dict], passed: str, label: str, summary: list, **details) -> None:
    """Record ``key`` as "n / n" over ``rows`` (each passing when ``row[passed]``)."""
    good = sum(bool(row[passed]) for row in rows)
    failed = [str(row[label]) for row in rows if not row[passed]]
    record(f"faults_{key}", f"{good}/{len(rows)}", COMMAND, torch.device("cpu"),
           {**details, "failed": failed, "rows": rows})  # fmt: skip
    summary.append((f"faults_{key}", f"{good}/{len(rows)}", "; ".join(failed) or "-"))


def reference_cache(root: Path, out: Path) -> list[tuple[str, float]]:
    """The uninterrupted extraction; the files it wrote, in the order they appeared, with when."""
    process = start("extract.run", extract_args(root, out), FOLDER / "logs" / "whole.log")
    order = watch(process, out)
    if process.returncode != 0:
        raise click.ClickException(f"the reference extraction failed: see {FOLDER / 'logs'}")
    return order


@click.command()
@click.option("--kills", default=6, show_default=True, help="Extractions killed and resumed.")
@click.option("--train-kills", default=3, show_default=True, help="Training runs killed.")
@click.option(
    "--writer-trials",
    default=4,
    show_default=True,
    help="Trials of two writers (in the last the second starts once the first holds the lock).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the kill points.")
def main(kills: int, train_kills: int, writer_trials: int, seed: int) -> None:
    """Kills, damaged caches, bad inputs, two writers and skipped samples, with the real CLIs."""
    rng, summary, seconds = random.Random(seed), [], {}
    clock = time.perf_counter()
    shutil.rmtree(FOLDER, ignore_errors=True)
    data, reference, run = FOLDER / "data", FOLDER / "whole-cache", FOLDER / "train-whole"
    must(cli("extract.synthetic", "--out", str(data), "--train", "24", "--val", "8", "--test",
             "8", "--shifted", "8"), "extract.synthetic")  # fmt: skip
    order = reference_cache(data / "vqa", reference)
    group = json.loads((reference / "manifest.json").read_text())["groups"][0]["name"]

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        print(f"  ({name}: {seconds[name]} s)", flush=True)

    lap("reference_extraction")
    killed = extraction_kills(data / "vqa", reference, order, kills, rng)
    tally("extract_kill_identical", killed.pop("trials"), "identical", "after_files", summary,
          **killed, seed=seed)  # fmt: skip
    lap("extract_kills")
    trained = training_kills(reference, train_kills, rng)
    tally("train_kill_identical", trained.pop("trials"), "identical", "epoch", summary,
          **trained, seed=seed)  # fmt: skip
    lap("train_kills")
    rows = damaged_caches(reference, group)
    for tool in ("verify", "train", "train_full"):
        mine = [
            {k: v for k, v in row.items() if k in ("damage", "file") or k.startswith(tool + "_")}
            for row in rows
        ]
        tally(f"damage_caught_{tool}", mine, f"{tool}_caught", "damage", summary)
    lap("damages")
    rows = try_bad_inputs(bad_inputs(data, reference, run))
    tally("bad_input_clear", rows, "clear", "input", summary)
    lap("bad_inputs")
    rows = [two_writers(data / "vqa", reference, i == writer_trials - 1)
            for i in range(writer_trials)]  # fmt: skip
    tally("concurrent_writers_refused", rows, "refused", "exits", summary)
    lap("writers")
    lost = nothing_lost(data / "vqa", reference)
    expected = lost["questions_of_them"]
    value = f"counted {len(lost['skipped']) if lost['counted'] else 0}/{expected}, "
    value += f"retried {lost['retried'] if lost['identical'] else 0}/{expected}"
    record("faults_skipped_retried", value, COMMAND, torch.device("cpu"), lost)
    summary.append(("faults_skipped_retried", value, "-" if lost["identical"] else "not identical"))
    lap("skipped")
    print(f"\n{'figure':<36}{'measured':<30}failed")
    for key, value, failed in summary:
        print(f"{key:<36}{value:<30}{failed}")
    print(f"\n{sum(seconds.values()):.0f} s in all: {seconds}")


if __name__ == "__main__":
    main()
