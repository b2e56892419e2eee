"""Cached teacher features are the teacher's own: the image embedding an extraction stores equals
what open_clip's ``create_model_and_transforms`` preprocessing (and a transformers CLIP vision
tower with its image processor) gives for the same JPEG, large photos included."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Resize

from extract.store import CacheReader, load_manifest
from tests.extract.fixtures import write_vcr
from tests.extract.test_run import FAST, run, write_tiny_clip

SIDES = (64, 300, 448, 512, 640)  # JPEGs with both sides >= 448 px were decoded at half scale
SHAPES = ((640, 480), (375, 500))  # non-square photos: what --resize crop is for


def photo(side: int, seed: int, height: int | None = None) -> Image.Image:
    """Smooth shapes plus fine noise: detail at every scale, as a photo has."""
    rng = np.random.default_rng(seed)
    height = height or side
    y, x = np.mgrid[0:height, 0:side] / side
    channels = [np.sin(2 * np.pi * (f * x + g * y)) for f, g in rng.uniform(0.5, 6, (3, 2))]
    smooth = (np.stack(channels, -1) + 1) * 110
    noise = rng.normal(0, 18, (height, side, 3))
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
        for number, (width, height) in enumerate(SHAPES):
            name = f"{width}x{height}"
            photo(width, 10 + number, height).save(root / "images" / f"{name}.jpg", quality=90)
            writer.writerow([f"images/{name}.jpg", f"a photo of {name} pixels"])
    return root


def extract(root, out, teacher: str, *extra: str) -> dict[str, np.ndarray]:
    """The cached image embedding of every photo, by its file's name (``448``, ``640x480``)."""
    args = ["--dataset", "pairs", "--root", str(root), "--out", str(out), "--teachers", teacher]
    args += ["--storage", "fp32", "--student-input", "pixels:8@32", "--no-index", "--workers", "0"]
    result = run([*args, *extra])
    assert result.exit_code == 0, result.output
    samples = CacheReader(out, as_float32=True).split("train")
    return {s["meta"]["path"][len("images/") : -len(".jpg")]: s["img_emb"] for s in samples}


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
    cropped = extract(photos, tmp_path / "crop", teacher, "--resize", "crop")
    for width, height in SHAPES:  # CLIP's resize + centre crop, exactly; squashed they differ
        name = f"{width}x{height}"
        with torch.no_grad():
            image = preprocess(Image.open(photos / "images" / f"{name}.jpg"))[None]
            own = model.encode_image(image)[0].numpy()
        assert cosine(cropped[name], own) >= 0.9999, name
        assert np.abs(cached[name] - own).max() > 10 * np.abs(cropped[name] - own).max(), name
    for side in SIDES:
        with torch.no_grad():
            image = preprocess(Image.open(photos / "images" / f"{side}.jpg"))[None]
            own = model.encode_image(image)[0].numpy()
        side = str(side)
        assert cosine(cached[side], own) >= 0.9999, side
        if int(side) >= 448:  # DCT-scaled decoding is not the teacher's pixels (the tiny random
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
        assert cosine(cached[str(side)], own) >= 0.9999, side


def test_crop_cuts_the_student_and_the_boxes_alike(tmp_path):
    root = write_vcr(tmp_path / "data", {"train": 3})
    teacher, _ = write_tiny_clip(tmp_path)
    out = tmp_path / "cache"
    args = ["--dataset", "vcr", "--root", str(root), "--out", str(out), "--teachers", teacher]
    result = run([*args, "--resize", "crop", "--no-index", *FAST])
    assert result.exit_code == 0, result.output
    for sample in CacheReader(out, as_float32=True).split("train"):
        # 64 x 48 frames: the crop is x 8..56; the second box, [0, 0, 20, 20], loses x 0..8
        assert np.allclose(sample["region_boxes"][1], [0, 0, 12 / 48, 20 / 48])
        first = json.loads(
            (root / "vcr1images" / f"{sample['meta']['image'][11:-4]}.json").read_text()
        )
        x1, _, x2, _ = first["boxes"][0][:4]
        assert sample["meta"]["boxes_clipped"] == 1 + (x1 < 8 or x2 > 56)
        image = Image.open(root / sample["meta"]["image"]).convert("RGB")
        crop = np.asarray(CenterCrop(64)(Resize(64, InterpolationMode.BICUBIC)(image)))
        patches = sample["pixels"].reshape(4, 4, 16, 16, 3)  # pixels:16@64: 16 patches of 16 px
        assert np.array_equal(patches.transpose(0, 2, 1, 3, 4).reshape(64, 64, 3), crop)
    assert load_manifest(out).spec.config["resize"] == "crop"
    mixed = run([*args, "--add-teachers", "effnet-lite0:random,minilm:random", *FAST])
    assert mixed.exit_code == 1 and "was extracted with --resize crop" in mixed.output


def test_the_gpu_path_crops_the_same_square():
    from extract.loader import resize, resize_tensor, to_tensor

    image = photo(80, 1, 60)
    for mode in ("squash", "crop"):
        pil = resize(image, 32, "bicubic", mode).int()
        tensor = resize_tensor(to_tensor(image), 32, "bicubic", mode).int()
        assert (pil - tensor).abs().float().mean() < 1.5, mode  # antialiased interpolate vs PIL
    squash, crop = (resize(image, 32, "bicubic", mode).int() for mode in ("squash", "crop"))
    assert (squash - crop).abs().float().mean() > 5
