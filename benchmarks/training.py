"""``python -m benchmarks.training``: ``cache_speedup`` and ``loader_headroom``.

One student (the demo's: tiny, 64 px images in 16 px patches, 16 tokens, batch 64, ``--distill
mad``) is trained for the same steps on the same samples in three ways:

* from the cache: the trainer's own loader, collate and step (what ``train.run`` does);
* with the teachers run inside each step: the same loop, but the targets (image grid, text
  tokens) come from the teachers' forward passes on the batch, whose images are already decoded
  and resized in memory; a real online trainer would also decode them, so this favours it;
* the step alone, on batches already in memory.

``cache_speedup`` = samples/s from the cache over samples/s with the teachers online, for the
default teachers and (``cache_speedup_vit_b16``) a ViT-B/16-sized open_clip model with random
weights. ``loader_headroom`` = samples/s of the trainer's loader alone (read, decode, collate)
over samples/s of the step alone, for the streamed full split and for a keyed low-shot subset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from benchmarks.common import (
    WORK,
    Extraction,
    per_second,
    pick_device,
    record,
    synchronize,
)

COMMAND = "python -m benchmarks.training"
BATCH = 64


@dataclass
class Setup:
    """A trainer on a cache and everything a timed step needs."""

    trainer: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    means: dict
    keys: list[str]
    full: bool


def make_setup(
    cache: Path, device: torch.device, fraction: float | None = None, student: str = "tiny"
) -> Setup:
    from train.mad import DistillConfig
    from train.setup import make_optimizer
    from train.trainer import TrainConfig, Trainer

    config = TrainConfig(
        cache=cache,
        out=WORK / "runs" / "training",
        distill=DistillConfig(mode="mad", topk=0.5, weight=1.0),
        confidence="none",  # computed once before training either way: not part of a step
        train_fraction=fraction,
        batch_size=BATCH,
        lr=1e-3,
        device=device.type,
        student=student,
    )
    trainer = Trainer(config)
    keys, _, full = trainer.select_train_keys()
    model = trainer.build()
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Setup(trainer, model, optimizer, scheduler, trainer.means(), keys, full)


def loader(setup: Setup, with_targets: bool, epoch: int = 0):
    from train.data import train_loader

    trainer = setup.trainer
    fields = trainer.fields.training if with_targets else trainer.fields.inputs
    collate = trainer.collate() if with_targets else trainer.collate().inputs_only()
    return train_loader(
        trainer.config.cache,
        trainer.config.train_split,
        setup.keys,
        setup.full,
        fields,
        collate,
        BATCH,
        0,
        0,
        epoch,
    )


def batches(setup: Setup, with_targets: bool, count: int):
    """``count`` batches, going round the split as often as needed."""
    produced, epoch = 0, 0
    while True:
        for batch in loader(setup, with_targets, epoch):
            yield batch
            produced += 1
            if produced == count:
                return
        epoch += 1


def step(setup: Setup, batch: dict) -> None:
    from train.evaluation import to_device

    trainer = setup.trainer
    batch = to_device(batch, trainer.device)
    loss, parts = trainer.batch_loss(setup.model, batch, setup.means, {})
    loss.backward()
    trainer.optimizer_step(setup.model, setup.optimizer, setup.scheduler, parts, lambda _: None)


def timed(setup: Setup, source, warmup: int, prepare=None) -> float:
    """Samples/s of ``source``'s batches through ``prepare`` (if any) and a training step."""
    setup.model.train()
    seen, started = 0, None
    for number, batch in enumerate(source):
        if number == warmup:
            synchronize(setup.trainer.device)
            seen, started = 0, time.perf_counter()
        if prepare is not None:
            batch = prepare(batch)
        step(setup, batch)
        seen += len(batch["keys"])
    synchronize(setup.trainer.device)
    return per_second(seen, time.perf_counter() - started)


class OnlineTeachers:
    """Adds the targets a cache would hold to a batch by running the teachers on it."""

    def __init__(self, extraction: Extraction, device: torch.device):
        from extract.loader import image_key

        plan, items = extraction.decoded(extraction.limit, device)
        self.image, self.text, self.device = plan.image, plan.text, device
        size = image_key(plan.image.preprocess)
        self.images = {item.record.key: item.images[size] for item in items}

    def __call__(self, batch: dict) -> dict:
        from extract.encode import autocast

        count, groups = batch["gold"].shape
        rows = torch.arange(count)[:, None]
        ids = batch["token_ids"][rows, batch["gold"]].flatten(0, 1)  # [B*G, L]
        lengths = batch["token_len"][rows, batch["gold"]].flatten()
        images = torch.stack([self.images[key] for key in batch["keys"]])
        with torch.no_grad(), autocast(self.device):  # no_grad: targets enter the loss graph
            grid = self.image.encode(images.to(self.device))["grid"]
            tokens = self.text.encode(ids.to(self.device), lengths.to(self.device))["tokens"]
        batch["img_grid"] = grid.float()
        batch["txt_tok"] = tokens.float().reshape(count, groups, *tokens.shape[1:])
        return batch


def speedup(extraction: Extraction, device: torch.device, cached_steps: int, online_steps: int):
    extraction.run(device)
    cache = WORK / extraction.name
    setup = make_setup(cache, device)
    cached = timed(setup, batches(setup, True, cached_steps + 2), warmup=2)
    online = timed(
        setup,
        batches(setup, False, online_steps + 1),
        warmup=1,
        prepare=OnlineTeachers(extraction, device),
    )
    details = {
        "teachers": extraction.teachers,
        "cached_samples_per_s": round(cached, 2),
        "online_samples_per_s": round(online, 2),
        "timed_steps": {"cached": cached_steps, "online": online_steps},
    }
    return round(cached / online, 2), details, setup


def loader_rate(setup: Setup, count: int) -> float:
    started, seen = time.perf_counter(), 0
    for batch in batches(setup, True, count):
        seen += len(batch["keys"])
    return per_second(seen, time.perf_counter() - started)


def headroom(setup: Setup, cache: Path, device: torch.device, steps: int) -> tuple[float, dict]:
    in_memory = list(batches(setup, True, steps + 2))
    step_rate = timed(setup, in_memory, warmup=2)
    streamed = loader_rate(setup, steps)
    keyed = loader_rate(make_setup(cache, device, fraction=0.25), steps)
    details = {
        "step_samples_per_s": round(step_rate, 2),
        "streamed_loader_samples_per_s": round(streamed, 2),
        "keyed_loader_samples_per_s": round(keyed, 2),
        "streamed_headroom": round(streamed / step_rate, 2),
        "keyed_headroom": round(keyed / step_rate, 2),
    }
    return round(min(streamed, keyed) / step_rate, 2), details


@click.command()
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--steps", default=16, show_default=True, help="Timed steps from the cache.")
@click.option("--online-steps", default=6, show_default=True, help="Timed online steps.")
@click.option("--samples", default=1024, show_default=True, help="Training samples cached.")
@click.option("--skip-vit", is_flag=True, help="Leave out the ViT-B/16-sized teacher.")
def main(device: str, steps: int, online_steps: int, samples: int, skip_vit: bool) -> None:
    """Training from cached targets against the teachers run online, and the loader's margin."""
    torch_device = pick_device(device)
    command = f"{COMMAND} --device {device}"
    default = Extraction(f"train-default-{samples}", limit=samples)
    ratio, details, setup = speedup(default, torch_device, steps, online_steps)
    record("cache_speedup", ratio, command, torch_device, details)
    value, details = headroom(setup, WORK / default.name, torch_device, steps)
    record("loader_headroom", value, command, torch_device, details)
    if not skip_vit:
        vit = Extraction("train-vit-b-16", teachers="openclip:ViT-B-16:random", limit=3 * BATCH)
        ratio, details, _ = speedup(vit, torch_device, steps, 2)
        details["note"] = "open_clip ViT-B-16 with random weights (the cost, not the quality)"
        record("cache_speedup_vit_b16", ratio, command, torch_device, details)


if __name__ == "__main__":
    main()
