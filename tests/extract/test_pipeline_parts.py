"""Small parts of the extraction loop."""

import torch

from extract.datasets.base import Record
from extract.encode import distinct_images
from extract.loader import Item
from extract.pipeline import aligned_batches


def test_batches_align_to_the_whole_split():
    assert aligned_batches(0, 10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # resuming at 6: the first batch ends where the uninterrupted run's batch ends (at 8)
    assert aligned_batches(6, 10, 4) == [[0, 1], [2, 3]]
    assert aligned_batches(8, 8, 4) == []


def test_each_image_is_encoded_once_per_batch():
    items = [Item(i, Record(f"k{i}", image, ["q"]), {}, (1, 1)) for i, image in enumerate("aaba")]
    distinct, where = distinct_images(items)
    assert [item.record.image for item in distinct] == ["a", "b"]
    assert torch.equal(where, torch.tensor([0, 0, 1, 0]))
