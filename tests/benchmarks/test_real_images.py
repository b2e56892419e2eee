"""The photos of ``benchmarks.photos`` (``benchmarks.real_images`` measures on them): COCO-sized
JPEGs, the same bytes every run, and a ``pairs`` dataset with one and ten captions per image."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from benchmarks import photos, real_images, run_all
from benchmarks.common import TARGETS
from extract.datasets import open_dataset


@pytest.mark.parametrize("index", range(4))  # both shapes, twice
def test_photos_are_coco_sized_jpegs(index):
    data = photos.photo_jpeg(index)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.size == ((640, 480), (500, 375))[index % 2]
    assert 60_000 <= len(data) <= 150_000, len(data)  # COCO's photos: 60-150 KB


def test_photos_and_captions_are_deterministic():
    assert photos.photo_jpeg(3) == photos.photo_jpeg(3)
    assert photos.photo_jpeg(3) != photos.photo_jpeg(5)  # same shape, other image
    assert photos.photo_jpeg(3, seed=1) != photos.photo_jpeg(3)
    assert photos.caption(7, 2) == photos.caption(7, 2)
    assert len({photos.caption(7, n) for n in range(10)}) == 10


def test_the_dataset_lists_each_image_once_and_ten_times(tmp_path, monkeypatch):
    monkeypatch.setattr(photos, "DATA", tmp_path)
    root = photos.photo_dataset(4)
    adapter = open_dataset("pairs", root)
    assert adapter.splits() == ["train", "train10x"]
    once, ten = list(adapter.records("train")), list(adapter.records("train10x"))
    assert [r.image for r in once] == [f"images/{i:05d}.jpg" for i in range(4)]
    assert [r.image.split("/")[-1] for r in ten] == [
        f"{i:05d}.jpg" for i in range(4) for _ in range(10)
    ]
    assert len({r.image for r in ten}) == 40  # ten names (hard links) per image
    assert len({r.texts[0] for r in ten[:10]}) == 10  # ten captions of one image
    assert (root / "images" / "00002.jpg").read_bytes() == photos.photo_jpeg(2)
    assert (root / ten[29].image).samefile(root / "images" / "00002.jpg")
    sizes = photos.file_sizes(root, 4)
    assert set(sizes) == {"640x480", "500x375"} and sizes["640x480"]["count"] == 2
    assert all(60 <= s["min_kb"] <= s["max_kb"] <= 150 for s in sizes.values())
    stamp = (root / "train10x.csv").stat().st_mtime_ns
    assert photos.photo_dataset(4) == root  # kept: not written again
    assert (root / "train10x.csv").stat().st_mtime_ns == stamp


def test_the_script_is_registered_with_its_targets():
    takes_device, figures = run_all.SCRIPTS["real_images"]
    assert takes_device and "extract_memory_growth" in figures
    assert TARGETS["extract_efficiency_real"] == (">=", 0.9)
    assert TARGETS["extract_memory_growth"] == ("<=", 1.3)
    defaults = {"device": "cpu", "images": 256, "vit_samples": 64, "memory_samples": 128,
                "batch_size": 32, "repeats": 3}  # fmt: skip
    assert real_images.command_line(defaults) == "python -m benchmarks.real_images --device cpu"
    small = {**defaults, "images": 16}
    assert real_images.command_line(small).endswith("--device cpu --images 16")
