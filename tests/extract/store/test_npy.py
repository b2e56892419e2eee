"""The .npy bytes of the tar shards: exactly numpy.save's, and loaded back."""

from __future__ import annotations

import io

import numpy as np
import pytest

from extract.store.npy import load_npy, npy_bytes


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float16).reshape(3, 4),
        np.arange(5, dtype=np.int32),
        np.zeros((2, 0, 3), dtype=np.uint8),
        np.array(3.5, dtype=np.float32),
        np.arange(6, dtype=">f8").reshape(2, 3),
        np.asfortranarray(np.arange(6, dtype=np.int8).reshape(2, 3)),
    ],
)
def test_bytes_match_numpy_save_and_load_back(array):
    saved = io.BytesIO()
    np.save(saved, np.asarray(array, order="C"), allow_pickle=False)
    assert npy_bytes(array) == saved.getvalue()
    loaded = load_npy(bytearray(npy_bytes(array)))
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)
    assert loaded.flags.writeable


def test_fortran_order_files_written_by_numpy_load():
    array = np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))
    saved = io.BytesIO()
    np.save(saved, array)
    np.testing.assert_array_equal(load_npy(saved.getvalue()), array)


def test_bad_bytes_are_refused_with_the_reason():
    data = npy_bytes(np.arange(4, dtype=np.float32))
    with pytest.raises(ValueError, match="truncated"):
        load_npy(data[:-1])
    with pytest.raises(ValueError, match="NUMPY magic"):
        load_npy(b"not an array at all")
    saved = io.BytesIO()
    np.save(saved, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        load_npy(saved.getvalue())
    with pytest.raises(ValueError, match="pickle"):
        npy_bytes(np.array([{"a": 1}], dtype=object))


def test_short_data_and_unknown_versions_are_named():
    with pytest.raises(ValueError, match="too short"):
        load_npy(b"\x93NUM")
    data = bytearray(npy_bytes(np.arange(3, dtype=np.int32)))
    data[6] = 9  # format version 9.0
    with pytest.raises(ValueError, match="version"):
        load_npy(data)


def test_version_2_headers_load():
    saved = io.BytesIO()
    np.lib.format.write_array(saved, np.arange(6, dtype=np.int16).reshape(2, 3), version=(2, 0))
    np.testing.assert_array_equal(load_npy(saved.getvalue()), np.arange(6).reshape(2, 3))
