"""The trainer trusts nothing it reads: a changed byte or a NaN in the cache stops a run with one
line and no success artifacts, on one process and across ranks."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from extract.store import CacheReader, check_files, files_read
from extract.store import verify as verify_module
from tests.train.test_distributed import options, torchrun
from tests.train.tiny_cache import build
from train.distributed import World
from train.guard import NonFiniteError, nonfinite_loss, nonfinite_value, stop_on
from train.run import main as train_cli

SUCCESS = ("results.json", "report.md", "best.pt", "curves.png")


def flip_lowest_bit(shard: Path, member_suffix: str = "img_emb.npy") -> None:
    """Flip the lowest mantissa bit of the first value of the shard's first such member: the
    value stays finite, so only the checksum can tell."""
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(member_suffix))
    data = bytearray(shard.read_bytes())
    data[member.offset_data + 128] ^= 1  # after the 128-byte .npy header; little-endian float32
    shard.write_bytes(data)


def train(cache: Path, out: Path, *extra: str):
    arguments = ["--cache", str(cache), "--out", str(out), "--epochs", "2", "--batch-size", "16"]
    return CliRunner().invoke(train_cli, [*arguments, "--device", "cpu", *extra])


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and result.exception is not None, result.output
    assert lines[-1].startswith("error: ") and "Traceback" not in result.output
    return lines[-1]


def test_a_changed_byte_stops_the_run_when_read_or_before_training_with_full(tmp_path):
    cache = build(tmp_path / "cache")
    flip_lowest_bit(cache / "train" / "train-000002.tar")
    for mode in ("read", "off"):  # a member is checked against its CRC-32 whenever it is read
        line = one_error_line(train(cache, tmp_path / mode, "--check-cache", mode))
        assert "train/train-000002.tar: sample 'train-32', member 'img_emb.npy': its bytes " in line
        assert "differ from their CRC-32" in line and "python -m extract.verify" in line
        assert not any((tmp_path / mode / name).exists() for name in SUCCESS)
    line = one_error_line(train(cache, tmp_path / "full", "--check-cache", "full"))
    assert "train/train-000002.tar: sha256 differs from the manifest" in line
    assert not any((tmp_path / "full" / name).exists() for name in (*SUCCESS, "last.pt"))
    # a run that never reads the damaged field is not stopped by it: no distillation, no img_emb
    assert train(cache, tmp_path / "none", "--distill", "none").exit_code == 0


def test_a_damaged_member_read_by_a_dataloader_worker_is_one_line(tmp_path):
    cache = build(tmp_path / "cache")
    flip_lowest_bit(cache / "train" / "train-000001.tar")
    line = one_error_line(train(cache, tmp_path / "run", "--workers", "1"))
    assert "train/train-000001.tar: sample 'train-16', member 'img_emb.npy'" in line, line
    assert "Caught ValueError" not in line


def test_only_the_files_the_run_reads_are_checked(tmp_path):
    cache = build(tmp_path / "cache")
    flip_lowest_bit(cache / "test" / "test-000000.tar")
    result = train(cache, tmp_path / "run", "--eval-split", "val", "--check-cache", "full")
    assert result.exit_code == 0, result.output
    everything = train(cache, tmp_path / "all", "--check-cache", "full")
    assert "test/test-000000.tar" in one_error_line(everything)
    # read as used: evaluating the test split reads the student's inputs, never its img_emb
    assert train(cache, tmp_path / "read").exit_code == 0


def test_files_read_names_the_splits_and_the_group_asked_for(tmp_path):
    cache = CacheReader(build(tmp_path / "cache"))
    names = [record.name for _, record in files_read(cache, ["val"])]
    assert names == [
        "shared/mean_img_emb.npy", "shared/mean_img_grid.npy", "shared/mean_txt_emb.npy",
        "shared/mean_txt_tok.npy", "val/val-000000.tar", "val/val-000000.idx.json",
        "val/val-000001.tar", "val/val-000001.idx.json",
    ]  # fmt: skip
    assert len(files_read(cache)) == 4 + 2 * (4 + 2 + 1)


def test_a_file_found_sound_is_not_read_again_in_the_process(tmp_path, monkeypatch):
    cache = CacheReader(build(tmp_path / "cache"))
    files = files_read(cache, ["test"])
    reads = []
    real = verify_module.sha256_file
    monkeypatch.setattr(verify_module, "sha256_file", lambda p: reads.append(p) or real(p))
    assert check_files(files) == [] and len(reads) == len(files)
    assert check_files(files) == [] and len(reads) == len(files)
    flip_lowest_bit(cache.cache_dir / "test" / "test-000000.tar")  # a new mtime: read again
    assert check_files(files) == ["test/test-000000.tar: sha256 differs from the manifest (the "
                                  "bytes were changed)"]  # fmt: skip


def test_a_nan_with_a_matching_checksum_names_the_sample_and_field(tmp_path):
    cache = build(tmp_path / "cache", poison=("train-7", "txt_tok"))
    line = one_error_line(train(cache, tmp_path / "run"))
    assert line == (
        "error: sample 'train-7' of split 'train': field 'txt_tok' holds NaN or infinite "
        "values; the cache is damaged: check it with python -m extract.verify"
    )
    assert not any((tmp_path / "run" / name).exists() for name in SUCCESS)


def test_nonfinite_values_and_losses_on_hand_built_batches():
    batch = {
        "keys": ["a", "b", "c"],
        "labels": torch.tensor([0, 1, 2]),
        "img_emb": torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]),
        "txt_tok": torch.zeros(3, 2, 4),
    }
    assert nonfinite_value(batch, "train") is None
    batch["txt_tok"][2, 1, 3] = float("inf")
    assert "sample 'c' of split 'train': field 'txt_tok'" in nonfinite_value(batch, "train")
    batch["img_emb"][1, 0] = float("nan")  # the first field in the batch's order is named
    assert "sample 'b' of split 'train': field 'img_emb'" in nonfinite_value(batch, "train")
    assert nonfinite_loss(0.5, 1, 3, ["a"]) is None
    assert nonfinite_loss(float("nan"), 2, 3, ["a"]).startswith(
        "the loss is nan at epoch 2, batch 3 (first sample 'a')"
    )
    stop_on(None, World())
    with pytest.raises(NonFiniteError, match="the loss"):
        stop_on("the loss ...", World())


@pytest.mark.slow
def test_every_rank_stops_when_one_finds_a_nan(tmp_path):
    """The NaN sample reaches one rank only; both stop at the same step, with exit status 1."""
    cache = build(tmp_path / "cache", poison=("train-40", "img_grid"))
    arguments = options(cache, tmp_path / "ddp", 8)
    arguments[arguments.index("--train-count") : arguments.index("--train-count") + 2] = []
    run = torchrun("-m", "train.run", *arguments)
    assert run.returncode != 0
    assert "error: sample 'train-40' of split 'train': field 'img_grid'" in run.stderr
    assert "another rank found non-finite values" in run.stderr
    assert not (tmp_path / "ddp" / "results.json").exists()


def test_a_diverging_run_stops_with_one_line_and_leaves_no_results(tmp_path):
    """A learning rate no float32 weight survives: the loss is not finite, the inputs are."""
    cache = build(tmp_path / "cache")
    out = tmp_path / "run"
    assert train(cache, out, "--epochs", "1").exit_code == 0
    assert all((out / name).exists() for name in SUCCESS)
    line = one_error_line(train(cache, out, "--lr", "1e38"))  # the same --out, now failing
    assert line.startswith("error: the loss is ") and "training diverged" in line, line
    assert not any((out / name).exists() for name in (*SUCCESS, "predictions"))


def test_a_text_only_run_never_reads_the_image_fields(tmp_path):
    """Every img_grid and img_emb member of the training split destroyed: a run that distils
    text alone trains under the default check, since it reads none of them; one that distils
    the image grid stops at the first it reads."""
    cache = build(tmp_path / "cache")
    for shard in sorted((cache / "train").glob("*.tar")):
        index = json.loads(shard.with_suffix(".idx.json").read_text())
        data = bytearray(shard.read_bytes())
        for member in ("img_grid.npy", "img_emb.npy"):
            column = index["members"].index(member)
            for row in index["offsets"]:
                offset, size = row[2 * column : 2 * column + 2]
                data[offset : offset + size] = b"\xff" * size
        shard.write_bytes(bytes(data))
    text_only = ("--distill", "mad", "--branches", "txt", "--confidence", "none")
    assert train(cache, tmp_path / "text", *text_only, "--eval-split", "val").exit_code == 0
    line = one_error_line(
        train(cache, tmp_path / "vis", "--branches", "vis", "--confidence", "none")
    )
    assert "member 'img_grid.npy': its bytes differ from their CRC-32" in line


def test_a_damaged_eval_member_found_after_training_leaves_no_model_or_predictions(tmp_path):
    cache = build(tmp_path / "cache")
    flip_lowest_bit(cache / "test" / "test-000000.tar", "pixels.npy")  # read only at the end
    out = tmp_path / "run"
    line = one_error_line(train(cache, out))
    assert "test/test-000000.tar: sample 'test-0', member 'pixels.npy'" in line, line
    assert (out / "last.pt").is_file()  # training finished; its checkpoint can resume
    assert not any((out / name).exists() for name in (*SUCCESS, "predictions", "best_hf"))
