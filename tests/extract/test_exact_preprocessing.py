"""Cached teacher features are the teacher's own: the image embedding an extraction stores equals
what open_clip's ``create_model_and_transforms`` preprocessing (and a transformers CLIP vision
tower with its image processor) gives for the same JPEG, large photos included."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from extract.store import CacheReader, load_manifest
from tests.extract.test_run import run, write_tiny_clip

SIDES = (64, 300, 448, 512, 640)  # JPEGs with both sides >= 448 px were decoded at half scale


def photo(side: int, seed: int) -> Image.Image:
    """Smooth shapes plus fine noise: detail at every scale, as a photo has."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    channels = [np.sin(2 * np.pi * (f * x + g * y)) for f, g in rng.uniform(0.5, 6, (3, 2))]
    smooth = (np.stack(channels, -1) + 1) * 110
    noise = rng.normal(0, 18, (side, side, 3))
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "caption"])
        for number, side in enumerate(SIDES):
            photo(side, number).save(root / "images" / f"{side}.jpg", quality=90)
            writer.writerow([f"images/{side}.jpg", f"a photo of {side} pixels"])
    return root


def extract(root, out, teacher: str, *extra: str) -> dict[str, np.ndarray]:
    """The cached image embedding of every photo, by its side."""
    args = ["--dataset", "pairs", "--root", str(root), "--out", str(out), "--teachers", teacher]
    args += ["--storage", "fp32", "--student-input", "pixels:8@32", "--no-index", "--workers", "0"]
    result = run([*args, *extra])
    assert result.exit_code == 0, result.output
    samples = CacheReader(out, as_float32=True).split("train")
    return {int(s["meta"]["path"].split("/")[1][:-4]): s["img_emb"] for s in samples}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_open_clip_features_equal_its_own_preprocessing(tmp_path, photos):
    import open_clip

    teacher, _ = write_tiny_clip(tmp_path)
    config, checkpoint = teacher.removeprefix("openclip:").split("@")
    model, _, preprocess = open_clip.create_model_and_transforms("tiny-clip", checkpoint)
    model.eval()
    cached = extract(photos, tmp_path / "exact", teacher)
    fast = extract(photos, tmp_path / "fast", teacher, "--fast-decode")
    for side in SIDES:
        with torch.no_grad():
            image = preprocess(Image.open(photos / "images" / f"{side}.jpg"))[None]
            own = model.encode_image(image)[0].numpy()
        assert cosine(cached[side], own) >= 0.9999, side
        if side >= 448:  # DCT-scaled decoding is not the teacher's pixels (the tiny random
            # model barely tells them apart; BENCHMARKS.md measures a real-size one)
            assert np.abs(fast[side] - own).max() > 10 * np.abs(cached[side] - own).max(), side
    decode = [
        load_manifest(tmp_path / name).spec.config["image_decode"] for name in ("exact", "fast")
    ]
    assert decode == [
        "PIL at full resolution; resize",
        "PIL; JPEG DCT-scaled to at least the largest size; resize",
    ]


def test_a_transformers_clip_tower_equals_its_image_processor(tmp_path, photos):
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    from train.students.hf import packaged_minilm

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 30522},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    folder = tmp_path / "tiny-hf-clip"
    model.save_pretrained(folder)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    processor.save_pretrained(folder)
    AutoTokenizer.from_pretrained(packaged_minilm()).save_pretrained(folder)
    cached = extract(photos, tmp_path / "cache", f"hf:{folder}")
    for side in SIDES:
        pixels = processor(
            images=Image.open(photos / "images" / f"{side}.jpg"), return_tensors="pt"
        )
        with torch.no_grad():
            own = model.get_image_features(**pixels).pooler_output[0].numpy()  # projected
        assert cosine(cached[side], own) >= 0.9999, side
