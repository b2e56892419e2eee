"""``python -m extract.run``: run frozen teachers once over a dataset and write a feature cache."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from extract.datasets import ADAPTERS
from extract.plan import DEFAULT_STUDENT_INPUT, DEFAULT_TEACHERS
from extract.store import ShardLimits

if TYPE_CHECKING:  # torch and the pipeline load in main: --help answers at once
    import torch

    from extract.extraction import ExtractConfig, ExtractResult


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(
            "no CUDA device is available; use --device cpu", param_hint="--device"
        )
    return torch.device(name)


def parse_dataset_options(pairs: tuple[str, ...]) -> dict:
    """``min_answer_count=9`` -> ``{"min_answer_count": 9}`` (ints when they parse)."""
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--dataset-option")
        options[name] = int(value) if value.lstrip("-").isdigit() else value
    return options


def parse_split_roles(items: tuple[str, ...]) -> dict[str, str]:
    from extract.store.roles import parse_roles

    try:
        return parse_roles(items)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--split-role") from None


class Progress:
    """A tqdm bar in samples, with samples/s and the projected size of the split."""

    def __init__(self, total: int, initial: int, split: str, bytes_per_sample: int):
        self.bar = tqdm(
            total=total, initial=initial, desc=f"extract {split}", unit="sample", dynamic_ncols=True
        )
        self.bar.set_postfix_str(f"projected {bytes_per_sample * total / 2**20:.1f} MiB")

    def update(self, count: int) -> None:
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


def summary(result: ExtractResult, out: Path, group: str) -> str:
    manifest = result.manifest
    state = "cache hit: nothing to do" if result.cache_hit else "written"
    lines = [f"cache {out}  key {manifest.cache_key[:16]}  ({state})"]
    lines.append(f"column groups: {', '.join(manifest.groups)}; this run's: {group}")
    timing = result.timing
    columns = ("samples", "skipped", "read s", "encode s", "write s", "samples/s", "MiB")
    lines.append(f"{'split':<14}" + "".join(f"{name:>10}" for name in columns))
    for split, record in manifest.splits.items():
        t = timing.get("splits", {}).get(split, {})
        shards = record.shards + [
            shard for g in manifest.groups.values() for shard in g.splits[split].shards
        ]
        size = sum(shard.file.bytes for shard in shards) / 2**20  # the base and every group
        busy = t.get("busy_s", 0) or 0
        rate = t.get("samples", 0) / busy if busy else 0
        values = (record.num_samples, len(record.skipped), t.get("read_s", 0), t.get("encode_s", 0))
        values += (t.get("write_s", 0), rate, size)
        lines.append(
            f"{split:<14}"
            + "".join(f"{v:>10}" if isinstance(v, int) else f"{v:>10.1f}" for v in values)
        )
    for name, info in manifest.groups[group].indices.items():
        recall = info.get("recall_at_10")
        lines.append(
            f"index {name}: {info.get('kind')} over {info.get('n')} vectors, recall@10 {recall}"
        )
    skipped = sum(len(record.skipped) for record in manifest.splits.values())
    if skipped:
        lines.append(
            f"{skipped} sample(s) skipped (listed in the manifest with the reason); once their "
            "images are restored, the same command with --retry-skipped adds them"
        )
    return "\n".join(lines)


def group_of(config: ExtractConfig) -> str:
    from extract.job import group_name

    return config.group or group_name(config.plan.teachers)


@click.command(context_settings={"show_default": True})
@click.option(
    "--dataset",
    type=click.Choice(sorted(ADAPTERS)),
    required=True,
    help="Dataset format of --root.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Dataset folder, as downloaded.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Cache folder to write (e.g. shards/vcr).",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    help="Split to extract (repeatable); default: every split present.",
)
@click.option(
    "--teachers",
    default=DEFAULT_TEACHERS,
    help="Image and text teacher ids, comma-separated (one open_clip/hf CLIP id gives both). "
    "Add :random for the control teacher.",
)
@click.option(
    "--student-input",
    default=DEFAULT_STUDENT_INPUT,
    help="The student's visual input: pixels:P[@S] patches, or an image encoder id "
    "whose grid is stored.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["wds", "hdf5"]),
    default="wds",
    help="WebDataset tar shards or HDF5 shards.",
)
@click.option(
    "--storage",
    type=click.Choice(["fp16", "int8", "fp32"]),
    default="fp16",
    help="Storage of teacher features (int8: one scale per vector).",
)
@click.option(
    "--no-image-tokens",
    is_flag=True,
    help="Do not store the teacher's image grid (only pooled embeddings).",
)
@click.option(
    "--no-text-tokens", is_flag=True, help="Do not store the teacher's per-token text states."
)
@click.option(
    "--max-text-length",
    type=click.IntRange(min=2),
    default=64,
    help="Tokens per candidate text (longer texts are truncated).",
)
@click.option(
    "--max-regions",
    type=click.IntRange(min=1),
    default=16,
    help="Boxes per image pooled into region features (datasets with boxes).",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=32, help="Samples per teacher batch."
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="DataLoader workers decoding images [default when overlapped: up to 4 (on a CPU, the "
    "free cores), else 0].",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    help="Where the teachers run.",
)
@click.option(
    "--overlap/--no-overlap",
    default=None,
    help="Decode and write beside the teachers (workers, a writer thread) [default: when they "
    "run on a GPU, or on a CPU with cores free beside their threads (torch.get_num_threads()); "
    "else they would share the teachers' cores].",
)
@click.option(
    "--decode",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default="auto",
    help="Where JPEGs are decoded and resized: gpu (nvJPEG, in batches, beside the teachers), "
    "cpu (PIL, in --workers); auto: gpu when the teachers run on one. The two give slightly "
    "different pixels, so different caches.",
)
@click.option(
    "--resize",
    type=click.Choice(["squash", "crop"]),
    default="squash",
    help="How images become the encoders' squares, for the teachers and the student alike: "
    "squash (the whole image; grid cells and student patches cover the same parts) or crop "
    "(CLIP's shorter-side resize and centre crop: open_clip's exact features on non-square "
    "images; the ends of the longer side are cut, and boxes clipped).",
)
@click.option(
    "--fast-decode",
    is_flag=True,
    help="Decode JPEGs at a reduced DCT scale (1/2, 1/4 or 1/8, as long as both sides stay at "
    "least the teacher's size) before resizing: faster on large photos, but not the teacher's "
    "own pixels (BENCHMARKS.md gives the cosine to the exact features); in the cache key.",
)
@click.option(
    "--on-error",
    type=click.Choice(["skip", "fail"]),
    default="skip",
    help="An unreadable image: skip it (counted in the manifest) or stop.",
)
@click.option(
    "--retry-skipped",
    is_flag=True,
    help="On a finished cache: read the skipped samples' images again and, for those that read "
    "now (restored or repaired), write their shards again, in every part of the cache; the "
    "result is the cache an extraction that never missed them gives.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Only the first N samples of each split (quick trials).",
)
@click.option(
    "--shard-samples", type=click.IntRange(min=1), default=1000, help="Samples per shard at most."
)
@click.option("--shard-mib", type=click.IntRange(min=1), default=512, help="MiB per shard at most.")
@click.option(
    "--dataset-option",
    "dataset_options",
    multiple=True,
    help="Adapter option NAME=VALUE, e.g. min_answer_count=9 (vqa), "
    "on_invalid_label=skip (snli_ve).",
)
@click.option(
    "--split-role",
    "split_roles",
    multiple=True,
    metavar="SPLIT=ROLE",
    help="What a split is for: train, val (model selection) or test (held out: never trained "
    "on or used for selection). By default from the name: train*, val* or dev*, and any other "
    "name is test.",
)
@click.option("--no-index", is_flag=True, help="Skip building the FAISS indices.")
@click.option(
    "--add-teachers",
    default=None,
    metavar="IDS",
    help="Add these teachers (ids as for --teachers) to the finished cache at --out as a new "
    "column group; the base and the groups already there are not touched. Give the same "
    "--dataset and --root as the cache was extracted with.",
)
@click.option(
    "--group",
    default=None,
    help="Name of the teachers' column group [default: from their ids, e.g. "
    "effnet-lite0-minilm]; train.run --teachers NAME picks it.",
)
def main(**options) -> None:
    """Run the frozen teachers once over every image and text of a dataset and write a feature
    cache (shards, manifest, FAISS indices) that training runs reuse. Re-running the same command
    does nothing; an interrupted run resumes at the missing shards. Under torchrun every rank
    writes its share of the shards (the same cache whatever the number of ranks)."""
    import torch

    from extract.extraction import ExtractConfig, run_extraction
    from extract.pipeline import LoopOptions
    from extract.plan import PlanOptions
    from extract.store.world import start, stop

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = pick_device(options["device"])
    if options["decode"] == "gpu" and device.type != "cuda":
        raise click.BadParameter(
            "--decode gpu needs the teachers on a GPU (--device cuda)", param_hint="--decode"
        )
    world = start(device.type, "gloo")  # under torchrun: join the job; each rank takes its GPU
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    config = ExtractConfig(
        dataset=options["dataset"],
        root=options["root"],
        out=options["out"],
        splits=list(options["splits"]) or None,
        plan=PlanOptions(
            teachers=options["add_teachers"] or options["teachers"],
            student_input=options["student_input"],
            storage=options["storage"],
            image_tokens=not options["no_image_tokens"],
            text_tokens=not options["no_text_tokens"],
            max_text_length=options["max_text_length"],
            max_regions=options["max_regions"],
            resize=options["resize"],
        ),
        format=options["fmt"],
        limit=options["limit"],
        dataset_options=parse_dataset_options(options["dataset_options"]),
        limits=ShardLimits(options["shard_samples"], options["shard_mib"] << 20),
        loop=LoopOptions(
            options["batch_size"],
            options["workers"],
            device,
            options["on_error"],
            options["overlap"],
            options["decode"],
            options["fast_decode"],
        ),
        build_indices=not options["no_index"],
        group=options["group"],
        add_teachers=options["add_teachers"] is not None,
        retry_skipped=options["retry_skipped"],
        split_roles=parse_split_roles(options["split_roles"]),
    )
    try:
        result = run_extraction(config, Progress)
    except (ValueError, FileNotFoundError) as error:  # bad input or state: one line, exit 1
        click.echo(f"error: {error}", err=True)  # (usage errors exit 2 with click's usage line;
        sys.exit(1)  # anything else is a bug and keeps its traceback)
    finally:
        stop()
    if world.main:
        click.echo(summary(result, config.out, group_of(config)))


if __name__ == "__main__":
    main()
