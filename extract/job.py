"""What one extraction writes: the records of each split in order, the plan (teachers, fields),
the base's spec and the teachers' column group, and the shard plan.

A new cache gets a base (keys, json, the student's inputs) and one column group (the teachers'
fields). ``--add-teachers`` adds another group to a finished cache: the same records in the
same order (the dataset's files must be the ones the cache was made from), the base's shard
plan, and the samples the base skipped skipped alike.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from extract.datasets.base import Record
from extract.loader import Item
from extract.pipeline import image_identity, sample_meta
from extract.plan import BASE_FIELDS, Plan, make_plan, student_input_field
from extract.store import (
    CacheSpec,
    GroupSpec,
    ShardLimits,
    SplitWriter,
    describe_differences,
    load_manifest,
)
from extract.store.atomic import sha256_file
from extract.store.roles import role_by_name

# the settings that shape the base's bytes, and those that shape a teachers' group's
BASE_OPTIONS = ("student_input", "max_regions", "resize")  # student_grid's storage: its field
GROUP_OPTIONS = ("teachers", "storage", "image_tokens", "text_tokens", "max_text_length", "resize")


@dataclass
class Job:
    spec: CacheSpec  # the base
    group: GroupSpec  # the teachers' fields
    plan: Plan  # its fields: those this run writes
    records: dict[str, list[Record]]
    positions: int  # input positions per shard
    adding: bool = False  # the base is finished: only the group is written
    expected_skips: dict[str, dict[str, str]] = field(default_factory=dict)  # split -> key: why

    @property
    def splits(self) -> list[str]:
        return list(self.records)

    @property
    def means_split(self) -> str:
        return means_split(self.splits)


def group_name(teachers: str) -> str:
    """A group's default name, from its teacher ids: ``effnet-lite0,minilm`` ->
    ``effnet-lite0-minilm``, ``openclip:ViT-L-14/openai`` -> ``openclip-vit-l-14-openai``; a
    local file or folder counts by its name (``openclip:/m/tiny.json@/m/tiny.pt`` ->
    ``openclip-tiny``)."""
    labels = []
    for teacher in teachers.split(","):
        source, colon, rest = teacher.strip().partition(":")
        if not colon:
            source, rest = "", source
        rest, _, _ = rest.partition("@")  # a checkpoint's path: in the fingerprint, not the name
        body, random = (
            (rest[: -len(":random")], "random") if rest.endswith(":random") else (rest, "")
        )
        if body.startswith(("/", ".", "~")):
            body = Path(body).stem
        labels.append("-".join(part for part in (source, body, random) if part))
    return re.sub(r"[^a-z0-9]+", "-", "-".join(labels).lower()).strip("-") or "teachers"


def means_split(splits: list[str]) -> str:
    return "train" if "train" in splits else splits[0]


def input_fingerprints(adapter, splits: list[str]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every annotation file, named relative to the dataset root."""
    files = sorted({path for split in splits for path in adapter.input_files(split)})
    root = Path(adapter.root)
    return {
        path.relative_to(root).as_posix(): {
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
        for path in files
    }


def read_records(adapter, splits: list[str], limit: int | None) -> dict[str, list[Record]]:
    records = {split: grouped_by_image(list(adapter.records(split))[:limit]) for split in splits}
    check_unique_keys(records)
    for split, items in records.items():
        if not items:
            files = ", ".join(str(path) for path in adapter.input_files(split))
            raise ValueError(
                f"split {split!r} has no usable record in {files} (an empty file, or every record "
                "left out by the adapter's filters); fix the file, or name the splits to extract "
                "with --split"
            )
    return records


def grouped_by_image(records: list[Record]) -> list[Record]:
    """The records with each image's samples together, at its first sample's place (a stable
    grouping: the order the datasets already give when they list an image's questions
    together), so that a shard stores each image's fields once (:func:`image_identity`)."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(image_identity(record), []).append(record)
    return [record for group in groups.values() for record in group]


def check_unique_keys(records: dict[str, list[Record]]) -> None:
    for split, split_records in records.items():
        seen: set[str] = set()
        for record in split_records:
            if str(record.key) in seen:
                raise ValueError(
                    f"split {split!r}: sample key {record.key!r} occurs twice; keys must be unique"
                )
            seen.add(str(record.key))


def new_cache(config, adapter) -> Job:
    """A base and its first teachers' group, from the command's settings."""
    splits = config.splits or adapter.splits()
    records = read_records(adapter, splits, config.limit)
    has_boxes = any(record.boxes for split in splits for record in records[split][:100])
    plan = make_plan(config.plan, adapter.num_texts, has_boxes)
    base_fields = {n: f for n, f in plan.fields.items() if n in BASE_FIELDS}
    options = {**asdict(config.plan), **decode_setting(config)}
    spec = CacheSpec(
        format=config.format,
        dataset=dataset_spec(config, adapter, splits),
        fields=base_fields,
        task=adapter.task(),
        config={
            **{name: options[name] for name in BASE_OPTIONS},
            **decode_setting(config),
            "student_input_field": student_input_field(plan),
            "splits": splits,
            "limit": config.limit,
            "means_split": means_split(splits),
            "split_roles": split_roles(records, config.split_roles, adapter.task()["name"]),
        },
        limits=config.limits,
    )
    group = group_spec(config, plan, {n: f for n, f in plan.fields.items() if n not in base_fields})
    positions = shard_positions(config.limits, plan, records)
    return Job(spec, group, plan, records, positions)


LABEL_KEY = {"snli_ve": "label", "vcr": "answer_label", "vqa": "answers"}  # by task name


def split_roles(
    records: dict[str, list[Record]], overrides: dict[str, str], task: str
) -> dict[str, dict]:
    """Each split's role (from its name, or ``--split-role``) and whether its labels are known."""
    unknown = sorted(set(overrides) - set(records))
    if unknown:
        raise ValueError(
            f"--split-role names split(s) {unknown}, which the dataset does not give; it gives "
            f"{list(records)}"
        )
    key = LABEL_KEY.get(task)
    return {
        split: {
            "role": overrides.get(split) or role_by_name(split),
            "labels": key is not None and any(r.meta.get(key) is not None for r in items),
        }
        for split, items in records.items()
    }


def add_to_cache(config, adapter) -> Job:
    """A new teachers' group for the finished cache at ``config.out``."""
    try:
        manifest = load_manifest(config.out)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--add-teachers: {config.out} holds no finished cache to add teachers to; extract "
            "it first (the same command without --add-teachers)"
        ) from None
    base = manifest.spec
    splits, limit = base.config["splits"], base.config["limit"]
    differences = describe_differences(base.dataset, dataset_spec(config, adapter, splits))
    if differences:
        raise ValueError(
            f"--add-teachers: the dataset at {config.root} is not the one {config.out} was "
            "extracted from:\n  " + "\n  ".join(differences)
        )
    records = read_records(adapter, splits, limit)
    # no student input: the base has it; the group's plan is the teachers' fields alone
    if config.plan.resize != base.config.get("resize", "squash"):
        raise ValueError(
            f"--add-teachers: {config.out} was extracted with --resize "
            f"{base.config.get('resize', 'squash')}; its teachers must see the same pixels: give "
            "that --resize"
        )
    options = replace(config.plan, max_regions=base.config["max_regions"])
    plan = make_plan(options, adapter.num_texts, "region_boxes" in base.fields)
    plan.fields = {n: f for n, f in plan.fields.items() if n not in BASE_FIELDS}
    plan.student = plan.image
    skips = {
        split: {entry["key"]: entry["reason"] for entry in manifest.splits[split].skipped}
        for split in splits
    }
    positions = manifest.runtime["shard_positions"]
    check_same_records(config.out, manifest, records, positions)
    return Job(base, group_spec(config, plan, plan.fields), plan, records, positions, True, skips)


def check_same_records(out: Path, manifest, records: dict, positions: int) -> None:
    """Before anything is encoded: each of the base's shards holds (written or skipped) the
    samples the dataset gives at its positions, so the group's rows will be the base's."""
    from extract.store.atomic import read_json

    for split, record in manifest.splits.items():
        keys = [str(r.key) for r in records[split]]
        for number, shard in enumerate(record.shards):
            index = read_json(out / shard.index.name)
            held = index["keys"] + [entry["key"] for entry in index["skipped"]]
            planned = keys[number * positions : (number + 1) * positions]
            if sorted(held) != sorted(planned):
                raise ValueError(
                    f"--add-teachers: {out} shard {shard.index.name} holds other samples than "
                    f"the dataset at {split!r} positions {number * positions} to "
                    f"{number * positions + len(planned)} gives now; extract the cache again"
                )


def dataset_spec(config, adapter, splits: list[str]) -> dict[str, Any]:
    return {
        "adapter": adapter.name,
        "options": config.dataset_options,
        "inputs": input_fingerprints(adapter, splits),
        "image_fingerprints": "sha256",  # each sample's json holds its image file's sha256
    }


def decode_setting(config) -> dict[str, str]:
    """How the images were decoded: it changes the pixels, so it is part of the key."""
    if config.loop.device_decode:
        if config.loop.fast_decode:
            raise ValueError("--fast-decode applies to PIL decoding: give --decode cpu with it")
        return {"image_decode": "torchvision decode_jpeg on the GPU, antialiased interpolate"}
    if config.loop.fast_decode:
        return {"image_decode": "PIL; JPEG DCT-scaled to at least the largest size; resize"}
    return {"image_decode": "PIL at full resolution; resize"}


def group_spec(config, plan: Plan, fields: dict) -> GroupSpec:
    options = asdict(config.plan)
    return GroupSpec(
        name=config.group or group_name(config.plan.teachers),
        fields=fields,
        config={
            **{name: options[name] for name in GROUP_OPTIONS},
            **decode_setting(config),
            "teachers": [plan.image.id, plan.text.id],
            "shared_space": plan.shared_space,
            "text_vocab_size": plan.text.vocab_size,
        },
    )


def shard_positions(limits: ShardLimits, plan: Plan, records: dict[str, list[Record]]) -> int:
    """Input positions per shard: ``--shard-samples``, fewer when the largest sample (fields and
    json) times that many would pass ``--shard-mib``. Fixed before anything is encoded, so shards
    are ranges of positions any process can write (:class:`extract.store.ShardPlan`)."""
    fields = sum(spec.bytes_per_sample for spec in plan.fields.values())
    meta = max(
        (
            len(SplitWriter.meta_bytes(record.key, sample_meta(Item(0, record, None, None), plan)))
            for split_records in records.values()
            for record in split_records
        ),
        default=0,
    )
    return max(1, min(limits.max_count, limits.max_bytes // (fields + meta)))
