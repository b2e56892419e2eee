"""``python -m extract.run`` end to end on tiny datasets in the released formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from extract.extraction import ExtractConfig, run_extraction
from extract.pipeline import LoopOptions, free_cores
from extract.plan import PlanOptions
from extract.run import main as run_cli
from extract.store import CacheReader, ShardLimits, verify_cache
from tests.extract.fixtures import WRITERS, write_snli_ve

COUNTS = {
    "snli_ve": {"train": 5, "dev": 2},
    "vcr": {"train": 4, "val": 2, "test": 1},
    "vqa": {"train": 5, "val": 4, "test": 2},
    "pairs": {"train": 4, "val": 2},
}
FAST = [
    "--student-input",
    "pixels:16@64",
    "--batch-size",
    "3",
    "--workers",
    "0",
    "--shard-samples",
    "3",
]


def run(args: list[str]):
    result = CliRunner().invoke(run_cli, args)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(COUNTS))
def test_offline_teachers_on_each_format(tmp_path, dataset):
    root = WRITERS[dataset](tmp_path / "data", COUNTS[dataset])
    out = tmp_path / "cache"
    extra = ["--dataset-option", "min_answer_count=1"] if dataset == "vqa" else []
    extra += ["--overlap"] if dataset == "pairs" else []  # a writer thread beside CPU teachers
    result = run(
        ["--dataset", dataset, "--root", str(root), "--out", str(out), "--no-index", *FAST, *extra]
    )
    assert result.exit_code == 0, result.output
    assert "written" in result.output
    report = verify_cache(out)
    assert report.ok, report.problems
    cache = CacheReader(out)
    fields = cache.fields
    num_texts = 8 if dataset == "vcr" else 1
    assert fields["img_emb"].shape == (1280,) and fields["img_grid"].shape == (49, 1280)
    assert fields["txt_emb"].shape == (num_texts, 384) and fields["txt_tok"].shape == (
        num_texts,
        64,
        384,
    )
    assert fields["pixels"].shape == (16, 768) and fields["pixels"].storage == "uint8"
    assert "zeroshot" not in fields  # effnet-lite0 and minilm share no space
    # forced for pairs; otherwise the default: in line unless cores are free beside the teachers
    assert cache.manifest.runtime["overlapped"] == (dataset == "pairs" or free_cores() > 0)
    expected = dict(COUNTS[dataset])
    if dataset == "vcr":
        expected["test"] *= 4  # one record per candidate answer on the hidden-label split
        assert fields["regions"].shape == (16, 1280)
        sample = next(iter(cache.split("train")))
        assert sample["region_count"].tolist() == [2]
        assert np.allclose(sample["region_boxes"][1], [0, 0, 20 / 64, 20 / 48])
        assert not sample["regions"][2:].any() and sample["regions"][:2].any()
    assert {s: len(cache.split(s)) for s in cache.splits} == expected
    train = list(CacheReader(out, as_float32=True).split("train"))
    assert np.allclose(
        cache.shared("mean_img_emb"), np.mean([s["img_emb"] for s in train], axis=0), atol=1e-6
    )
    real_tokens = [s["txt_tok"][c, : int(n)] for s in train for c, n in enumerate(s["token_len"])]
    assert np.allclose(cache.shared("mean_txt_tok"), np.concatenate(real_tokens).mean(0), atol=1e-5)
    assert cache.manifest.spec.dataset["inputs"]  # annotation files fingerprinted
    first = next(iter(cache.split(cache.splits[0])))
    assert first["meta"]["texts"] and first["token_len"][0] > 2
    # each real token between [CLS] and [SEP] has its characters in the stored text
    spans, length = first["token_spans"][0], int(first["token_len"][0])
    words = [first["meta"]["texts"][0][a:b] for a, b in spans[1 : length - 1]]
    assert all(words) and not spans[length - 1 :].any() and tuple(spans[0]) == (0, 0)
    if dataset == "vqa":
        vocab = cache.shared("answer_vocab")
        assert set(vocab) >= {"red", "green", "blue", "yellow"}
        assert cache.shared("answer_emb").shape == (len(vocab), 384)


def write_tiny_clip(directory):
    import open_clip

    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 4,
            "layers": 1,
        },
    }
    path = directory / "tiny-clip.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    torch.manual_seed(3)
    model = open_clip.create_model("tiny-clip")
    checkpoint = directory / "tiny-clip.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    return f"openclip:{path}@{checkpoint}", model.eval()


def test_tiny_open_clip_cache_equals_encode_image(tmp_path):
    root = write_snli_ve(tmp_path, {"train": 4})
    teacher, model = write_tiny_clip(tmp_path)
    out = tmp_path / "cache"
    args = ["--dataset", "snli_ve", "--root", str(root), "--out", str(out), "--teachers", teacher]
    result = run(
        [
            *args,
            "--storage",
            "fp32",
            "--no-index",
            *FAST[:2],
            "--workers",
            "0",
            "--max-text-length",
            "16",
        ]
    )
    assert result.exit_code == 0, result.output
    cache = CacheReader(out)
    assert cache.fields["zeroshot"].shape == (1,)
    sample = cache.split("train")["1001.jpg#0r1n"]
    image = (
        Image.open(root / "flickr30k_images" / "1001.jpg")
        .convert("RGB")
        .resize((32, 32), Image.BICUBIC)
    )
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
    mean = torch.tensor(model.visual.preprocess_cfg["mean"]).view(1, 3, 1, 1) * 255
    std = torch.tensor(model.visual.preprocess_cfg["std"]).view(1, 3, 1, 1) * 255
    with torch.inference_mode():
        reference = model.encode_image((pixels - mean) / std)[0].numpy()
        text = model.encode_text(
            __import__("open_clip").get_tokenizer("tiny-clip")(sample["meta"]["texts"])
        )
    assert np.allclose(sample["img_emb"], reference, atol=1e-5)
    assert np.allclose(sample["txt_emb"][0], text[0].numpy(), atol=1e-5)
    cosine = (
        reference @ text[0].numpy() / np.linalg.norm(reference) / np.linalg.norm(text[0].numpy())
    )
    assert np.isclose(sample["zeroshot"][0], model.logit_scale.exp().item() * cosine, atol=1e-4)


class StopAfter:
    """A progress bar that interrupts the extraction after ``batches`` batches."""

    def __init__(self, batches: int):
        self.left = batches

    def __call__(self, total, initial, split, bytes_per_sample):
        return self

    def update(self, count):
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt

    def close(self):
        pass


def small_config(root, out, fmt="wds", overlap: bool | None = None) -> ExtractConfig:
    return ExtractConfig(
        dataset="snli_ve",
        root=root,
        out=out,
        format=fmt,
        plan=PlanOptions(student_input="pixels:16@64", max_text_length=16),
        limits=ShardLimits(max_count=2),
        loop=LoopOptions(batch_size=3, workers=0, overlap=overlap),
        build_indices=False,
    )


def tree(directory):
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.mark.slow
@pytest.mark.parametrize("fmt,overlap", [("wds", False), ("wds", True), ("hdf5", False)])
def test_interrupted_extraction_resumes_byte_identical(tmp_path, fmt, overlap):
    # overlap=True: the writer thread a GPU run uses (the whole run in line is the reference)
    root = write_snli_ve(tmp_path / "data", {"train": 7, "dev": 1})
    run_extraction(small_config(root, tmp_path / "whole", fmt))
    with pytest.raises(KeyboardInterrupt):
        run_extraction(small_config(root, tmp_path / "cut", fmt, overlap), StopAfter(batches=1))
    assert not (tmp_path / "cut" / "manifest.json").exists()
    finished = sorted(p.name for p in (tmp_path / "cut" / "train").glob("*.idx.json"))
    assert finished  # at least the first shard was finished before the interruption
    resumed = run_extraction(small_config(root, tmp_path / "cut", fmt, overlap))
    # written once: the resumed run re-encodes the head of its first batch but writes only new ones
    assert resumed.timing["splits"]["train"]["samples"] == 7 - 2 * len(finished)
    assert tree(tmp_path / "cut") == tree(tmp_path / "whole")
    whole = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    cut = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert cut["cache_key"] == whole["cache_key"] and cut["splits"] == whole["splits"]


@pytest.mark.slow
def test_cache_hit_different_config_and_bad_images(tmp_path):
    root = write_snli_ve(tmp_path / "data", {"train": 4})
    (root / "flickr30k_images" / "1002.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "cache"
    args = ["--dataset", "snli_ve", "--root", str(root), "--out", str(out), "--no-index", *FAST]
    failed = run([*args, "--on-error", "fail"])
    assert failed.exit_code == 1
    assert "1002.jpg#0r1c" in failed.output and "--on-error skip" in failed.output
    import shutil

    shutil.rmtree(out)
    first = run(args)
    assert first.exit_code == 0, first.output
    record = CacheReader(out).manifest.splits["train"]
    assert record.num_samples == 3 and [s["key"] for s in record.skipped] == ["1002.jpg#0r1c"]
    before = (out / "manifest.json").read_bytes()
    again = run(args)
    assert again.exit_code == 0 and "cache hit: nothing to do" in again.output
    assert (out / "manifest.json").read_bytes() == before
    other = run([*args, "--storage", "int8"])
    assert other.exit_code == 1
    assert 'fields.img_emb.storage: "fp16" -> "int8"' in other.output


def test_help_explains_every_option():
    result = CliRunner().invoke(run_cli, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--dataset",
        "--teachers",
        "--student-input",
        "--format",
        "--storage",
        "--no-image-tokens",
        "--no-text-tokens",
        "--batch-size",
        "--workers",
        "--device",
        "--overlap",
        "--on-error",
        "--limit",
    ):
        assert option in result.output


@pytest.mark.parametrize("dataset", sorted(COUNTS))
def test_tiny_open_clip_then_verify_and_search(tmp_path, dataset):
    from extract.search import main as search_cli
    from extract.verify import main as verify_cli

    root = WRITERS[dataset](tmp_path / "data", COUNTS[dataset])
    teacher, _ = write_tiny_clip(tmp_path)
    out = tmp_path / "cache"
    extra = ["--dataset-option", "min_answer_count=1"] if dataset == "vqa" else []
    extra += ["--overlap"] if dataset == "pairs" else []  # a writer thread beside CPU teachers
    args = ["--dataset", dataset, "--root", str(root), "--out", str(out), "--teachers", teacher]
    result = run([*args, *FAST, "--max-text-length", "16", *extra])
    assert result.exit_code == 0, result.output
    assert "index train/image: flat" in result.output
    verified = CliRunner().invoke(verify_cli, ["--cache", str(out)])
    assert verified.exit_code == 0 and "OK: every shard matches" in verified.output
    cache = CacheReader(out)
    key = cache.split("train").keys()[1]
    found = CliRunner().invoke(search_cli, ["--cache", str(out), "--key", key, "-k", "2"])
    assert found.exit_code == 0, found.output
    assert found.output.splitlines()[1].split()[2] == key  # the sample itself comes first
    text = next(iter(cache.split("train")))["meta"]["texts"][0]
    found = CliRunner().invoke(search_cli, ["--cache", str(out), "--text", text, "-k", "1"])
    assert found.exit_code == 0, found.output
    assert "texts nearest" in found.output and "images nearest" in found.output  # shared space
    assert text in found.output.splitlines()[1]


@pytest.mark.parametrize("task", ["vcr", "snli_ve", "vqa"])
def test_synthetic_data_extracts_and_verifies(tmp_path, task):
    from extract.datasets.synthetic import GeneratorConfig, generate

    generate(GeneratorConfig(train=8, val=4, test=4, test_shifted=4), tmp_path / "data")
    teacher, _ = write_tiny_clip(tmp_path)
    out = tmp_path / "cache"
    args = [
        "--dataset",
        "synthetic",
        "--dataset-option",
        f"task={task}",
        "--root",
        str(tmp_path / "data"),
    ]
    if task == "vqa":  # 16 questions: no answer is given 9 times
        args += ["--dataset-option", "min_answer_count=1"]
    result = run(
        [
            *args,
            "--out",
            str(out),
            "--teachers",
            teacher,
            *FAST,
            "--max-text-length",
            "16",
            "--no-index",
        ]
    )
    assert result.exit_code == 0, result.output
    report = verify_cache(out)
    assert report.ok, report.problems
    assert set(CacheReader(out).splits) == {
        "train",
        "val" if task != "snli_ve" else "dev",
        "test",
        "test_shifted",
    }


def test_a_second_writer_is_refused_and_a_dead_ones_lock_does_not_block(tmp_path):
    import os
    import socket

    from extract.store.lock import CacheBusy, WriterLock

    root = write_snli_ve(tmp_path / "data", {"train": 3})
    out = tmp_path / "cache"
    with WriterLock(out):  # another writer holds the directory
        with pytest.raises(CacheBusy) as refused:
            run_extraction(small_config(root, out))
    message = str(refused.value)
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message and "since" in message
    assert not (out / "train").exists()  # refused before any shard was touched
    # a writer killed while holding it leaves its name in the file, but not the lock itself
    (out / "writer.lock").write_text('{"pid": 99999, "host": "gone", "started": "then"}')
    result = run_extraction(small_config(root, out))
    assert not result.cache_hit and (out / "writer.lock").read_text() == ""
    assert run_extraction(small_config(root, out)).cache_hit


@pytest.mark.parametrize(
    "option,value", [("--limit", "-1"), ("--batch-size", "0"), ("--shard-samples", "0")]
)
def test_numbers_out_of_range_are_usage_errors(tmp_path, option, value):
    result = run(["--dataset", "vqa", "--root", str(tmp_path), "--out", str(tmp_path / "c"),
                  option, value])  # fmt: skip
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
    assert "Usage:" in result.output
