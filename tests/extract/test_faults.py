"""Faults while writing a cache: a full disk is one line, leaves no temporary file, and the same
command afterwards resumes to the bytes of an extraction that never failed."""

from __future__ import annotations

import errno
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from extract.inputs import check_inputs
from extract.store import CacheReader, load_manifest
from extract.store.tar_shard import TarShardWriter
from tests.extract.fixtures import write_snli_ve
from tests.extract.test_run import FAST, run, write_tiny_clip

ROOT = Path(__file__).resolve().parents[2]


def cache_files(directory: Path) -> dict[str, bytes]:
    """Every file but the manifest (it holds timings) and the writer's lock."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in ("manifest.json", "writer.lock")
    }


@pytest.fixture(scope="module")
def snli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    root = write_snli_ve(folder / "data", {"train": 9, "dev": 2})
    teacher, _ = write_tiny_clip(folder)
    return root, teacher


def arguments(snli, out: Path) -> list[str]:
    root, teacher = snli
    return [
        "--dataset", "snli_ve", "--root", str(root), "--out", str(out), "--teachers", teacher,
        "--no-index", *FAST,
    ]  # fmt: skip


def test_a_full_disk_is_one_line_and_the_rerun_resumes_to_the_same_bytes(
    tmp_path, snli, monkeypatch
):
    whole = tmp_path / "whole"
    assert run(arguments(snli, whole)).exit_code == 0
    members = []
    real = TarShardWriter._add_member

    def fill_up(self, name, data):
        members.append(name)
        if len(members) > 70:  # two shards are done by then (30 members each: base, group)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, data)

    monkeypatch.setattr(TarShardWriter, "_add_member", fill_up)
    out = tmp_path / "cut"
    failed = run(arguments(snli, out))
    lines = failed.output.strip().splitlines()
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert "no room to write the cache (No space left on device)" in lines[-1]
    assert "a shard needs up to" in lines[-1] and "MiB are free there" in lines[-1]
    assert "run the same command again" in lines[-1]
    assert not list(out.rglob("*.tmp")) and (out / "train" / "train-000001.tar").is_file()
    assert not (out / "manifest.json").exists()
    monkeypatch.setattr(TarShardWriter, "_add_member", real)
    # what a kill -9 in the middle of a write leaves; shard 0 is finished, so its .tmp is only
    # removed by the resume's clean-up, not by writing the shard again
    stray = [out / "train" / "train-000000.tar.tmp", out / "train" / "train-000002.idx.json.tmp"]
    for path in stray:
        path.write_bytes(b"half a shard")
    assert run(arguments(snli, out)).exit_code == 0
    assert not list(out.rglob("*.tmp"))  # removed on resume
    assert cache_files(out) == cache_files(whole)


@pytest.mark.slow
def test_a_file_size_limit_from_the_kernel_is_reported_the_same_way(tmp_path, snli):
    """A real write error from the operating system (RLIMIT_FSIZE: no shard may exceed 20 kB)."""
    launcher = (
        "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
        "sys.argv = ['extract.run', *sys.argv[1:]]; runpy.run_module('extract.run', "
        "run_name='__main__')"
    )
    out = tmp_path / "limited"
    command = [sys.executable, "-c", launcher, *arguments(snli, out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "(File too large)" in last, result.stderr[-2000:]
    assert "ulimit -f" in last
    assert "Traceback" not in result.stderr and not list(out.rglob("*.tmp"))


def test_skipped_samples_are_retried_to_the_bytes_of_a_run_that_never_missed_them(tmp_path):
    root = write_snli_ve(tmp_path / "data", {"train": 9, "dev": 2})
    teacher, _ = write_tiny_clip(tmp_path)
    snli = (root, teacher)
    whole, out = tmp_path / "whole", tmp_path / "cut"
    assert run(arguments(snli, whole)).exit_code == 0
    image = root / "flickr30k_images" / "1004.jpg"  # train position 4: the second shard
    image.rename(tmp_path / "away.jpg")
    first = run(arguments(snli, out))
    assert first.exit_code == 0 and "1 sample(s) skipped" in first.output
    assert "--retry-skipped" in first.output
    assert [s["key"] for s in load_manifest(out).splits["train"].skipped] == ["1004.jpg#0r1n"]
    (tmp_path / "away.jpg").rename(image)
    again = run(arguments(snli, out))  # without the flag: a cache hit, the skip stays
    assert "cache hit" in again.output and len(load_manifest(out).splits["train"].skipped) == 1
    report = check_inputs(out, root)
    assert report.retryable == ["1004.jpg#0r1n"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.tar")}
    retried = run([*arguments(snli, out), "--retry-skipped"])
    assert retried.exit_code == 0, retried.output
    assert cache_files(out) == cache_files(whole)  # shards, offset indices, the means
    one, two = load_manifest(out), load_manifest(whole)
    assert one.cache_key == two.cache_key and one.splits == two.splits
    assert one.groups["openclip-tiny-clip"].splits == two.groups["openclip-tiny-clip"].splits
    rewritten = sorted(
        p.relative_to(out).as_posix() for p in stamps if p.stat().st_mtime_ns != stamps[p]
    )
    assert rewritten == [
        "groups/openclip-tiny-clip/train/train-000001.tar",
        "train/train-000001.tar",
    ]
    assert "cache hit" in run([*arguments(snli, out), "--retry-skipped"]).output


def test_verify_inputs_finds_changed_and_missing_images_and_annotations(tmp_path, snli):
    root, teacher = snli
    data = tmp_path / "data"
    shutil.copytree(root, data)
    out = tmp_path / "cache"
    assert run(arguments((data, teacher), out)).exit_code == 0
    meta = next(iter(CacheReader(out).split("train", fields=[])))["meta"]
    image = data / meta["image"]
    assert meta["image_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert check_inputs(out, data).ok
    Image.open(image).rotate(90).save(image, quality=90)  # edited after extraction
    (data / "flickr30k_images" / "1008.jpg").unlink()
    with open(data / "snli_ve_dev.jsonl", "a") as handle:
        handle.write("\n")
    report = check_inputs(out, data)
    assert report.images == 11 and report.files == 2
    assert report.problems == [
        f"{data / 'snli_ve_dev.jsonl'}: changed since extraction (size or sha256 differs)",
        f"1 image(s) changed since extraction (sha256 differs): {meta['image']}",
        "1 image(s) missing or unreadable: flickr30k_images/1008.jpg",
    ]


def test_the_verify_command_checks_the_inputs_too(tmp_path, snli):
    from extract.verify import main as verify_cli

    root, teacher = snli
    data = tmp_path / "data"
    shutil.copytree(root, data)
    out = tmp_path / "cache"
    assert run(arguments((data, teacher), out)).exit_code == 0
    good = CliRunner().invoke(verify_cli, ["--cache", str(out), "--inputs", str(data)])
    assert good.exit_code == 0 and "OK: every input is the one the cache was extracted from" in (
        good.output
    )
    (data / "flickr30k_images" / "1003.jpg").write_bytes(b"edited")
    bad = CliRunner().invoke(verify_cli, ["--cache", str(out), "--inputs", str(data)])
    assert bad.exit_code == 1
    assert "1 image(s) changed since extraction (sha256 differs): flickr30k_images/1003.jpg" in (
        bad.output
    )


def test_a_refused_second_writer_writes_nothing_first(tmp_path, snli):
    """The lock is taken before the first write: two writers never race on one .tmp name."""
    from extract.store.lock import WriterLock

    out = tmp_path / "cache"
    with WriterLock(out):
        refused = run(arguments(snli, out))
    assert refused.exit_code == 1 and "is being written by" in refused.output
    assert sorted(p.name for p in out.iterdir()) == ["writer.lock"]
