import numpy as np
import pytest

from extract.store import FieldSpec, decode, encode


def roundtrip(spec, array, as_float32=False):
    values, scale = encode(spec, array)
    return decode(spec, values, scale, as_float32)


def test_fp16_fp32_uint8_int32_are_exact():
    rng = np.random.default_rng(0)
    floats = rng.standard_normal((3, 5)).astype(np.float32)
    half = floats.astype(np.float16)
    assert np.array_equal(roundtrip(FieldSpec("a", (3, 5), "fp16"), half), half)
    assert roundtrip(FieldSpec("a", (3, 5), "fp16"), half).dtype == np.float16
    assert np.array_equal(roundtrip(FieldSpec("a", (3, 5), "fp32"), floats), floats)
    pixels = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    assert np.array_equal(roundtrip(FieldSpec("p", (4, 4, 3), "uint8"), pixels), pixels)
    ids = np.array([[101, 30521, 0]])
    out = roundtrip(FieldSpec("t", (1, 3), "int32"), ids)
    assert out.dtype == np.int32 and np.array_equal(out, ids)
    assert (
        roundtrip(FieldSpec("p", (4, 4, 3), "uint8"), pixels, as_float32=True).dtype == np.float32
    )


def test_int8_error_bound_on_random_unit_vectors():
    """Each element is off by at most scale/2 = max|x|/254; on 384-d random unit vectors the
    measured mean 1 - cosine is 2.7e-5 (max 6.4e-5; asserted below 1e-4)."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    spec = FieldSpec("v", (1000, 384), "int8")
    values, scale = encode(spec, vectors)
    assert values.dtype == np.int8 and scale.shape == (1000,) and scale.dtype == np.float32
    restored = decode(spec, values, scale, as_float32=True)
    bound = np.abs(vectors).max(axis=1, keepdims=True) / 254
    assert np.all(np.abs(restored - vectors) <= bound * (1 + 1e-6))
    cosine = (restored * vectors).sum(1) / np.linalg.norm(restored, axis=1)
    assert 0 < float((1 - cosine).mean()) < 1e-4
    assert decode(spec, values, scale, as_float32=False).dtype == np.float16


def test_int8_zero_vector_and_peak_exact():
    spec = FieldSpec("v", (2, 3), "int8")
    array = np.array([[0.0, 0.0, 0.0], [-2.0, 1.0, 0.5]], dtype=np.float32)
    values, scale = encode(spec, array)
    assert values.tolist() == [[0, 0, 0], [-127, 64, 32]]
    assert scale.tolist() == [0.0, pytest.approx(2 / 127)]
    assert decode(spec, values, scale, True)[1, 0] == pytest.approx(-2.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"sample 'k7', field 'a': shape \(2,\)"):
        encode(FieldSpec("a", (3,)), np.zeros(2), key="k7")
    with pytest.raises(ValueError, match="outside uint8 range"):
        encode(FieldSpec("p", (2,), "uint8"), np.array([0, 256]))
    with pytest.raises(ValueError, match="takes integers"):
        encode(FieldSpec("p", (2,), "int32"), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="unknown storage 'bf16'"):
        FieldSpec("a", (3,), "bf16")
    with pytest.raises(ValueError, match="field name 'Img.emb'"):
        FieldSpec("Img.emb", (3,))
    with pytest.raises(ValueError, match="field name 'meta'"):
        FieldSpec("meta", (3,))


def test_bytes_per_sample():
    assert FieldSpec("a", (4, 8), "fp16").bytes_per_sample == 64
    assert FieldSpec("a", (4, 8), "int8").bytes_per_sample == 32 + 4 * 4
    assert FieldSpec("a", (16, 768), "uint8").bytes_per_sample == 16 * 768


def test_int8_scale_of_a_one_dimensional_field_is_a_number():
    spec = FieldSpec("v", (8,), "int8")
    vector = np.linspace(-1, 1, 8, dtype=np.float32)
    values, scale = encode(spec, vector)
    assert scale.shape == () and decode(spec, values, scale, as_float32=True).shape == (8,)
