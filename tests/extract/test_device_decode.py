"""JPEGs decoded in batches where the teachers run (nvJPEG on a GPU): the same logic on the CPU
here (torchvision's libjpeg-turbo), the CUDA path in tests marked ``gpu``."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from extract.datasets.base import Record
from extract.loader import RecordImages, decode_on_device

KEYS = [(224, "bicubic"), (64, "bilinear")]


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Smooth gradients with some noise: photo-like enough for resizing to matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    pixels = pixels + rng.normal(0, 12, pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


class Files:
    """An adapter stand-in: bytes per image name."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def read_image_bytes(self, record: Record) -> bytes:
        return self.files[record.image]


@pytest.fixture
def files() -> Files:
    return Files(
        {
            "big.jpg": encoded(photo(640, 480, 0), "JPEG"),
            "small.jpg": encoded(photo(64, 48, 1), "JPEG"),
            "grey.jpg": encoded(photo(500, 375, 2).convert("L"), "JPEG"),
            "drawing.png": encoded(photo(300, 200, 3), "PNG"),
            "cut.jpg": encoded(photo(640, 480, 4), "JPEG")[:3000],  # header fine, data cut
        }
    )


def items(files: Files, device_decode: bool):
    names = ["big.jpg", "big.jpg", "small.jpg", "grey.jpg", "drawing.png", "cut.jpg"]
    records = [Record(f"k{i}", name, ["q"]) for i, name in enumerate(names)]
    dataset = RecordImages(files, records, 0, KEYS, device_decode)
    return [dataset[i] for i in range(len(records))]


def decode(files: Files, device: torch.device):
    batch = items(files, device_decode=True)
    fallbacks = decode_on_device([item for item in batch if item.error is None], KEYS, device)
    return batch, fallbacks


def test_workers_keep_jpeg_bytes_and_decode_other_formats(files):
    batch = items(files, device_decode=True)
    assert [item.source.dim() for item in batch] == [1, 1, 1, 1, 3, 1]
    assert batch[0].original_size == (640, 480) and batch[4].original_size == (300, 200)
    assert all(item.images is None and item.error is None for item in batch)


def test_device_decoding_gives_the_pixels_of_pil_within_resizing_differences(files):
    batch, fallbacks = decode(files, torch.device("cpu"))
    reference = items(files, device_decode=False)
    assert fallbacks == 1  # the PNG (the cut JPEG is unreadable by both)
    assert batch[5].error is not None and batch[5].images is None
    assert reference[5].error is not None  # skipped either way
    for ours, theirs in zip(batch[:5], reference[:5], strict=True):
        for key in KEYS:
            assert ours.images[key].shape == theirs.images[key].shape == (3, key[0], key[0])
            assert ours.images[key].dtype == torch.uint8
            difference = (ours.images[key].float() - theirs.images[key].float()).abs()
            assert float(difference.mean()) < 2.0, (ours.record.image, key)
    assert batch[0].images is batch[1].images  # one image, decoded once for both questions


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_nvjpeg_decodes_like_the_cpu(files):
    on_gpu, gpu_fallbacks = decode(files, torch.device("cuda"))
    on_cpu, cpu_fallbacks = decode(files, torch.device("cpu"))
    assert gpu_fallbacks == cpu_fallbacks == 1
    for ours, theirs in zip(on_gpu[:5], on_cpu[:5], strict=True):
        for key in KEYS:
            assert ours.images[key].device.type == "cuda"
            difference = (ours.images[key].cpu().float() - theirs.images[key].float()).abs()
            assert float(difference.mean()) < 1.0 and float(difference.max()) <= 16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_an_extraction_with_teachers_on_the_gpu_decodes_there(tmp_path):
    from click.testing import CliRunner

    from extract.run import main as run_cli
    from extract.store import CacheReader, verify_cache
    from tests.extract.fixtures import write_snli_ve

    root = write_snli_ve(tmp_path / "data", {"train": 5, "dev": 2})
    arguments = ["--dataset", "snli_ve", "--root", str(root), "--student-input", "pixels:16@64"]
    arguments += ["--max-text-length", "16", "--no-index", "--device", "cuda"]
    result = CliRunner().invoke(run_cli, [*arguments, "--out", str(tmp_path / "gpu")])
    assert result.exit_code == 0, result.output
    manifest = CacheReader(tmp_path / "gpu").manifest
    assert manifest.runtime["decode"] == "gpu" and "image_decode" in manifest.spec.config
    assert verify_cache(tmp_path / "gpu").ok
    result = CliRunner().invoke(
        run_cli, [*arguments, "--decode", "cpu", "--out", str(tmp_path / "cpu")]
    )
    assert result.exit_code == 0, result.output
    assert CacheReader(tmp_path / "cpu").manifest.cache_key != manifest.cache_key


def test_gpu_decoding_without_a_gpu_is_refused(tmp_path):
    from click.testing import CliRunner

    from extract.run import main as run_cli

    arguments = ["--dataset", "vqa", "--root", str(tmp_path), "--out", str(tmp_path / "c")]
    result = CliRunner().invoke(run_cli, [*arguments, "--device", "cpu", "--decode", "gpu"])
    assert result.exit_code == 2 and "--decode gpu needs the teachers on a GPU" in result.output
