"""An int8 field and its scales travel as one tar member of (values, scale) records."""

import numpy as np
import pytest

from extract.store.npy import load_npy, npy_bytes
from extract.store.tar_shard import pack_int8, unpack_int8


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5)])
def test_pack_round_trip_is_exact(shape):
    rng = np.random.default_rng(0)
    values = rng.integers(-127, 128, size=shape, dtype=np.int8)
    scale = rng.random(shape[:-1], dtype=np.float32)
    stored = load_npy(bytearray(npy_bytes(pack_int8(values, scale))))
    assert stored.shape == shape[:-1] and stored.dtype.itemsize == shape[-1] + 4  # no padding
    got_values, got_scale = unpack_int8(stored)
    assert np.array_equal(got_values, values) and got_values.dtype == np.int8
    assert np.array_equal(got_scale, scale) and got_scale.shape == scale.shape


def test_member_is_the_values_then_the_scale_of_each_vector():
    values = np.array([[1, -2, 3], [-127, 0, 127]], dtype=np.int8)
    scale = np.array([0.5, 2.0], dtype=np.float32)
    body = pack_int8(values, scale).tobytes()
    assert body == b"".join(v.tobytes() + s.tobytes() for v, s in zip(values, scale, strict=True))


@pytest.mark.parametrize(
    "dtype",
    [
        np.dtype(np.int8),
        np.dtype([("values", "i1", (3,)), ("scale", "<f8")]),
        np.dtype([("values", "i2", (3,)), ("scale", "<f4")]),
        np.dtype([("scale", "<f4"), ("values", "i1", (3,))]),
    ],
)
def test_other_members_are_refused(dtype):
    with pytest.raises(ValueError, match="not int8 values with their float32 scales"):
        unpack_int8(np.zeros((2,), dtype=dtype))


def test_pack_refuses_floats_and_a_scale_per_field():
    with pytest.raises(ValueError, match="int8 values"):
        pack_int8(np.full((2, 3), 300.7), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="one scale per vector"):
        pack_int8(np.zeros((2, 3), np.int8), np.ones(1, np.float32))
