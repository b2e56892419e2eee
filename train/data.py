"""Cache -> batches: subsets (low-shot, metadata filters), datasets, and collation.

A whole training split is streamed (shards in sequence, a seeded shuffle buffer); a subset
(low-shot fraction or a metadata filter) is read by key. Evaluation reads by key in stored order.
Decoding a sample is ``np.load`` of small arrays: no teacher, no image.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from extract.store import CacheReader, StreamingDataset
from train.distributed import ONE_PROCESS, World, rank_part
from train.tasks import TaskSpec
from train.text_inputs import TeacherTokens, gold_rows, stack

Where = list[tuple[str, str]]


def parse_where(items: tuple[str, ...] | list[str]) -> Where:
    """``source=lsmdc`` -> ``[("source", "lsmdc")]``; samples match when every pair equals."""
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"filter {item!r} is not KEY=VALUE (e.g. source=lsmdc)")
        pairs.append((name, value))
    return pairs


def matches(meta: dict, where: Where) -> bool:
    return all(str(meta.get(name)) == value for name, value in where)


def read_metas(cache: CacheReader, split: str) -> list[tuple[str, dict]]:
    """Every sample's key and json, in stored order (only the json members are read)."""
    return [(s["__key__"], s["meta"]) for s in cache.split(split, fields=[])]


def stratum(task: TaskSpec, meta: dict) -> str:
    return str(meta.get(task.stratify_key))


def low_shot_keys(
    metas, task: TaskSpec, fraction: float | None, count: int | None, seed: int
) -> list[str]:
    """A stratified, seeded subset: the same keys for every method at the same seed.

    Each stratum (label, or VQA answer type) keeps its share of the subset (largest remainder),
    at least one sample; the order within a stratum is a permutation seeded by ``seed``.
    """
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for key, meta in metas:
        by_stratum[stratum(task, meta)].append(key)
    total = len(metas)
    wanted = count if count is not None else max(1, round(total * fraction))
    if wanted > total or (fraction is not None and not 0 < fraction <= 1):
        flag = f"--train-count {count}" if count is not None else f"--train-fraction {fraction}"
        raise ValueError(f"{flag} asks for more than the {total} training samples")
    quotas = {name: wanted * len(keys) / total for name, keys in by_stratum.items()}
    taken = {name: max(1, math.floor(q)) for name, q in quotas.items()}
    spare = sorted(quotas, key=lambda name: (taken[name] - quotas[name], name))
    for name in spare[: max(0, wanted - sum(taken.values()))]:
        taken[name] += 1
    rng = random.Random(seed)
    chosen = []
    for name in sorted(by_stratum):
        keys = list(by_stratum[name])
        rng.shuffle(keys)
        chosen += keys[: min(taken[name], len(keys))]
    order = {key: i for i, (key, _) in enumerate(metas)}
    return sorted(chosen, key=order.__getitem__)


class KeyedSamples(Dataset):
    """Samples of a split by key; the reader is opened in each DataLoader worker."""

    def __init__(
        self,
        cache_dir: Path,
        split: str,
        keys: list[str],
        fields: list[str],
        group: str | None = None,
    ):
        self.cache_dir, self.split, self.keys, self.fields = cache_dir, split, keys, fields
        self.group = group
        self._reader = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict:
        if self._reader is None:
            cache = CacheReader(self.cache_dir, group=self.group)
            self._reader = cache.split(self.split, self.fields)
        return self._reader[self.keys[index]]


@dataclass
class Collate:
    """Samples -> tensors. Targets of the gold candidate of each group are picked here.

    ``text`` decides how the student reads the texts (the cached ids, or its own tokenizer);
    ``visual_count`` names the field that counts a sample's real visual tokens (regions).
    Samples whose key is in ``unlabelled`` (the distillation pool) are collated as if they had
    no label: no task target, and each group's first candidate text is the one distilled, so
    their labels never reach training.
    """

    task: TaskSpec
    visual_field: str
    target_fields: tuple[str, ...] = ()
    text: object = field(default_factory=TeacherTokens)
    visual_count: str | None = None
    unlabelled: frozenset[str] = frozenset()

    def __call__(self, samples: list[dict]) -> dict:
        text = self.text.inputs(samples)
        batch = {
            "keys": [s["__key__"] for s in samples],
            "metas": [s["meta"] for s in samples],
            "visual": stack(samples, self.visual_field),
            "token_ids": text["token_ids"],
            "token_len": text["token_len"],
        }
        if self.visual_count is not None:
            counts = stack(samples, self.visual_count).reshape(-1, 1)
            batch["visual_mask"] = torch.arange(batch["visual"].shape[1])[None] < counts
        metas = [self.visible(s) for s in samples]
        labels = [[self.label(meta, g) for g in self.task.groups] for meta in metas]
        batch["labels"] = torch.tensor(labels)  # [B, G]; -1 where the label is hidden (test)
        gold = torch.tensor([self.gold(meta) for meta in metas])
        batch["gold"] = gold  # [B, G] candidate index of each group's gold text
        if self.unlabelled:
            batch["labelled"] = torch.tensor([s["__key__"] not in self.unlabelled for s in samples])
        if self.task.kind == "soft_score":
            batch["soft"] = torch.stack([self.task.soft_targets(meta) for meta in metas])
        for name in self.target_fields:
            if name == "txt_tok":  # per candidate, in the student's tokens
                batch[name], valid = self.text.token_targets(samples, gold, text)
                if valid is not None:
                    batch["txt_tok_valid"] = valid
            elif name == "txt_emb":  # per candidate: keep each group's gold one
                batch[name] = gold_rows(stack(samples, name).float(), gold)
            else:
                batch[name] = stack(samples, name).float()
        if "zeroshot" in samples[0]:
            batch["zeroshot"] = stack(samples, "zeroshot").float()
        return batch

    def inputs_only(self) -> Collate:
        """The same collation without targets (evaluation reads only the student's inputs)."""
        return Collate(self.task, self.visual_field, (), self.text, self.visual_count)

    def visible(self, sample: dict) -> dict:
        """A sample's json as training may see it: without labels for pool samples."""
        if sample["__key__"] not in self.unlabelled:
            return sample["meta"]
        hidden = {g.label_key for g in self.task.groups} | {"targets", "answers", "label"}
        return {k: v for k, v in sample["meta"].items() if k not in hidden}

    def gold(self, meta: dict) -> list[int]:
        """Each group's gold candidate (absolute index); its first one where labels are hidden."""
        if self.task.kind != "multiple_choice":
            return [group.start for group in self.task.groups]
        return [group.start + max(self.label(meta, group), 0) for group in self.task.groups]

    def label(self, meta: dict, group) -> int:
        if self.task.kind == "soft_score":
            return -1  # the soft targets carry the labels
        value = meta.get(group.label_key)
        return -1 if value is None else int(value)


class PooledBatches:
    """Batches of ``batch_size`` labelled samples (a seeded shuffle of ``labelled``, the epoch's
    length) each joined by as many unlabelled ones from the pool (indices ``labelled`` onwards,
    a seeded shuffle per epoch, wrapping around when the pool is the smaller).

    Under DDP ``batch_size`` is the global batch; each rank takes its part of both halves."""

    def __init__(
        self, labelled: int, pool: int, batch_size: int, seed: int, epoch: int,
        world: World = ONE_PROCESS,
    ):  # fmt: skip
        self.labelled, self.pool, self.batch_size = labelled, pool, batch_size
        self.seed = seed * 1000 + epoch
        self.world = world

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.labelled, generator=generator).tolist()
        pool = (self.labelled + torch.randperm(self.pool, generator=generator)).tolist()
        for number, start in enumerate(range(0, self.labelled, self.batch_size)):
            batch = order[start : start + self.batch_size]
            offset = number * self.batch_size
            joined = [pool[(offset + i) % len(pool)] for i in range(len(batch))]
            yield rank_part(batch, self.world) + rank_part(joined, self.world)

    def __len__(self) -> int:
        return math.ceil(self.labelled / self.batch_size)


class RankBatches:
    """DDP's keyed batches: the seeded permutation a one-process run shuffles with, cut into
    global batches of ``batch_size``, of which each rank takes its part (as many batches on
    every rank, so no rank waits for the others at the end of an epoch)."""

    def __init__(self, count: int, batch_size: int, seed: int, epoch: int, world: World):
        self.count, self.batch_size, self.world = count, batch_size, world
        self.seed = seed * 1000 + epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        # a DataLoader draws its workers' base seed from the generator before its sampler
        # shuffles: drawing it too gives the one-process run's order (a test holds us to it)
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        order = torch.randperm(self.count, generator=generator).tolist()
        for start in range(0, self.count, self.batch_size):
            yield rank_part(order[start : start + self.batch_size], self.world)

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)


def train_loader(
    cache_dir,
    split,
    keys,
    full_split: bool,
    fields,
    collate,
    batch_size,
    workers,
    seed,
    epoch,
    pool: list[str] | None = None,
    world: World = ONE_PROCESS,
    group: str | None = None,
):
    """Stream the whole split, or read a subset by key (with the column group ``group``);
    shuffled with ``seed`` and ``epoch``.
    With a ``pool`` (``--distill-pool all``) every batch also holds as many pool samples.
    ``batch_size`` is per rank: under DDP a global batch holds ``batch_size x world.size``."""
    global_batch = batch_size * world.size
    if pool:
        dataset = KeyedSamples(Path(cache_dir), split, keys + pool, fields, group)
        sampler = PooledBatches(len(keys), len(pool), global_batch, seed, epoch, world)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate)
    if full_split:
        stream = StreamingDataset(
            cache_dir, split, fields, as_float32=False, shuffle=True, seed=seed,
            rank=world.rank, world_size=world.size, group=group,
        )  # fmt: skip
        stream.set_epoch(epoch)
        return DataLoader(stream, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    dataset = KeyedSamples(Path(cache_dir), split, keys, fields, group)
    if world.distributed:
        sampler = RankBatches(len(keys), global_batch, seed, epoch, world)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate)
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        num_workers=workers,
        collate_fn=collate,
    )


def batches_per_epoch(
    count: int, full_split: bool, batch_size: int, workers: int, world: World, shard_counts=()
) -> int:
    """How many batches each rank reads in an epoch (the learning-rate schedule's unit)."""
    if full_split and world.distributed:
        return StreamingDataset.batches_per_rank(shard_counts, batch_size, workers, world.size)
    batches = math.ceil(count / (batch_size * world.size))
    if full_split and workers > 1:  # each streaming worker ends with its own partial batch
        batches += workers - 1
    return batches


def eval_loader(cache_dir, split, keys, fields, collate, batch_size, workers, group=None):
    dataset = KeyedSamples(Path(cache_dir), split, keys, fields, group)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate
    )
