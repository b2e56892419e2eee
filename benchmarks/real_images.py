"""``python -m benchmarks.real_images``: the extraction on photo-sized JPEGs (the other scripts use
the 64 px synthetic scenes, 10-50 times smaller than COCO's or VCR's photos).

Data, generated here (seeded; kept in ``shards/bench/data/real-<N>`` for the next run): N JPEGs
at quality 90, alternately 640 x 480 and 500 x 375 (COCO's two commonest shapes), 60-150 KB
each as COCO's are: a coloured 1/f background, flat shapes with sharp edges, fine texture whose
strength varies over the image, sensor grain. A ``pairs`` dataset: ``train.csv`` gives each
image one caption; ``train10x.csv`` lists each image ten times with ten captions, under ten
names (the file and nine hard links to it: the extraction groups records by image name, and a
batch of ten captions per image would hold a tenth of the images, so less image work and a
lower peak than the 1x run's; distinct names keep every batch's work the same).

* ``fast_decode_cosine``: the lowest cosine, over the first ``--vit-samples`` images, between
  the pooled image embeddings of an open_clip ViT-B/16 (random weights) from the exact decoding
  and from ``--fast-decode``'s (the loader's own ``RecordImages``); the mean, the grid's and the
  trained EfficientNet-Lite0's (every image) are in the details.
* ``fast_decode_speedup``: the loader's time to read, decode and resize every image to 224 px,
  exact over fast (each side the fastest of ``--repeats`` + 1 interleaved passes).
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

import csv
import io
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image, ImageDraw

from benchmarks.common import DATA, WORK, Extraction, per_second, pick_device, record
from benchmarks.extraction import forward_batches, time_forward
from extract.plan import DEFAULT_STUDENT_INPUT, DEFAULT_TEACHERS
from extract.store.atomic import write_bytes_atomic

COMMAND = "python -m benchmarks.real_images"
SIZES = ((640, 480), (500, 375))  # (width, height), alternately
QUALITY = 90
DETAIL = 24.0  # the fine texture's strength: 640 x 480 files of about 120 KB at quality 90
COPIES = 10  # records per image in train10x.csv
VIT = "openclip:ViT-B-16:random"
WORDS = (
    ("a", "one", "the", "a small", "a large", "an old"),
    ("red", "white", "striped", "wooden", "blue", "muddy", "shiny", "green"),
    ("dog", "bus", "kite", "pizza", "bicycle", "giraffe", "laptop", "boat", "clock"),
    ("standing", "parked", "lying", "sitting", "waiting", "shown"),
    ("next to", "on top of", "in front of", "under", "beside", "behind"),
    ("a tree", "the road", "a table", "the beach", "a fence", "a building", "the water"),
)


def image_shape(index: int) -> tuple[int, int]:
    return SIZES[index % len(SIZES)]


def random_field(rng: np.random.Generator, height: int, width: int, alpha: float, low: float = 0):
    """Noise with a 1/f^alpha amplitude spectrum (photos: alpha about 1-2), unit std; no
    frequency below ``low`` cycles per pixel."""
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
    radius[0, 0] = 1.0
    envelope = radius**-alpha * (radius >= low)
    envelope[0, 0] = 0.0
    noise = rng.standard_normal((2, *radius.shape))
    values = np.fft.irfft2((noise[0] + 1j * noise[1]) * envelope, s=(height, width))
    return values / values.std()


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like image: detail at every scale, edges, smooth and busy regions, grain."""
    rng = np.random.default_rng(seed)
    lum, red, blue = (random_field(rng, height, width, 1.8) for _ in range(3))
    mix = np.stack([lum + 0.35 * red, lum - 0.2 * red + 0.2 * blue, lum - 0.35 * blue], -1)
    image = Image.fromarray(np.clip(rng.uniform(80, 170, 3) + 40 * mix, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(6, 14)):  # objects
        corner = rng.uniform(-0.1, 1.0, 2) * (width, height)
        extent = rng.uniform(0.05, 0.4, 2) * (width, height)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((*corner, *(corner + extent)), fill=color)
        else:
            corners = rng.uniform(0, 1, (5, 2)) * extent + corner
            draw.polygon([tuple(point) for point in corners], fill=color)
    busy = 1 / (1 + np.exp(-2.5 * random_field(rng, height, width, 2.5)))  # 0..1, smooth
    texture = random_field(rng, height, width, 1.8, low=0.05) * (0.25 + 1.75 * busy)
    pixels = np.asarray(image, dtype=np.float64) + DETAIL * texture[..., None]
    pixels += rng.normal(0, 3.0, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def photo_jpeg(index: int, seed: int = 0) -> bytes:
    """Image ``index`` of the set as a JPEG file (the same bytes for the same libjpeg)."""
    buffer = io.BytesIO()
    photo(*image_shape(index), seed=seed * 1_000_003 + index).save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def caption(index: int, number: int) -> str:
    """Caption ``number`` of image ``index``: a short COCO-like sentence."""
    rng = np.random.default_rng((index, number))
    article, colour, noun, pose, where, place = (words[rng.integers(len(words))] for words in WORDS)
    return f"{article} {colour} {noun} {pose} {where} {place}"


def photo_dataset(images: int) -> Path:
    """The ``pairs`` dataset of ``images`` photos (generated once; the 10x table is written
    last, so its presence means the set is whole)."""
    root = DATA / f"real-{images}"
    if (root / "train10x.csv").is_file():
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for index in range(images):
        write_bytes_atomic(root / image_path(index), photo_jpeg(index))
        for copy in range(1, COPIES):
            link = root / image_path(index, copy)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            os.link(root / image_path(index), link)
    for name, count in (("train.csv", 1), ("train10x.csv", COPIES)):
        rows = [(image_path(i, n), caption(i, n)) for i in range(images) for n in range(count)]
        write_bytes_atomic(root / name, csv_table(rows).encode())
    print(f"  generated {images} photos in {time.perf_counter() - started:.1f} s", flush=True)
    return root


def image_path(index: int, copy: int = 0) -> str:
    """The image's file (``copy`` 0) or one of its hard links."""
    folder = "images" if copy == 0 else f"copies/{copy}"
    return f"{folder}/{index:05d}.jpg"


def csv_table(rows: list[tuple[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "caption"])
    writer.writerows(rows)
    return buffer.getvalue()


def shape_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def file_sizes(root: Path, images: int) -> dict:
    """KB (1,000 bytes) of the files, per shape: min, mean, max."""
    sizes: dict[str, list[float]] = {}
    for index in range(images):
        kb = (root / image_path(index)).stat().st_size / 1000
        sizes.setdefault(shape_name(image_shape(index)), []).append(kb)
    return {
        shape: {"count": len(kb), "min_kb": round(min(kb), 1),
                "mean_kb": round(float(np.mean(kb)), 1), "max_kb": round(max(kb), 1)}
        for shape, kb in sizes.items()
    }  # fmt: skip


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
        from extract.datasets import open_dataset
        from extract.loader import RecordImages, image_key
        from extract.plan import make_plan

        adapter = open_dataset("pairs", self.root())
        records = list(adapter.records(self.splits[0]))[:count]
        plan = make_plan(self.config(device).plan, adapter.num_texts, has_boxes=False)
        for encoder in plan.encoders:
            encoder.to(device)
        keys = [image_key(encoder.preprocess) for encoder in (plan.image, plan.student)]
        dataset = RecordImages(adapter, records, 0, keys, fast_decode=self.fast_decode)
        return plan, [dataset[i] for i in range(len(dataset))]


def image_loader(setup: PhotoExtraction, plan, fast: bool, count: int | None = None):
    """The extraction's loader (``RecordImages``) over the first ``count`` images (all: None)."""
    from extract.datasets import open_dataset
    from extract.loader import RecordImages, image_key

    adapter = open_dataset("pairs", setup.root())
    records = list(adapter.records("train"))[:count]
    keys = [image_key(encoder.preprocess) for encoder in (plan.image, plan.student)]
    return RecordImages(adapter, records, 0, keys, fast_decode=fast)


def decode_seconds(dataset) -> dict[str, float]:
    """Seconds, per shape, to read, decode and resize each image of the loader's dataset."""
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


def decode_speedup(setup: PhotoExtraction, plan, passes: int) -> tuple[float, dict]:
    """Exact over fast decoding of every image (each shape's fastest of ``passes`` interleaved
    passes of each mode: other work on a shared machine only ever slows a pass down)."""
    best: dict[bool, dict[str, float]] = {False: {}, True: {}}
    for _ in range(passes):
        for fast in (False, True):
            for name, seconds in decode_seconds(image_loader(setup, plan, fast)).items():
                best[fast][name] = min(best[fast].get(name, float("inf")), seconds)
    exact, fast = best[False], best[True]
    images = len(image_loader(setup, plan, False))
    details = {
        "exact_s": {name: round(s, 3) for name, s in exact.items()},
        "fast_s": {name: round(s, 3) for name, s in fast.items()},
        "by_shape": {name: round(exact[name] / fast[name], 3) for name in exact},
        "exact_ms_per_image": round(1000 * sum(exact.values()) / images, 2),
        "fast_ms_per_image": round(1000 * sum(fast.values()) / images, 2),
        "images": images,
        "passes": passes,
        "to": f"{plan.image.preprocess.size} px {plan.image.preprocess.interpolation}",
    }
    return round(sum(exact.values()) / sum(fast.values()), 3), details


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


def efficiency(setup: PhotoExtraction, plan, batches, device, repeats: int) -> tuple[float, dict]:
    """Extraction samples/s over forward samples/s, each side's fastest run, interleaved."""
    forwards = [time_forward(plan, batches, device)]
    runs = []
    for _ in range(repeats):
        runs.append(timed_extraction(setup, device))
        forwards.append(time_forward(plan, batches, device))
    best = min(runs, key=lambda run: run["seconds"])
    forward_rate = per_second(setup.limit, min(forwards))
    return round(best["samples_per_s"] / forward_rate, 3), {
        "forward_only_samples_per_s": round(forward_rate, 2),
        "forward_only_s": [round(seconds, 3) for seconds in forwards],
        "extraction": best,
        "extraction_s": [run["seconds"] for run in runs],
        "decode_share": best["shares"]["read"],
        "teachers": setup.teachers,
        "student_input": setup.student_input,
        "max_text_length": setup.max_text_length,
    }


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
    speedup = decode_speedup(setup, plan, options["repeats"] + 1)
    for encoder in plan.encoders:
        encoder.to(device)
    cosines = embedding_cosines(plan.image, setup, plan, count, device)
    return {
        "speedup": speedup,
        "cosines": cosines,
        "efficiency": efficiency(setup, plan, batches, device, options["repeats"]),
    }


def default_figures(options: dict, device: torch.device) -> dict:
    """The default teachers': efficiency (and once with --fast-decode), effnet's cosines."""
    images = options["images"]
    setup = PhotoExtraction("real-default", images=images, limit=images)
    plan, batches = forward_batches(setup, images, options["batch_size"])
    for encoder in plan.encoders:
        encoder.to(device)
    cosines = embedding_cosines(plan.image, setup, plan, images, device)
    ratio, details = efficiency(setup, plan, batches, device, options["repeats"])
    fast = timed_extraction(replace(setup, name="real-default-fast", fast_decode=True), device)
    fast["efficiency"] = round(fast["samples_per_s"] / details["forward_only_samples_per_s"], 3)
    details["with_fast_decode_one_run"] = fast
    return {"cosines": cosines, "efficiency": (ratio, details)}


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
    speedup, details = vit["speedup"]
    record("fast_decode_speedup", speedup, command, device, {**details, "data": data})
    ratio, details = vit["efficiency"]
    record("extract_efficiency_real", ratio, command, device, {**details, "data": data})
    ratio, details = default["efficiency"]
    record("extract_efficiency_real_default", ratio, command, device, {**details, "data": data})
    growth, details = memory_growth(images, options["memory_samples"], options["device"])
    record("extract_memory_growth", growth, command, device, details)
    print(f"{time.perf_counter() - started:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
