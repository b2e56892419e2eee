"""``python -m benchmarks.students``: ``student_train_samples_per_s`` (reported, no target).

Training throughput from the cache of the offline pretrained student (``visualbert-init:minilm``:
VisualBERT, 6 layers, width 384, its text side copied from the packaged MiniLM), next to the own
``tiny`` student, in the same run: the trainer's own loader, collate and step (``--distill mad``,
batch 64, the demo's cache: 64 px images in 16 px patches, 16 text tokens, so 32 tokens a
sequence). The MiniLM student reads the cached token ids (its tokenizer is the teacher's).
"""

from __future__ import annotations

import click
import torch

from benchmarks.common import WORK, Extraction, pick_device, record
from benchmarks.training import batches, make_setup, timed
from train.students.base import count_parameters

COMMAND = "python -m benchmarks.students"
STUDENTS = ("visualbert-init:minilm", "tiny")


def rate(cache, device: torch.device, student: str, steps: int) -> tuple[float, int]:
    """Samples/s of ``steps`` training steps after 2 warm-up steps, and the parameter count."""
    setup = make_setup(cache, device, student=student)
    value = timed(setup, batches(setup, True, steps + 2), warmup=2)
    return value, count_parameters(setup.model.student)


@click.command()
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--steps", default=8, show_default=True, help="Timed training steps per student.")
@click.option("--samples", default=1024, show_default=True, help="Training samples cached.")
def main(device: str, steps: int, samples: int) -> None:
    """Training samples/s of the offline pretrained student, beside the own tiny one."""
    torch_device = pick_device(device)
    extraction = Extraction(f"train-default-{samples}", limit=samples)
    extraction.run(torch_device)
    rates, sizes = {}, {}
    for student in STUDENTS:
        rates[student], sizes[student] = rate(WORK / extraction.name, torch_device, student, steps)
    pretrained, own = STUDENTS
    details = {
        "samples_per_s": {name: round(value, 1) for name, value in rates.items()},
        "parameters": sizes,
        "pretrained_over_tiny": round(rates[pretrained] / rates[own], 3),
        "batch": 64,
        "tokens_per_sequence": "16 visual + 16 text",
        "timed_steps": steps,
    }
    record(
        "student_train_samples_per_s", round(rates[pretrained], 1), f"{COMMAND} --device {device}",
        torch_device, details,
    )  # fmt: skip


if __name__ == "__main__":
    main()
