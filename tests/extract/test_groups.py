"""Column groups: ``--add-teachers`` writes a new teachers' group beside a finished cache without
touching it, row for row with the base; the trainer picks a group with ``--teachers``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from extract.store import CacheReader, check_files, files_read, verify_cache
from tests.extract.fixtures import write_snli_ve, write_vcr
from tests.extract.test_run import FAST, run, write_tiny_clip

OFFLINE = "effnet-lite0,minilm"


def files(directory) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in ("manifest.json", "writer.lock")
    }


def group_files(directory, group: str) -> dict[str, bytes]:
    """A group's shards and indices (its shared means differ with the base's float rounding
    of nothing: they are compared too)."""
    return {
        name: data
        for name, data in files(directory / "groups" / group).items()
        if not name.startswith("indices/")  # FAISS files hold no fixed bytes order guarantee
    }


@pytest.fixture(scope="module")
def vcr_root(tmp_path_factory):
    return write_vcr(tmp_path_factory.mktemp("data"), {"train": 4, "val": 2})


@pytest.mark.slow
def test_add_teachers_beside_a_finished_cache(tmp_path, vcr_root):
    teacher, _ = write_tiny_clip(tmp_path)
    out, fresh = tmp_path / "cache", tmp_path / "fresh"
    args = ["--dataset", "vcr", "--root", str(vcr_root), *FAST, "--max-text-length", "16"]
    first = run([*args, "--out", str(out), "--teachers", teacher])
    assert first.exit_code == 0, first.output
    before = files(out)
    added = run([*args, "--out", str(out), "--add-teachers", OFFLINE])
    assert added.exit_code == 0, added.output
    assert "column groups: " in added.output and "this run's: effnet-lite0-minilm" in added.output

    # nothing that was there changed; the new group is a folder of its own
    after = files(out)
    assert {name: after[name] for name in before} == before
    assert all(name.startswith("groups/effnet-lite0-minilm/") for name in set(after) - set(before))
    cache = CacheReader(out)
    groups = cache.manifest.groups
    assert list(groups)[1] == "effnet-lite0-minilm" and len(groups) == 2
    keys = {name: g.spec.key(cache.manifest.cache_key) for name, g in groups.items()}
    assert len(set(keys.values())) == 2
    assert verify_cache(out).ok

    # the added group is the group a fresh extraction with those teachers writes, byte for byte
    assert run([*args, "--out", str(fresh), "--teachers", OFFLINE]).exit_code == 0
    assert group_files(out, "effnet-lite0-minilm") == group_files(fresh, "effnet-lite0-minilm")
    assert files(fresh)["train/train-000000.tar"] == before["train/train-000000.tar"]

    # a reader takes the base and one group; by name or by one of its teacher ids
    clip = CacheReader(out)  # the first group by default
    offline = CacheReader(out, group="minilm")
    assert offline.group == "effnet-lite0-minilm" and clip.group == list(groups)[0]
    assert offline.fields["img_emb"].shape == (1280,) and clip.fields["img_emb"].shape == (16,)
    assert offline.config["teachers"] == ["effnet-lite0", "minilm"]
    assert offline.cache_key != clip.cache_key
    for got, want in zip(offline.split("train"), CacheReader(fresh).split("train"), strict=True):
        assert got["__key__"] == want["__key__"]
        assert np.array_equal(got["regions"], want["regions"])
        assert np.array_equal(got["pixels"], want["pixels"])  # the base's, shared
    assert np.array_equal(offline.shared("mean_txt_tok"), CacheReader(fresh).shared("mean_txt_tok"))

    # the same command again does nothing; other teachers without --add-teachers are refused
    again = run([*args, "--out", str(out), "--add-teachers", OFFLINE])
    assert again.exit_code == 0 and "cache hit: nothing to do" in again.output
    refused = run([*args, "--out", str(out), "--teachers", f"{OFFLINE}:random"])
    assert refused.exit_code == 1 and "--add-teachers" in refused.output
    assert files(out) == after  # a refused command writes nothing into the cache
    missing = run([*args, "--out", str(tmp_path / "none"), "--add-teachers", OFFLINE])
    assert missing.exit_code == 1 and "holds no finished cache" in missing.output


@pytest.mark.slow
def test_train_run_distils_the_group_it_is_given(tmp_path, vcr_root):
    from train.run import main as train_cli

    teacher, _ = write_tiny_clip(tmp_path)
    out = tmp_path / "cache"
    args = ["--dataset", "vcr", "--root", str(vcr_root), "--out", str(out), *FAST]
    assert run([*args, "--max-text-length", "16", "--teachers", teacher]).exit_code == 0
    added = run([*args, "--max-text-length", "16", "--add-teachers", "effnet-lite0,minilm:random"])
    assert added.exit_code == 0, added.output
    results = {}
    for group in (None, "effnet-lite0-minilm-random"):
        name = group or "default"
        command = ["--cache", str(out), "--out", str(tmp_path / name), "--epochs", "1"]
        command += ["--batch-size", "2", "--device", "cpu", "--seeds", "1"]
        command += [] if group is None else ["--teachers", group]
        result = CliRunner().invoke(train_cli, command)
        assert result.exit_code == 0, result.output
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    groups = list(CacheReader(out).manifest.groups)
    assert results["default"]["teachers"] == groups[0]
    assert results["effnet-lite0-minilm-random"]["teachers"] == groups[1]
    keys = {name: r["cache_key"] for name, r in results.items()}
    assert keys["default"] != keys["effnet-lite0-minilm-random"]
    unknown = CliRunner().invoke(train_cli, ["--cache", str(out), "--teachers", "vit-l-14"])
    assert unknown.exit_code == 1 and "no column group 'vit-l-14'" in unknown.output


@pytest.mark.slow
def test_the_bases_skips_are_the_groups_and_no_others(tmp_path):
    root = write_snli_ve(tmp_path / "data", {"train": 5})
    teacher, _ = write_tiny_clip(tmp_path)
    image = root / "flickr30k_images" / "1002.jpg"
    good = image.read_bytes()
    image.write_bytes(b"not a jpeg")
    out = tmp_path / "cache"
    args = ["--dataset", "snli_ve", "--root", str(root), "--out", str(out), "--no-index", *FAST]
    assert run([*args, "--teachers", teacher]).exit_code == 0
    image.write_bytes(good)  # restored: the base still lacks the sample, so the group skips it
    added = run([*args, "--add-teachers", "effnet-lite0:random,minilm:random", "--group", "second"])
    assert added.exit_code == 0, added.output
    cache = CacheReader(out, group="second")
    assert [s["key"] for s in cache.manifest.groups["second"].splits["train"].skipped] == [
        "1002.jpg#0r1c"
    ]
    assert len(list(cache.split("train"))) == 4 and verify_cache(out).ok
    strict = ["--add-teachers", "minilm:random,effnet-lite0:random", "--on-error", "fail"]
    assert run([*args, *strict]).exit_code == 0  # the base's skips are no errors of the group
    (root / "flickr30k_images" / "1003.jpg").write_bytes(b"broken since")
    broken = run([*args, "--add-teachers", OFFLINE, "--group", "third"])
    assert broken.exit_code == 1 and "1003.jpg" in broken.output
    assert "restore the file" in broken.output


def test_verify_and_the_reader_catch_a_group_out_of_line(tmp_path):
    root = write_snli_ve(tmp_path / "data", {"train": 3})
    teacher, _ = write_tiny_clip(tmp_path)
    out = tmp_path / "cache"
    args = ["--dataset", "snli_ve", "--root", str(root), "--out", str(out), "--no-index", *FAST]
    assert run([*args, "--teachers", teacher]).exit_code == 0
    group = next(iter(CacheReader(out).manifest.groups))
    index_path = out / "groups" / group / "train" / "train-000000.idx.json"
    index = json.loads(index_path.read_text())
    index["keys"] = index["keys"][::-1]
    index_path.write_text(json.dumps(index))
    report = verify_cache(out)
    assert any("not the base's" in problem for problem in report.problems), report.problems
    with pytest.raises(ValueError, match="row for row"):
        next(iter(CacheReader(out).split("train")))
    index_path.write_text(json.dumps({**index, "keys": index["keys"][::-1]}))  # back in line
    shard = out / "groups" / group / "train" / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-1] + b"x")  # a group's shard, named as such
    damaged = f"groups/{group}/train/train-000000.tar"
    assert verify_cache(out).problems[0].startswith(f"{damaged}: sha256 differs")
    problems = check_files(files_read(CacheReader(out)))
    assert any(problem.startswith(f"{damaged}: sha256 differs") for problem in problems)
    shutil.rmtree(out / "groups")
    assert any("groups/" in problem for problem in verify_cache(out).problems)


@pytest.mark.parametrize("fmt", ["wds", "hdf5"])
def test_a_group_reads_back_in_both_formats(tmp_path, fmt):
    """A group added to a cache reads back as the same group extracted with the cache."""
    root = write_snli_ve(tmp_path / "data", {"train": 4})
    teacher, _ = write_tiny_clip(tmp_path)
    args = ["--dataset", "snli_ve", "--root", str(root), "--no-index", *FAST, "--format", fmt]
    args += ["--max-text-length", "16"]
    out, fresh = tmp_path / "cache", tmp_path / "fresh"
    assert (
        run([*args, "--out", str(out), "--teachers", "effnet-lite0:random,minilm"]).exit_code == 0
    )
    assert run([*args, "--out", str(out), "--add-teachers", teacher]).exit_code == 0
    assert run([*args, "--out", str(fresh), "--teachers", teacher]).exit_code == 0
    assert verify_cache(out).ok
    added = CacheReader(out, group="openclip-tiny-clip").split("train")
    alone = CacheReader(fresh).split("train")
    assert added.keys() == alone.keys()
    for key in alone.keys():
        got, want = added[key], alone[key]
        assert set(got) == set(want)
        for name in ("img_grid", "txt_tok", "token_ids", "zeroshot", "pixels"):
            assert np.array_equal(got[name], want[name]), name
    only_text = CacheReader(out, group="openclip-tiny-clip").split("train", ["txt_emb"])
    assert set(next(iter(only_text))) == {"__key__", "meta", "txt_emb"}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["wds", "hdf5"])
def test_an_interrupted_addition_resumes_byte_identical(tmp_path, fmt):
    from dataclasses import replace

    from extract.extraction import run_extraction
    from tests.extract.test_run import StopAfter, small_config, tree

    root = write_snli_ve(tmp_path / "data", {"train": 7, "dev": 1})

    def adding(out):
        config = small_config(root, out, fmt)
        plan = replace(config.plan, teachers="effnet-lite0:random,minilm:random")
        return replace(config, plan=plan, add_teachers=True)

    for name in ("whole", "cut"):
        run_extraction(small_config(root, tmp_path / name, fmt))
    base = tree(tmp_path / "cut")
    run_extraction(adding(tmp_path / "whole"))
    with pytest.raises(KeyboardInterrupt):
        run_extraction(adding(tmp_path / "cut"), StopAfter(batches=1))
    group = tmp_path / "cut" / "groups" / "effnet-lite0-random-minilm-random"
    assert (group / "extraction-in-progress.json").is_file()
    assert len(CacheReader(tmp_path / "cut").manifest.groups) == 1  # not added yet
    assert {name: tree(tmp_path / "cut")[name] for name in base} == base
    resumed = run_extraction(adding(tmp_path / "cut"))
    assert resumed.timing["splits"]["train"]["samples"] < 7  # finished shards not written again
    assert tree(tmp_path / "cut") == tree(tmp_path / "whole")


@pytest.mark.parametrize("fmt", ["wds", "hdf5"])
def test_a_text_only_run_never_reads_the_image_grid(tmp_path, fmt):
    """With every group shard's img_grid destroyed, the fields a text-only run reads still
    read; the image grid itself does not."""
    import h5py

    root = write_snli_ve(tmp_path / "data", {"train": 4})
    out = tmp_path / "cache"
    args = ["--dataset", "snli_ve", "--root", str(root), "--no-index", *FAST, "--format", fmt]
    assert run([*args, "--out", str(out), "--max-text-length", "16"]).exit_code == 0
    cache = CacheReader(out)
    folder = cache.group_dir / "train"
    for shard in sorted(folder.glob("*.tar" if fmt == "wds" else "*.h5")):
        if fmt == "hdf5":
            with h5py.File(shard, "r+") as handle:
                del handle["fields/img_grid"]
            continue
        index = json.loads(shard.with_suffix(".idx.json").read_text())
        column = index["members"].index("img_grid.npy")
        data = bytearray(shard.read_bytes())
        for row in index["offsets"]:
            offset, size = row[2 * column : 2 * column + 2]
            data[offset : offset + size] = b"\xff" * size
        shard.write_bytes(bytes(data))
    wanted = ["token_ids", "token_len", "txt_tok", "pixels"]
    texts = list(CacheReader(out).split("train", wanted))
    assert len(texts) == 4 and all(s["txt_tok"].shape == (1, 16, 384) for s in texts)
    with pytest.raises((ValueError, KeyError)):
        list(CacheReader(out).split("train", ["img_grid"]))


def test_other_records_than_the_bases_are_refused_before_encoding(tmp_path):
    from extract.job import check_same_records
    from extract.store import load_manifest

    root = write_snli_ve(tmp_path / "data", {"train": 5})
    out = tmp_path / "cache"
    args = ["--dataset", "snli_ve", "--root", str(root), "--out", str(out), "--no-index", *FAST]
    assert run([*args, "--teachers", "effnet-lite0:random,minilm:random"]).exit_code == 0
    manifest = load_manifest(out)
    from extract.datasets import open_dataset

    records = {"train": list(open_dataset("snli_ve", root).records("train"))}
    check_same_records(out, manifest, records, 3)  # the same: nothing to say
    records["train"] = records["train"][::-1]
    with pytest.raises(ValueError, match="train-000000.idx.json holds other samples"):
        check_same_records(out, manifest, records, 3)
