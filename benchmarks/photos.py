"""Photo-like JPEGs for the benchmarks, generated at bench time (seeded: the same bytes for the
same libjpeg), and a ``pairs`` dataset of them (``benchmarks/real_images.py`` measures the
extraction on it).

Each image is alternately 640 x 480 or 500 x 375 (COCO's two commonest shapes), at quality 90,
60-150 KB as COCO's files are: a coloured 1/f background, flat shapes with sharp edges, fine
texture whose strength varies over the image (smooth and busy regions), sensor grain.
``train.csv`` gives each image one caption; ``train10x.csv`` lists each image ten times with ten
captions, under ten names (the file and nine hard links to it): the extraction groups records
by image name, so ten captions of one name would make a batch hold a tenth of the images (less
image work, a lower memory peak than the 1x run's); distinct names keep every batch's work the
same.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.common import DATA
from extract.store.atomic import write_bytes_atomic

SIZES = ((640, 480), (500, 375))  # (width, height), alternately
QUALITY = 90
DETAIL = 24.0  # the fine texture's strength: 640 x 480 files of about 120 KB at quality 90
COPIES = 10  # records per image in train10x.csv
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
