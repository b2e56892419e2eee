"""``python -m benchmarks.layout``: what the cache layout saves on disk.

Each figure compares a cache as extracted (format 3) with the same cache rewritten the way
format 2 stored it (:func:`rewrite_plain`: every sample its own copy of the per-image fields,
texts padded to ``--max-text-length``), from the same stored values, so only the layout differs.
Default teachers (EfficientNet-Lite0 grid ``49 x 1280`` fp16, MiniLM) and student input
(``pixels:16`` at 224 px).

* ``image_dedup_bytes_ratio``: the per-image fields' bytes (tar headers and padding included) of
  an SNLI-VE-shaped cache: the synthetic SNLI-VE generated with 10 hypotheses per image. Target
  ``<= 1.2 / 10``. The whole cache's ratio is in the details.
* ``ragged_text_bytes_ratio``: bytes per sample of the text fields (``txt_emb``, ``txt_tok``,
  ``token_ids``, ``token_len``, ``token_spans``) of a VCR-shaped cache (the synthetic VCR: 4
  answers and 4 rationales per question) at ``--max-text-length 64``, ragged over padded.
  Target ``<= 0.4``.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from benchmarks.common import DATA, WORK, member_bytes, pick_device, record, shard_files, shards

COMMAND = "python -m benchmarks.layout"
HYPOTHESES_PER_IMAGE = 10
TEXT_FIELDS = ("txt_emb", "txt_tok", "token_ids", "token_len", "token_spans")


def data(images: int) -> Path:
    from extract.datasets.synthetic import GeneratorConfig, generate

    config = GeneratorConfig(
        train=images, val=0, test=0, test_shifted=0, snli_per_image=HYPOTHESES_PER_IMAGE
    )
    out = DATA / f"layout{images}"
    generate(config, out)
    return out


def extract(dataset: str, root: Path, device: torch.device, limit: int) -> Path:
    from extract.extraction import ExtractConfig, run_extraction
    from extract.pipeline import LoopOptions
    from extract.plan import PlanOptions

    out = WORK / f"layout-{dataset}-{limit}"
    config = ExtractConfig(
        dataset=dataset,
        root=root,
        out=out,
        splits=["train"],
        plan=PlanOptions(max_text_length=64),
        limit=limit,
        loop=LoopOptions(device=device),
        build_indices=False,
    )
    run_extraction(config)
    return out


def rewrite_plain(cache: Path) -> Path:
    """The same samples in format 2's layout: per-image fields in every sample, texts padded."""
    from extract.store import CacheBuilder, CacheReader, CacheSpec, FieldSpec

    reader = CacheReader(cache)  # the base and its teachers' group, as one cache
    spec = reader.manifest.spec
    fields = {
        n: FieldSpec(f.name, f.shape, f.storage, f.producer) for n, f in reader.fields.items()
    }
    plain = CacheSpec(spec.format, spec.dataset, fields, spec.task, spec.config, spec.limits)
    out = cache.with_name(cache.name + "-plain")
    builder = CacheBuilder(out, plain)
    if builder.complete:
        return out
    for split in reader.splits:
        with builder.split(split) as writer:
            for sample in reader.split(split):
                meta = {k: v for k, v in sample["meta"].items() if k != "key"}
                writer.write(sample["__key__"], {n: sample[n] for n in fields}, meta)
    builder.finish()
    return out


def file_bytes(cache: Path) -> int:
    return sum(size for _, size in shard_files(cache))


def share(members: dict[str, float], names) -> float:
    return sum(size for kind, size in members.items() if kind[: -len(".npy")] in names)


def image_dedup(device: torch.device, root: Path, images: int) -> None:
    from extract.plan import PER_IMAGE

    cache = extract("snli_ve", root / "snli_ve", device, images * HYPOTHESES_PER_IMAGE)
    plain = rewrite_plain(cache)
    members = {name: member_bytes(c) for name, c in (("dedup", cache), ("plain", plain))}
    per_image = {name: share(m, PER_IMAGE) for name, m in members.items()}
    ratio = per_image["dedup"] / per_image["plain"]
    record(
        "image_dedup_bytes_ratio",
        round(ratio, 4),
        f"{COMMAND} --images {images}",
        device,
        {
            "hypotheses_per_image": HYPOTHESES_PER_IMAGE,
            "samples": sum(shard.count for shard in shards(cache)),
            "per_image_bytes_per_sample": {k: round(v) for k, v in per_image.items()},
            "whole_cache_bytes": {"dedup": file_bytes(cache), "plain": file_bytes(plain)},
            "whole_cache_ratio": round(file_bytes(cache) / file_bytes(plain), 4),
        },
    )


def ragged_text(device: torch.device, root: Path, samples: int) -> None:
    from extract.store import CacheReader

    cache = extract("vcr", root / "vcr", device, samples)
    plain = rewrite_plain(cache)
    members = {name: member_bytes(c) for name, c in (("ragged", cache), ("padded", plain))}
    text = {name: share(m, TEXT_FIELDS) for name, m in members.items()}
    lengths = np.stack([s["token_len"] for s in CacheReader(cache).split("train", ["token_len"])])
    record(
        "ragged_text_bytes_ratio",
        round(text["ragged"] / text["padded"], 4),
        f"{COMMAND} --vcr-samples {samples}",
        device,
        {
            "samples": int(len(lengths)),
            "max_text_length": 64,
            "mean_tokens_per_text": round(float(lengths.mean()), 1),
            "max_tokens_per_text": int(lengths.max()),
            "text_bytes_per_sample": {k: round(v) for k, v in text.items()},
            "whole_cache_ratio": round(file_bytes(cache) / file_bytes(plain), 4),
        },
    )


@click.command()
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--images", default=60, help="Synthetic images (SNLI-VE: 10 samples each).")
@click.option("--vcr-samples", default=200, help="VCR questions (8 texts each).")
def main(device: str, images: int, vcr_samples: int) -> None:
    """Bytes of the format 3 layout against format 2's, on the same stored values."""
    torch_device = pick_device(device)
    root = data(max(images, vcr_samples))  # one VCR question per image
    image_dedup(torch_device, root, images)
    ragged_text(torch_device, root, vcr_samples)


if __name__ == "__main__":
    main()
