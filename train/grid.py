"""The protocol's grid: students x methods x caches x low-shot fractions x seeds, one training
run (a *cell*) each, run where it is missing.

A method is a named set of ``train.run`` options (``none``, ``naive``, ``mad``, ``mad-pool``, or
any ``NAME=OPTIONS`` the user defines). Methods run on the first cache; control methods also on
every other cache (a ``:random``-teacher extraction, or the main cache's ``:random`` teachers'
column group), where their arm is named ``METHOD@CACHE``.
A cell is finished when its folder holds ``results.json``; an unfinished one resumes from its
``last.pt``. Cells run in worker processes (``--jobs``), each with its share of the CPU threads
and, on a GPU machine, its own GPU (round robin); a worker keeps the libraries loaded between
cells. Each cell holds an exclusive lock on its folder while it trains, so two protocol runs
never train the same cell at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

METHODS = {
    "none": "--distill none",
    "naive": "--distill naive",
    "mad": "--distill mad",
    "mad-pool": "--distill mad --distill-pool all",
}
RESULTS = "results.json"


@dataclass(frozen=True)
class Cell:
    student: str
    method: str
    cache: str  # the cache's name (the first is the one every method runs on)
    control: bool  # a control cache: the arm is METHOD@CACHE
    fraction: float
    seed: int

    @property
    def arm(self) -> str:
        return f"{self.method}@{self.cache}" if self.control else self.method

    def folder(self, out: Path) -> Path:
        student = self.student.replace(":", "-").replace("/", "_")
        return (
            out / "cells" / student / self.arm / f"fraction-{self.fraction:g}" / f"seed-{self.seed}"
        )

    def finished(self, out: Path) -> bool:
        return (self.folder(out) / RESULTS).is_file()


@dataclass
class GridSpec:
    caches: dict[str, Path]  # name -> cache folder; the first is the main one
    students: list[str]
    methods: dict[str, str]  # name -> train.run options
    control_methods: list[str]
    fractions: list[float]
    seeds: list[int]
    train_options: list[str]  # given to every cell (epochs, batch size, splits, ...)
    student_options: dict[str, str] = field(default_factory=dict)  # per student, last: they win
    # cache name -> the column group its cells distil (absent: the cache's first group), so a
    # control can be the :random teachers' group added to the main cache itself
    teachers: dict[str, str] = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        main, *controls = self.caches
        arms = [(method, main, False) for method in self.methods]
        arms += [(method, name, True) for name in controls for method in self.control_methods]
        return [
            Cell(student, method, cache, control, fraction, seed)
            for student in self.students
            for fraction in self.fractions
            for seed in self.seeds
            for method, cache, control in arms
        ]

    def arguments(self, cell: Cell, out: Path) -> list[str]:
        """The ``train.run`` command line of a cell (also what its report shows)."""
        group = self.teachers.get(cell.cache)
        return [
            "--cache", str(self.caches[cell.cache]), *(["--teachers", group] if group else []),
            "--student", cell.student,
            *shlex.split(self.methods[cell.method]), "--train-fraction", f"{cell.fraction:g}",
            "--seed", str(cell.seed), *self.train_options,
            *shlex.split(self.student_options.get(cell.student, "")),
            "--out", str(cell.folder(out)), "--resume",
        ]  # fmt: skip


def parse_student_options(items: list[str], students: list[str]) -> dict[str, str]:
    """``STUDENT=OPTIONS`` -> options given to that student's cells after all the others."""
    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in students:
            raise ValueError(
                f"--student-options {item!r}: write STUDENT=OPTIONS for one of {students}, "
                "e.g. 'visualbert-init:minilm=--lr 1e-4 --lr-new 1e-3'"
            )
        options[name] = value
    return options


def parse_methods(defined: list[str], chosen: list[str]) -> dict[str, str]:
    """The chosen methods' options: built in (:data:`METHODS`) or ``NAME=OPTIONS``."""
    methods = dict(METHODS)
    for item in defined:
        name, sep, options = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--method {item!r}: write NAME=OPTIONS, e.g. 'mad-k8=--topk 8'")
        methods[name.strip()] = options
    unknown = [name for name in chosen if name not in methods]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(methods)}")
    return {name: methods[name] for name in chosen}


@contextmanager
def cell_lock(folder: Path) -> Iterator[bool]:
    """An exclusive lock on the cell's folder; yields False when another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_cell(arguments: list[str], folder: Path) -> str | None:
    """Train one cell in this process (its log in the cell's ``train.log``); the error as one
    line, or None."""
    import click

    from train.run import execute
    from train.run import main as train_command

    with cell_lock(folder) as locked:
        if not locked:
            return "another process is training this cell"
        handler = logging.FileHandler(folder / "train.log")
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            context = train_command.make_context("train.run", list(arguments))
            execute(context.params)
        except (ValueError, FileNotFoundError, KeyError, click.ClickException) as error:
            return f"{type(error).__name__}: {error}"
        finally:
            root.removeHandler(handler)
            handler.close()
    return None


def start_worker(threads: int, devices: list[str], slots) -> None:
    """A worker's share of the machine: CPU threads, and one GPU when there are GPUs (set
    before anything touches CUDA, so the worker sees that GPU alone, as ``cuda``)."""
    import torch

    quiet_logging()
    torch.set_num_threads(threads)
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[slots.get() % len(devices)]


def quiet_logging() -> None:
    """Cells log to their own files; no library progress bars across the protocol's own."""
    from transformers.utils import logging as transformers_logging

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("faiss").setLevel(logging.WARNING)
    transformers_logging.disable_progress_bar()


def run_grid(
    work: list[tuple[list[str], Path]],
    jobs: int,
    devices: list[str],
    on_done: Callable[[Path, str | None], None],
) -> None:
    """Run every ``(arguments, folder)`` in ``jobs`` worker processes (in this one if 1)."""
    if jobs == 1:
        quiet_logging()
        for arguments, folder in work:
            on_done(folder, run_cell(arguments, folder))
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = get_context("spawn")
    slots = context.Manager().Queue()
    for slot in range(jobs):
        slots.put(slot)
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=start_worker, initargs=(threads, devices, slots)
    ) as pool:
        futures = {pool.submit(run_cell, arguments, folder): folder for arguments, folder in work}
        for future in as_completed(futures):
            on_done(futures[future], future.result())
