"""``python -m benchmarks.real_images``: the extraction on photo-sized JPEGs (the other scripts use
the 64 px synthetic scenes, 10-50 times smaller than COCO's or VCR's photos).

Data: ``benchmarks/photos.py`` (N photo-like JPEGs of 640 x 480 and 500 x 375, 60-150 KB,
generated once into ``shards/bench/data/real-<N>``; one caption each in ``train.csv``, each
image ten times in ``train10x.csv``).

* ``fast_decode_cosine``: the lowest cosine, over the first ``--vit-samples`` images, between
  the pooled image embeddings of an open_clip ViT-B/16 (random weights) from the exact decoding
  and from ``--fast-decode``'s (the loader's own ``RecordImages``); the mean, the grid's and the
  trained EfficientNet-Lite0's (every image) are in the details.
* ``fast_decode_speedup``: the time to decode every image (its bytes in memory), the exact
  decoding (PIL at full size) over ``--fast-decode``'s (each side the fastest of ``--repeats`` +
  1 interleaved passes); the loader's whole read (file, sha256, decoding, resizing to 224 px)
  in the details.
* ``decode_jpeg_speedup``: the same, PIL's decoding over libjpeg-turbo's through
  ``torchvision.io.decode_jpeg`` to a tensor; the details count the images whose pixels are
  identical and give the ratio once that tensor is made a PIL image again (what the exact,
  PIL-resized path would need).
* ``extract_efficiency_real``: as ``extract_efficiency`` (``benchmarks/extraction.py``): samples/s
  of a whole extraction (setup excluded) over samples/s of the teachers' forward passes alone on
  the same inputs; exact decoding, ``openclip:ViT-B-16:random``, the CLI's defaults otherwise
  (``pixels:16`` at 224 px, 64 tokens, indices built). ``extract_efficiency_real_default``: the
  same with the default teachers (``effnet-lite0,minilm``) over every image; the details give
  each stage's share of the time (``read_s`` is reading, decoding and resizing).
* ``extract_memory_growth``: peak RSS of ``python -m extract.run`` (default teachers, FAISS
  indices built) over the first ``10 x --memory-samples`` records of ``train10x`` (the same
  images, each ten times) over that over the first ``--memory-samples`` of ``train``, each in a
  fresh process (``ru_maxrss`` from ``wait4``).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from benchmarks.common import WORK, Extraction, per_second, pick_device, record
from benchmarks.extraction import forward_batches, time_forward
from benchmarks.photos import COPIES, QUALITY, file_sizes, photo_dataset, shape_name
from extract.plan import DEFAULT_STUDENT_INPUT, DEFAULT_TEACHERS

COMMAND = "python -m benchmarks.real_images"
VIT = "openclip:ViT-B-16:random"


@dataclass
class PhotoExtraction(Extraction):
    """An extraction of the photo set's ``pairs`` dataset with the CLI's defaults."""

    images: int = 256
    splits: tuple[str, ...] | None = ("train",)
    student_input: str = DEFAULT_STUDENT_INPUT  # pixels:16 at 224 px
    max_text_length: int = 64
    fast_decode: bool = False

    def root(self) -> Path:
        return photo_dataset(self.images)

    def config(self, device: torch.device, out: Path | None = None):
        config = super().config(device, out)
        loop = replace(config.loop, fast_decode=self.fast_decode)
        if self.fast_decode:  # PIL only (on a GPU the default would be nvJPEG)
            loop = replace(loop, decode="cpu")
        return replace(config, dataset="pairs", loop=loop)

    def decoded(self, count: int, device: torch.device):
        """As :meth:`Extraction.decoded`, from the photos' ``pairs`` dataset."""
        from extract.plan import make_plan

        plan = make_plan(self.config(device).plan, num_texts=1, has_boxes=False)  # pairs: 1
        for encoder in plan.encoders:
            encoder.to(device)
        dataset = image_loader(self, plan, self.fast_decode, count)
        return plan, [dataset[i] for i in range(len(dataset))]


def image_loader(setup: PhotoExtraction, plan, fast: bool, count: int | None = None):
    """The extraction's loader (``RecordImages``) over the first ``count`` images (all: None)."""
    from extract.datasets import open_dataset
    from extract.loader import RecordImages, image_key

    adapter = open_dataset("pairs", setup.root())
    records = list(adapter.records("train"))[:count]
    keys = [image_key(encoder.preprocess) for encoder in (plan.image, plan.student)]
    return RecordImages(adapter, records, 0, keys, fast_decode=fast)


def decoders(largest: int) -> dict:
    """The ways to decode a JPEG's bytes that the figures compare: PIL's decoder (the loader's
    exact path), libjpeg-turbo through ``torchvision.io.decode_jpeg`` to a tensor, the same
    handed to PIL for the exact resize (the form the loader would need), and
    ``--fast-decode``'s (PIL at a reduced DCT scale while both sides stay >= ``largest``)."""
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    def pil(data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGB")

    def turbo(data: bytes) -> torch.Tensor:  # [3, H, W] uint8
        with warnings.catch_warnings():  # torchvision 0.29 deprecates it on every call
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(
                torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB
            )

    def turbo_to_pil(data: bytes) -> Image.Image:
        return Image.fromarray(turbo(data).permute(1, 2, 0).contiguous().numpy())

    def fast(data: bytes) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (largest, largest))
        return image.convert("RGB")

    return {"pil": pil, "decode_jpeg": turbo, "decode_jpeg_to_pil": turbo_to_pil, "fast": fast}


def decode_only(setup: PhotoExtraction, plan, passes: int) -> dict[str, dict[str, float]]:
    """Seconds to decode every photo (its bytes already in memory), per decoder and shape; each
    the fastest of ``passes`` interleaved passes (other work on a shared machine only ever
    slows a pass down)."""
    files = photo_bytes(setup)
    methods = decoders(plan.image.preprocess.size)
    best: dict[str, dict[str, float]] = {name: {} for name in methods}
    for _ in range(passes):
        for name, decode in methods.items():
            this_pass: dict[str, float] = {}
            for shape, data in files:
                started = time.perf_counter()
                decode(data)
                this_pass[shape] = this_pass.get(shape, 0.0) + time.perf_counter() - started
            for shape, seconds in this_pass.items():
                best[name][shape] = min(best[name].get(shape, float("inf")), seconds)
    return best


def photo_bytes(setup: PhotoExtraction) -> list[tuple[str, bytes]]:
    """(shape name, file bytes) of every photo of the set."""
    from extract.datasets import open_dataset

    adapter = open_dataset("pairs", setup.root())
    files = [adapter.read_image_bytes(record) for record in adapter.records("train")]
    return [(shape_name(Image.open(io.BytesIO(data)).size), data) for data in files]


def decode_figures(setup: PhotoExtraction, plan, passes: int) -> dict[str, tuple[float, dict]]:
    """``fast_decode_speedup`` (PIL's exact decoding over --fast-decode's) and
    ``decode_jpeg_speedup`` (PIL's over ``decode_jpeg``'s to a tensor; with the count of photos
    whose pixels are identical, and the ratio once its tensor is a PIL image again), decoding
    alone; the loader's whole read in the details."""
    best = decode_only(setup, plan, passes)
    total = {name: sum(by_shape.values()) for name, by_shape in best.items()}
    files = photo_bytes(setup)
    methods = decoders(plan.image.preprocess.size)
    same = sum(
        np.array_equal(
            np.asarray(methods["pil"](data)), np.asarray(methods["decode_jpeg_to_pil"](data))
        )
        for _, data in files
    )
    common = {
        "ms_per_image": {name: round(1000 * s / len(files), 2) for name, s in total.items()},
        "s_by_shape": {name: {k: round(v, 3) for k, v in by.items()} for name, by in best.items()},
        "images": len(files),
        "passes": passes,
        "timed": "decoding alone, the bytes in memory (no reading, hashing or resizing)",
    }
    fast = {shape: round(best["pil"][shape] / best["fast"][shape], 3) for shape in best["pil"]}
    loader_ratio, loader = loader_read_speedup(setup, plan, passes)
    loader["exact_over_fast"] = loader_ratio
    return {
        "fast": (
            round(total["pil"] / total["fast"], 3),
            {**common, "by_shape": fast, "loader_read_decode_resize": loader},
        ),
        "turbo": (
            round(total["pil"] / total["decode_jpeg"], 3),
            {
                **common,
                "identical_pixels": f"{same}/{len(files)}",
                "pil_over_decode_jpeg_to_pil": round(total["pil"] / total["decode_jpeg_to_pil"], 3),
            },
        ),
    }


def loader_seconds(dataset) -> dict[str, float]:
    """Seconds, per shape, for the loader to read, hash, decode and resize each image."""
    per_shape: dict[str, float] = {}
    for index in range(len(dataset)):
        started = time.perf_counter()
        item = dataset[index]
        seconds = time.perf_counter() - started
        if item.error is not None:
            raise RuntimeError(item.error)
        name = shape_name(item.original_size)
        per_shape[name] = per_shape.get(name, 0.0) + seconds
    return per_shape


def loader_read_speedup(setup: PhotoExtraction, plan, passes: int) -> tuple[float, dict]:
    """The loader's whole read of every image to 224 px, exact over fast (each shape's fastest
    of ``passes`` interleaved passes)."""
    best: dict[bool, dict[str, float]] = {False: {}, True: {}}
    for _ in range(passes):
        for fast in (False, True):
            for name, seconds in loader_seconds(image_loader(setup, plan, fast)).items():
                best[fast][name] = min(best[fast].get(name, float("inf")), seconds)
    exact, fast = best[False], best[True]
    images = len(image_loader(setup, plan, False))
    return round(sum(exact.values()) / sum(fast.values()), 3), {
        "exact_ms_per_image": round(1000 * sum(exact.values()) / images, 2),
        "fast_ms_per_image": round(1000 * sum(fast.values()) / images, 2),
        "by_shape": {name: round(exact[name] / fast[name], 3) for name in exact},
    }


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


def embedding_cosines(encoder, setup: PhotoExtraction, plan, count: int, device) -> dict:
    """Cosines between ``encoder``'s embeddings of the exact and the fast decoding of the first
    ``count`` images, in float32. An image whose fast pixels are the exact ones (no reduced DCT
    scale keeps both sides >= the size asked for) counts as 1 without a forward pass."""
    from extract.loader import image_key

    key = image_key(encoder.preprocess)
    exact_set, fast_set = (image_loader(setup, plan, fast, count) for fast in (False, True))
    pairs = [(exact_set[i], fast_set[i]) for i in range(len(exact_set))]
    differing = [p for p in pairs if not torch.equal(p[0].images[key], p[1].images[key])]
    pooled, grid = [], []
    with torch.inference_mode():
        for start in range(0, len(differing), 16):
            chunk = differing[start : start + 16]
            exact, fast = (
                encoder.encode(torch.stack([pair[side].images[key] for pair in chunk]).to(device))
                for side in (0, 1)
            )
            pooled += cosine(exact["global"], fast["global"]).tolist()
            grid += cosine(exact["grid"], fast["grid"]).mean(-1).tolist()  # per image
    identical = [shape_name(p[0].original_size) for p in pairs if p not in differing]
    everything = pooled + [1.0] * len(identical)
    return {
        "min": round(min(everything), 5),
        "mean": round(float(np.mean(everything)), 5),
        "images": len(pairs),
        "identical_pixels": {name: identical.count(name) for name in sorted(set(identical))},
        "where_pixels_differ": {
            "images": len(pooled),
            "min": round(min(pooled), 5) if pooled else None,
            "mean": round(float(np.mean(pooled)), 5) if pooled else None,
            "grid_cell_mean": round(float(np.mean(grid)), 5) if grid else None,
        },
    }


def timed_extraction(setup: PhotoExtraction, device: torch.device) -> dict:
    """A fresh extraction: its time without its setup, and each stage's share of it."""
    out = WORK / "runs" / setup.name
    shutil.rmtree(out, ignore_errors=True)
    result = setup.run(device, out)
    shutil.rmtree(out, ignore_errors=True)
    timing = result.timing
    seconds = timing["wall_s"] - timing["setup_s"]
    stages = {name: timing["total"][name] for name in ("read_s", "encode_s", "write_s")}
    stages["other_s"] = seconds - sum(stages.values())  # means, indices, manifest
    samples = timing["total"]["samples"]
    return {
        "samples": samples,
        "seconds": round(seconds, 3),
        "samples_per_s": round(per_second(samples, seconds), 2),
        "setup_s": timing["setup_s"],
        "stages_s": {name: round(value, 3) for name, value in stages.items()},
        "shares": {name[:-2]: round(value / seconds, 3) for name, value in stages.items()},
    }


def efficiency(
    setup: PhotoExtraction, plan, batches, device, repeats: int, fast: PhotoExtraction | None = None
) -> tuple[float, dict]:
    """Extraction samples/s over forward samples/s, each side's fastest run, interleaved; and
    the same for ``fast`` (the extraction with --fast-decode), timed in the same loop."""
    forwards = [time_forward(plan, batches, device)]
    runs, fast_runs = [], []
    for _ in range(repeats):
        runs.append(timed_extraction(setup, device))
        if fast is not None:
            fast_runs.append(timed_extraction(fast, device))
        forwards.append(time_forward(plan, batches, device))
    best = min(runs, key=lambda run: run["seconds"])
    forward_rate = per_second(setup.limit, min(forwards))
    details = {
        "forward_only_samples_per_s": round(forward_rate, 2),
        "forward_only_s": [round(seconds, 3) for seconds in forwards],
        "extraction": best,
        "extraction_s": [run["seconds"] for run in runs],
        "decode_share": best["shares"]["read"],
        "teachers": setup.teachers,
        "student_input": setup.student_input,
        "max_text_length": setup.max_text_length,
    }
    if fast_runs:
        fastest = min(fast_runs, key=lambda run: run["seconds"])
        details["with_fast_decode"] = {
            **fastest,
            "efficiency": round(fastest["samples_per_s"] / forward_rate, 3),
            "extraction_s": [run["seconds"] for run in fast_runs],
        }
    return round(best["samples_per_s"] / forward_rate, 3), details


# Runs a command and prints its peak RSS (KiB) and exit code. A child's ru_maxrss starts at its
# parent's RSS when it was forked (Linux keeps the larger of the two across exec), so this
# process's gigabytes of models would be every extraction's floor: a small interpreter in
# between starts the extraction instead, and reads the extraction's own peak from wait4.
PEAK_RSS = """import os, subprocess, sys
with open(sys.argv[1], "w") as log:
    process = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def peak_rss_mib(args: list[str], log: Path) -> float:
    """Peak resident memory of ``python -m extract.run ARGS`` in a fresh process."""
    command = [sys.executable, "-m", "extract.run", *args]
    done = subprocess.run(
        [sys.executable, "-I", "-c", PEAK_RSS, str(log), *command],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_kib, code = (int(word) for word in done.stdout.split())
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}); see {log}")
    return round(peak_kib / 1024, 1)


def memory_growth(images: int, samples: int, device: str) -> tuple[float, dict]:
    """Peak RSS of an extraction of ``train10x`` (10x the records) over ``train``; and, for the
    details, of a one-sample extraction (the interpreter, torch and the teachers)."""
    root = photo_dataset(images)
    runs = {}
    for name, split, limit in (
        ("1x", "train", samples),
        ("10x", "train10x", COPIES * samples),
        ("one_sample", "train", 1),
    ):
        out = WORK / "runs" / f"real-memory-{name}"
        shutil.rmtree(out, ignore_errors=True)
        args = ["--dataset", "pairs", "--root", str(root), "--out", str(out), "--split", split]
        args += ["--limit", str(limit), "--device", device]
        started = time.perf_counter()
        peak = peak_rss_mib(args, out.with_name(out.name + ".log"))
        cache = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
        runs[name] = {"records": limit, "peak_mib": peak, "cache_mb": round(cache / 1e6, 1),
                      "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        shutil.rmtree(out, ignore_errors=True)
    base = runs["one_sample"]["peak_mib"]
    ratio = runs["10x"]["peak_mib"] / runs["1x"]["peak_mib"]
    runs["growth_over_one_sample_ratio"] = round(
        (runs["10x"]["peak_mib"] - base) / max(runs["1x"]["peak_mib"] - base, 0.1), 3
    )
    runs["command"] = "python -m extract.run --dataset pairs ... (defaults: indices built)"
    runs["teachers"] = DEFAULT_TEACHERS
    return round(ratio, 3), runs


def vit_figures(options: dict, device: torch.device) -> dict:
    """The ViT-B/16 teacher's: decoding speed-up, embedding cosines, extraction efficiency."""
    count = options["vit_samples"]
    setup = PhotoExtraction("real-vit", teachers=VIT, images=options["images"], limit=count)
    plan, batches = forward_batches(setup, count, options["batch_size"])
    decoding = decode_figures(setup, plan, options["repeats"] + 1)
    for encoder in plan.encoders:
        encoder.to(device)
    cosines = embedding_cosines(plan.image, setup, plan, count, device)
    return {
        "decoding": decoding,
        "cosines": cosines,
        "efficiency": efficiency(setup, plan, batches, device, options["repeats"]),
    }


def default_figures(options: dict, device: torch.device) -> dict:
    """The default teachers': efficiency (exact and --fast-decode), effnet's cosines."""
    images = options["images"]
    setup = PhotoExtraction("real-default", images=images, limit=images)
    plan, batches = forward_batches(setup, images, options["batch_size"])
    for encoder in plan.encoders:
        encoder.to(device)
    cosines = embedding_cosines(plan.image, setup, plan, images, device)
    fast = replace(setup, name="real-default-fast", fast_decode=True)
    efficiencies = efficiency(setup, plan, batches, device, options["repeats"], fast)
    return {"cosines": cosines, "efficiency": efficiencies}


def command_line(options: dict) -> str:
    defaults = {param.name: param.default for param in main.params}
    changed = [
        f"--{name.replace('_', '-')} {value}"
        for name, value in options.items()
        if value != defaults[name] or name == "device"
    ]
    return " ".join([COMMAND, *changed])


@click.command()
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--images", default=256, show_default=True, help="Photos generated.")
@click.option("--vit-samples", default=64, show_default=True, help="Images of the ViT figures.")
@click.option(
    "--memory-samples", default=128, show_default=True, help="Records of the 1x memory run."
)
@click.option("--batch-size", default=32, show_default=True, help="The extraction's default.")
@click.option("--repeats", default=3, show_default=True, help="Runs of each extraction timed.")
def main(**options) -> None:
    """Fast decoding's error and speed, extraction efficiency and memory on photo-sized JPEGs."""
    started = time.perf_counter()
    device = pick_device(options["device"])
    command = command_line(options)
    images = options["images"]
    data = {"images": file_sizes(photo_dataset(images), images), "jpeg_quality": QUALITY}
    vit = vit_figures(options, device)
    default = default_figures(options, device)
    cosines = {**vit["cosines"], "trained_effnet_lite0": default["cosines"], "teacher": VIT}
    cosines["note"] = "random weights; the trained EfficientNet-Lite0's cosines are beside them"
    record("fast_decode_cosine", cosines["min"], command, device, cosines)
    speedup, details = vit["decoding"]["fast"]
    record("fast_decode_speedup", speedup, command, device, {**details, "data": data})
    speedup, details = vit["decoding"]["turbo"]
    record("decode_jpeg_speedup", speedup, command, device, {**details, "data": data})
    ratio, details = vit["efficiency"]
    record("extract_efficiency_real", ratio, command, device, {**details, "data": data})
    ratio, details = default["efficiency"]
    record("extract_efficiency_real_default", ratio, command, device, {**details, "data": data})
    growth, details = memory_growth(images, options["memory_samples"], options["device"])
    record("extract_memory_growth", growth, command, device, details)
    print(f"{time.perf_counter() - started:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
