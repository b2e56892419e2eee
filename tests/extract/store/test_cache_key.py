"""The cache key: stable across runs and machines, changed by anything that changes the bytes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from extract.store import CacheBuilder, FieldSpec, load_manifest
from tests.conftest import FIELDS, build_cache, make_sample, make_spec

KEY_IN_FRESH_PROCESS = """
import sys
sys.path.insert(0, {root!r})
from tests.conftest import make_spec
print(make_spec().cache_key())
"""


def test_same_inputs_same_key_across_processes(tmp_path):
    root = str(Path(__file__).parents[3])
    keys = {
        subprocess.run(
            [sys.executable, "-c", KEY_IN_FRESH_PROCESS.format(root=root)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert keys == {make_spec().cache_key()}


def test_key_is_stored_and_equal_for_two_builds(tmp_path):
    build_cache(tmp_path / "a")
    build_cache(tmp_path / "b")
    first, second = load_manifest(tmp_path / "a"), load_manifest(tmp_path / "b")
    assert first.cache_key == second.cache_key
    stored = json.loads((tmp_path / "a" / "manifest.json").read_text())["cache_key"]
    assert stored == first.cache_key


def changed_fields(name: str, **changes) -> dict:
    fields = dict(FIELDS)
    old = fields[name]
    fields[name] = FieldSpec(
        name,
        changes.get("shape", old.shape),
        changes.get("storage", old.storage),
        changes.get("producer", old.producer),
    )
    return fields


@pytest.mark.parametrize(
    "change",
    [
        {"fields": changed_fields("img_emb", storage="fp32")},
        {"fields": changed_fields("img_emb", producer="test-vision@other-weights")},
        {"fields": changed_fields("img_emb", shape=(16,))},
        {"dataset": {"adapter": "test", "inputs": {"train.jsonl": {"bytes": 10, "sha256": "01"}}}},
        {"dataset": {"adapter": "test", "inputs": {"train.jsonl": {"bytes": 11, "sha256": "00"}}}},
        {"format": "hdf5"},
        {"config": {"teachers": ["test-vision"]}},
        {"task": {"kind": "multiple_choice", "num_choices": 4}},
    ],
    ids=["dtype", "producer", "shape", "input-hash", "input-size", "format", "config", "task"],
)
def test_any_change_of_what_is_stored_changes_the_key(change):
    assert make_spec(**change).cache_key() != make_spec().cache_key()


def test_shard_limits_change_the_key():
    assert make_spec(max_count=5).cache_key() != make_spec(max_count=4).cache_key()


def test_same_config_is_a_cache_hit(tmp_path):
    build_cache(tmp_path / "c")
    before = (tmp_path / "c" / "manifest.json").read_bytes()
    builder = CacheBuilder(tmp_path / "c", make_spec())
    assert builder.complete
    assert (tmp_path / "c" / "manifest.json").read_bytes() == before


def test_different_config_is_refused_naming_the_difference(tmp_path):
    build_cache(tmp_path / "c")
    with pytest.raises(ValueError) as error:
        CacheBuilder(tmp_path / "c", make_spec(fields=changed_fields("img_emb", storage="int8")))
    message = str(error.value)
    assert "holds a finished cache made with different settings" in message
    assert 'fields.img_emb.storage: "fp16" -> "int8"' in message
    assert "another --out directory" in message


def test_unfinished_extraction_with_other_config_is_refused(tmp_path):
    builder = CacheBuilder(tmp_path / "c", make_spec())
    with builder.split("train") as split:
        split.write("k", make_sample(0))
    with pytest.raises(ValueError, match="(?s)holds an unfinished extraction.*config.teachers"):
        CacheBuilder(tmp_path / "c", make_spec(config={"teachers": ["x"]}))


def test_a_group_may_not_reuse_a_base_field_name(tmp_path):
    from extract.store import CacheBuilder, GroupSpec
    from tests.conftest import make_spec

    spec = make_spec()
    group = GroupSpec("teachers", {"pixels": spec.fields["pixels"]})
    with pytest.raises(ValueError, match=r"declares fields \['pixels'\] of the base"):
        CacheBuilder(tmp_path / "c", spec, groups=[group])
