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
    assert np.array_equal(got_values, values) and got_values.flags.c_contiguous
    assert np.array_equal(got_scale, scale) and got_scale.shape == scale.shape


def test_member_is_the_values_then_the_scale_of_each_vector():
    values = np.array([[1, -2, 3], [-127, 0, 127]], dtype=np.int8)
    scale = np.array([0.5, 2.0], dtype=np.float32)
    body = pack_int8(values, scale).tobytes()
    assert body == b"".join(v.tobytes() + s.tobytes() for v, s in zip(values, scale, strict=True))


def test_plain_int8_member_is_refused():
    with pytest.raises(ValueError, match="not int8 values with their scales"):
        unpack_int8(np.zeros((2, 3), dtype=np.int8))
