"""Fields of a cache and how their arrays are stored.

Storage kinds:
- ``fp16`` (default) and ``fp32``: the array cast to that float type.
- ``int8``: symmetric quantisation with one float32 scale per vector (the last axis):
  ``q = round(x / s)``, ``s = max|x| / 127``. Each element is off by at most ``s / 2``.
- ``uint8``: integer data such as pixels, stored as is (values must lie in 0..255).
- ``int32``: integer data such as token ids or labels, stored as is.

Two layouts change what a sample stores, not what a reader gets back:
- **per image** (``per_image``): the field depends only on the sample's image (teacher grid,
  student pixels, regions). Consecutive samples of one image in a shard share one stored copy.
- **ragged** (``lengths`` names a ``[C]`` integer field): a ``[C, L, ...]`` field keeps only the
  first ``lengths[c]`` rows of each candidate ``c``, concatenated to ``[sum(lengths), ...]``;
  decoding pads it back to ``[C, L, ...]`` with zeros (texts are short: padding to the longest
  allowed text was most of a VCR sample).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

STORAGE_DTYPES = {
    "fp16": np.float16,
    "fp32": np.float32,
    "int8": np.int8,
    "uint8": np.uint8,
    "int32": np.int32,
}
FLOAT_STORAGE = ("fp16", "fp32", "int8")
INT8_MAX = 127
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_NAMES = ("meta", "json")  # a sample's json is returned under "meta"


@dataclass(frozen=True)
class FieldSpec:
    """One per-sample array of the cache: its shape (without the sample axis) and storage.

    ``producer`` is the fingerprint of whatever computed it (an encoder id plus the sha256 of
    its weights and its preprocessing), so a cache made by other weights never passes for this one.
    """

    name: str
    shape: tuple[int, ...]
    storage: str = "fp16"
    producer: str = ""
    per_image: bool = False
    lengths: str = ""

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name) or self.name in RESERVED_NAMES:
            raise ValueError(
                f"field name {self.name!r} is not allowed: use lower-case letters, digits and "
                "underscores, starting with a letter; 'meta' and 'json' are reserved"
            )
        if self.storage not in STORAGE_DTYPES:
            raise ValueError(
                f"field {self.name!r}: unknown storage {self.storage!r}; "
                f"choose one of {sorted(STORAGE_DTYPES)}"
            )
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if any(n <= 0 for n in self.shape):
            raise ValueError(
                f"field {self.name!r}: every dimension must be positive, got {self.shape}"
            )
        if self.storage == "int8" and not self.shape:
            raise ValueError(
                f"field {self.name!r}: int8 storage needs at least one axis (the vector)"
            )
        if self.lengths and len(self.shape) < 2:
            raise ValueError(
                f"field {self.name!r}: a ragged field needs a [C, L, ...] shape, got {self.shape}"
            )
        if self.lengths and self.per_image:
            raise ValueError(f"field {self.name!r}: a ragged field is per sample, not per image")
        if self.lengths and self.storage == "int8" and len(self.shape) < 3:
            raise ValueError(
                f"field {self.name!r}: a ragged int8 field needs [C, L, D] (one scale per row)"
            )

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.storage])

    @property
    def has_scale(self) -> bool:
        return self.storage == "int8"

    @property
    def scale_shape(self) -> tuple[int, ...]:
        return self.shape[:-1]

    def stored_shape(self, lengths: np.ndarray | None = None) -> tuple[int, ...]:
        """The shape on disk: the declared one, or ``[sum(lengths), ...]`` when ragged."""
        if not self.lengths:
            return self.shape
        return (int(np.asarray(lengths).sum()), *self.shape[2:])

    @property
    def bytes_per_sample(self) -> int:
        """Payload bytes of one sample at most (quantised values plus their float32 scales;
        a ragged field's texts at their longest)."""
        size = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        if self.has_scale:
            size += int(np.prod(self.scale_shape, dtype=np.int64)) * 4
        return size

    def to_json(self) -> dict:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["dtype"] = self.dtype.name
        data["bytes_per_sample"] = self.bytes_per_sample
        return data

    @classmethod
    def from_json(cls, data: dict) -> FieldSpec:
        return cls(
            name=data["name"],
            shape=tuple(data["shape"]),
            storage=data["storage"],
            producer=data.get("producer", ""),
            per_image=data.get("per_image", False),
            lengths=data.get("lengths", ""),
        )


def encode(
    spec: FieldSpec, array: np.ndarray, key: str = "?", lengths: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check one sample's array against its spec and convert it to the stored form.

    Returns ``(values, scale)``; ``scale`` is None unless the storage is int8. A ragged field
    needs the sample's ``lengths`` (the values of the field its spec names).
    """
    array = np.asarray(array)
    if array.shape != spec.shape:
        raise ValueError(
            f"sample {key!r}, field {spec.name!r}: shape {array.shape} does not match the declared "
            f"shape {spec.shape}; fix the producer or declare the field with the right shape"
        )
    if spec.lengths:
        array = array[real_rows(spec, lengths, key)]
    if spec.storage in FLOAT_STORAGE:
        return _encode_float(spec, array, key)
    if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.bool_):
        raise ValueError(
            f"sample {key!r}, field {spec.name!r}: {spec.storage} storage takes integers, "
            f"got {array.dtype}"
        )
    info = np.iinfo(spec.dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(
            f"sample {key!r}, field {spec.name!r}: values outside {spec.storage} range "
            f"[{info.min}, {info.max}]"
        )
    return np.ascontiguousarray(array, dtype=spec.dtype), None


def _encode_float(
    spec: FieldSpec, array: np.ndarray, key: str
) -> tuple[np.ndarray, np.ndarray | None]:
    if spec.storage == "fp16" and array.dtype == np.float16:
        return np.ascontiguousarray(array), None  # rounded to fp16 by the producer already
    values = np.asarray(array, dtype=np.float32)
    if spec.storage == "fp32":
        return np.ascontiguousarray(values), None
    if spec.storage == "fp16":
        with np.errstate(over="ignore"):  # overflow becomes inf, which the writer reports
            return np.ascontiguousarray(values.astype(np.float16)), None
    peak = np.abs(values).max(axis=-1)
    scale = (peak / INT8_MAX).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0)[..., None]
    with np.errstate(invalid="ignore"):  # NaN / inf end up in the scale, which the writer rejects
        quantised = np.clip(np.rint(values / safe), -INT8_MAX, INT8_MAX).astype(np.int8)
    # asarray, not ascontiguousarray: the scale of a 1-D field is 0-d and must stay so
    return np.ascontiguousarray(quantised), np.asarray(scale, dtype=np.float32, order="C")


def real_rows(spec: FieldSpec, lengths: np.ndarray | None, key: str = "?") -> np.ndarray:
    """``[C, L]`` mask of a ragged field's real rows: ``l < lengths[c]``."""
    candidates, longest = spec.shape[:2]
    if lengths is None:
        raise ValueError(
            f"field {spec.name!r} is ragged: its lengths ({spec.lengths!r}) are needed"
        )
    lengths = np.asarray(lengths).reshape(-1)
    if (
        lengths.shape != (candidates,)
        or lengths.min(initial=0) < 0
        or lengths.max(initial=0) > longest
    ):
        raise ValueError(
            f"sample {key!r}, field {spec.name!r}: lengths {lengths.tolist()} in "
            f"{spec.lengths!r} do not fit its {candidates} candidates of at most {longest} rows"
        )
    return np.arange(longest)[None, :] < lengths[:, None]


def decode(
    spec: FieldSpec,
    values: np.ndarray,
    scale: np.ndarray | None,
    as_float32: bool,
    lengths: np.ndarray | None = None,
) -> np.ndarray:
    """The stored form back to an array: the stored dtype, or float32 when asked.

    int8 fields are always dequantised (to float16, or float32 when asked), since the raw
    integers mean nothing without their scale. A ragged field is padded back to its declared
    shape with zeros (it needs the sample's ``lengths``).
    """
    if spec.has_scale:
        if scale is None:
            raise ValueError(f"field {spec.name!r}: int8 values found without their scale")
        restored = values.astype(np.float32) * scale.astype(np.float32)[..., None]
        values = restored if as_float32 else restored.astype(np.float16)
    elif as_float32:
        values = values.astype(np.float32)
    if not spec.lengths:
        return values
    mask = real_rows(spec, lengths)
    if values.shape != (int(mask.sum()), *spec.shape[2:]):
        raise ValueError(
            f"field {spec.name!r}: {list(values.shape)} stored rows do not match its lengths "
            f"{np.asarray(lengths).reshape(-1).tolist()}"
        )
    padded = np.zeros(spec.shape, dtype=values.dtype)
    padded[mask] = values
    return padded


# IEEE floats whose exponent bits are all ones are NaN or infinite
EXPONENT_BITS = {
    np.dtype(np.float16): (np.uint16, 0x7C00),
    np.dtype(np.float32): (np.uint32, 0x7F800000),
    np.dtype(np.float64): (np.uint64, 0x7FF0000000000000),
}


def nonfinite(array: np.ndarray) -> bool:
    """True when a float array holds a NaN or an infinity.

    Tested on the exponent bits: ``np.isfinite`` on float16 was 12% of an extraction's writes."""
    if not np.issubdtype(array.dtype, np.floating):
        return False
    if array.dtype not in EXPONENT_BITS or not array.flags.c_contiguous:
        return not bool(np.isfinite(array).all())
    unsigned, exponent = EXPONENT_BITS[array.dtype]
    return bool(((array.view(unsigned) & exponent) == exponent).any())
