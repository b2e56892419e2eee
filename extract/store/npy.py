"""``.npy`` bytes of one array, and back, with each distinct header parsed once.

Every sample of a field has the same header (dtype and shape), and numpy parses a header with
``ast.literal_eval``, which was 60% of the trainer's loading time; so the layout of a header is
looked up by its bytes. The bytes are exactly what ``numpy.save`` writes for a C-ordered array
(a Fortran-ordered one is stored as its C-ordered copy).
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np

MAGIC = b"\x93NUMPY"


@lru_cache(maxsize=1024)
def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    try:
        np.lib.format.write_array_header_1_0(buffer, header)  # what numpy.save writes
    except ValueError:  # a header over 64 KiB (a shape with very many axes)
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    if array.dtype.hasobject:
        raise ValueError("object arrays cannot be stored (they would need pickle)")
    return _header(array.dtype, array.shape) + array.tobytes()


@lru_cache(maxsize=1024)
def _layout(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    buffer = io.BytesIO(header)
    version = np.lib.format.read_magic(buffer)
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    if version not in readers:  # 3.0 (UTF-8 field names) is never written by the store
        raise ValueError(f"has .npy format version {version}; the store writes 1.0 (or 2.0)")
    shape, fortran, dtype = readers[version](buffer)
    if dtype.hasobject:
        raise ValueError("holds an object array, which would need pickle to load")
    return dtype, shape, fortran


def load_npy(data: bytes | bytearray) -> np.ndarray:
    """The array in ``data`` (the bytes of an .npy file); writable when ``data`` is a bytearray."""
    if len(data) < 10:
        raise ValueError(f"is too short for an .npy array ({len(data)} bytes)")
    if bytes(data[:6]) != MAGIC:
        raise ValueError("is not an .npy array (no NUMPY magic)")
    if data[6] == 1:
        start = 10 + int.from_bytes(data[8:10], "little")
    else:
        start = 12 + int.from_bytes(data[8:12], "little")
    dtype, shape, fortran = _layout(bytes(data[:start]))
    count = math.prod(shape)
    if len(data) - start != count * dtype.itemsize:
        raise ValueError(f"is truncated: {len(data) - start} bytes for {shape} {dtype}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=start)
    return array.reshape(shape, order="F" if fortran else "C")
