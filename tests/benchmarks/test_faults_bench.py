"""The pure helpers of ``python -m benchmarks.faults``: byte comparison of caches, the form of an
error, the kill points, exact checkpoint equality and the damages written into .npy values."""

from __future__ import annotations

import io
import json
import random
import tarfile

import numpy as np
import torch

from benchmarks.faults import (
    cache_differences,
    edit_index,
    error_form,
    first_value,
    flip,
    kill_points,
    last_line,
    same,
    without_times,
    write_nan,
)


def make_cache(folder, manifest: dict, files: dict[str, bytes]):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_caches_compare_by_bytes_but_not_by_timings_or_the_lock(tmp_path):
    manifest = {"cache_key": "k", "timing": {"wall_s": 1.0}, "groups": [{"timing": 2, "n": 3}]}
    files = {"train/a.tar": b"abc", "shared/m.npy": b"m", "writer.lock": b""}
    one = make_cache(tmp_path / "one", manifest, files)
    other = {**manifest, "timing": {"wall_s": 9.0}, "groups": [{"timing": 5, "n": 3}]}
    two = make_cache(tmp_path / "two", other, {**files, "writer.lock": b'{"pid": 1}'})
    assert cache_differences(one, two) == []
    (two / "train" / "a.tar").write_bytes(b"abd")
    (two / "train" / "b.tar").write_bytes(b"new")
    (two / "manifest.json").write_text(json.dumps({**other, "cache_key": "other"}))
    assert cache_differences(one, two) == ["train/b.tar", "train/a.tar", "manifest.json"]
    (two / "manifest.json").unlink()
    assert cache_differences(one, two)[-1] == "manifest.json"
    assert without_times({"a": [{"build_s": 1, "b": 2}], "timing": 3}) == {"a": [{"b": 2}]}


def test_an_error_is_one_last_line_or_clicks_usage():
    assert error_form(1, "INFO x: loading\nerror: no such file\n") is None
    assert error_form(1, "epoch 1: 50%|##   |\rerror: NaN in 'x'\n") is None  # after the bar
    usage = "Usage: python -m m [OPTIONS]\nTry 'python -m m --help' for help.\n\n"
    assert error_form(2, usage + "Error: Invalid value for '--limit'\n") is None
    assert error_form(2, "Error: Invalid value\n") == "no usage line"
    assert error_form(1, "Traceback (most recent call last):\nKeyError: 'x'\n") == "a traceback"
    assert error_form(1, "error: one\nerror: two\n") == "2 lines start with 'error: '"
    assert error_form(1, "error: one\ncontinued\n").startswith("the error line is not the last")
    assert error_form(1, "nothing said\n") == "0 lines start with 'error: '"
    assert error_form(-9, "") == "exit status -9"
    assert last_line("a\nb 10%\rb 20%\r error: x\n\n") == " error: x"


def test_kill_points_fall_one_in_each_stratum_of_the_files():
    points = kill_points(79, 6, random.Random(0))
    assert len(points) == 6 and all(0 <= fraction < 1 for _, fraction in points)
    files = [count for count, _ in points]
    edges = [int(1 + 79 * i / 6) for i in range(7)]  # 1, 14, 27, 40, 53, 66, 80
    for count, low, high in zip(files, edges, edges[1:], strict=False):
        assert low <= count <= high - 1
    assert files[-1] <= 79  # at the latest once every file but the manifest is there
    assert points == kill_points(79, 6, random.Random(0))  # seeded


def test_checkpoints_are_equal_only_when_exactly_equal():
    state = {"w": torch.ones(2), "step": 3, "rng": (np.arange(3), [1.0, "a"])}
    assert same(state, {"w": torch.ones(2), "step": 3, "rng": (np.arange(3), [1.0, "a"])})
    assert not same(state, {**state, "w": torch.ones(2, dtype=torch.float64)})
    assert not same(state, {**state, "w": torch.tensor([1.0, 1.0 + 1e-7])})
    assert not same(state, {**state, "step": 3.0}) and not same(state, {"w": torch.ones(2)})


def test_damages_change_the_values_they_aim_at(tmp_path):
    values = np.arange(1, 9, dtype="<f2").reshape(2, 4)
    buffer = io.BytesIO()
    np.save(buffer, values)
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in (("k.json", b"{}"), ("k.txt_tok.npy", buffer.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    def stored():
        with tarfile.open(shard) as tar:
            return np.load(io.BytesIO(tar.extractfile("k.txt_tok.npy").read()))

    flip(shard, first_value(shard, "txt_tok.npy"))
    assert stored()[0, 0] != 1 and np.isfinite(stored()).all()  # the lowest bit: still finite
    assert (stored().ravel()[1:] == values.ravel()[1:]).all()
    write_nan(shard, "txt_tok.npy")
    assert np.isnan(stored()[0, 0]) and (stored().ravel()[1:] == values.ravel()[1:]).all()
    index = tmp_path / "s.idx.json"
    index.write_text(json.dumps({"keys": ["k10", "k11"], "offsets": [[1, 2], [3, 4]]}))
    size = index.stat().st_size
    edit_index(index)
    assert json.loads(index.read_text())["keys"] == ["k11", "k10"]
    assert index.stat().st_size <= size
