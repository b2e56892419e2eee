"""Small parts of the extraction loop."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from extract.datasets.base import Record
from extract.encode import distinct_images
from extract.loader import Item, RecordImages
from extract.pipeline import LoopOptions, aligned_batches
from extract.store.fields import nonfinite


def test_batches_start_at_each_shard_start():
    assert aligned_batches(0, 10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # a shard covering positions 6 to 9: its batches are the same whoever writes it, whenever
    assert aligned_batches(6, 10, 4) == [[6, 7, 8, 9]]
    assert aligned_batches(6, 13, 4) == [[6, 7, 8, 9], [10, 11, 12]]
    assert aligned_batches(8, 8, 4) == []


def test_each_image_is_encoded_once_per_batch():
    items = [Item(i, Record(f"k{i}", image, ["q"]), {}, (1, 1)) for i, image in enumerate("aaba")]
    distinct, where = distinct_images(items)
    assert [item.record.image for item in distinct] == ["a", "b"]
    assert torch.equal(where, torch.tensor([0, 0, 1, 0]))


class CountingImages:
    """An adapter stand-in: JPEG bytes per image name, counting reads; "bad" is corrupt."""

    def __init__(self):
        self.reads = []

    def read_image_bytes(self, record: Record) -> bytes:
        self.reads.append(record.image)
        if record.image == "bad":
            return b"not a jpeg"
        buffer = io.BytesIO()
        Image.new("RGB", (8, 6), (10 * len(record.image), 0, 0)).save(buffer, "JPEG")
        return buffer.getvalue()


def test_consecutive_questions_of_one_image_decode_it_once():
    adapter = CountingImages()
    records = [Record(f"k{i}", image, ["q"]) for i, image in enumerate(["a", "a", "b", "a"])]
    dataset = RecordImages(adapter, records, 10, [(4, "bilinear")])
    items = [dataset[i] for i in range(len(records))]
    assert adapter.reads == ["a", "b", "a"]  # the second "a" follows "b": read again
    assert [item.position for item in items] == [10, 11, 12, 13]
    assert items[1].images is items[0].images and items[1].record.key == "k1"
    assert items[0].original_size == (8, 6) and items[3].images[(4, "bilinear")].shape == (3, 4, 4)


def test_an_unreadable_image_is_never_reused():
    adapter = CountingImages()
    records = [Record(f"k{i}", "bad", ["q"]) for i in range(2)]
    dataset = RecordImages(adapter, records, 0, [(4, "bilinear")])
    items = [dataset[0], dataset[1]]
    assert adapter.reads == ["bad", "bad"]  # each record's failure is its own, and counted
    assert all(item.error and item.images is None for item in items)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f4"])
def test_nonfinite_matches_numpy_isfinite(dtype):
    values = np.linspace(-3, 3, 24).reshape(4, 6).astype(dtype)
    extremes = np.array([np.finfo(values.dtype).max, np.finfo(values.dtype).tiny, -0.0])
    assert not nonfinite(values) and not nonfinite(extremes.astype(dtype))
    for bad in (np.nan, np.inf, -np.inf, -np.nan):
        broken = values.copy()
        broken[2, 3] = bad
        assert nonfinite(broken) and nonfinite(broken[:, 1::2]) and not nonfinite(broken[:, ::2])
    assert not nonfinite(np.arange(5))  # integers are always finite


def test_the_loop_overlaps_its_stages_beside_a_gpu_or_on_free_cores_by_default(monkeypatch):
    from extract import pipeline

    threads = torch.get_num_threads()
    monkeypatch.setattr(pipeline, "usable_cores", lambda: threads)  # the teachers use them all
    cpu = LoopOptions(device=torch.device("cpu"))
    assert not cpu.overlapped and cpu.decoders() == 0
    monkeypatch.setattr(pipeline, "usable_cores", lambda: threads + 2)  # two cores free
    assert cpu.overlapped and cpu.decoders() == 2
    monkeypatch.setattr(pipeline, "usable_cores", lambda: threads + 9)
    assert cpu.decoders() == 4  # at most 4 decoders
    assert not LoopOptions(overlap=False).overlapped
    monkeypatch.setattr(pipeline, "usable_cores", lambda: threads)
    gpu = LoopOptions(device=torch.device("cuda"))
    assert gpu.overlapped and gpu.decoders() >= 1
    assert LoopOptions(workers=3).decoders() == 3
    forced = LoopOptions(overlap=True)
    assert forced.overlapped and forced.decoders() >= 1


def test_torchruns_ranks_on_one_node_share_its_free_cores(monkeypatch):
    from extract import pipeline

    threads = torch.get_num_threads()
    monkeypatch.setattr(pipeline, "usable_cores", lambda: 2 * threads + 4)
    assert pipeline.free_cores() == threads + 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks: each its threads, half the rest
    assert pipeline.free_cores() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert pipeline.free_cores() == max(0, (4 - threads) // 3)
