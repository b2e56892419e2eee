"""``--retry-skipped``: a finished cache whose skipped samples' images read now is reopened, so
the same command writes exactly the shards that held them again (and nothing else).

Shards are planned ranges of input positions, so a shard's bytes depend only on its inputs: the
rewritten shards are those an extraction that never missed the images would have written, and
the cache ends byte for byte as that extraction's. The training means are sums per shard of the
means split; the sums of the shards that stay are read back from them (the extraction deletes
its sums once the cache is done), so the teachers run on the retried shards only.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from extract.datasets.base import Record
from extract.job import Job
from extract.pipeline import decoded, means_path
from extract.store import CacheReader, load_manifest
from extract.store.atomic import write_json_atomic
from extract.store.layout import PENDING_SPEC, group_dir, shard_stem
from extract.store.manifest import MANIFEST_NAME, Manifest
from extract.store.means import FieldMeans

log = logging.getLogger(__name__)


def reopen_skipped(out: Path, job: Job, adapter) -> int:
    """Reopen the finished cache at ``out`` for its skipped samples that read now; returns how
    many there are (0: nothing was changed). A cache of other settings is left to the usual
    refusal."""
    if not (out / MANIFEST_NAME).is_file():
        return 0
    manifest = load_manifest(out)
    if manifest.spec.to_json() != job.spec.to_json():
        return 0
    retry = readable_skips(manifest, job, adapter)
    count = sum(len(keys) for keys in retry.values())
    if not count:
        log.info("%s: no skipped sample reads now; nothing to retry", out)
        return 0
    others = sorted(set(manifest.groups) - {job.group.name})
    if others:
        raise ValueError(
            f"{out}: {count} skipped sample(s) read now, but retrying them rewrites their shards "
            f"in every column group, and this command extracts only {job.group.name!r} (the cache "
            f"also has {others}); extract again into a new --out"
        )
    shards = {split: sorted(numbers) for split, numbers in retry.items() if numbers}
    keep_sums(out, manifest, job, shards.get(job.means_split, []))
    write_json_atomic(out / PENDING_SPEC, job.spec.to_json())
    write_json_atomic(group_dir(out, job.group.name) / PENDING_SPEC, job.group.to_json())
    for split, numbers in shards.items():  # the manifest goes last: until then it is finished
        for number in numbers:
            for root in (out, group_dir(out, job.group.name)):
                for path in root.glob(shard_stem(split, number) + ".*"):
                    path.unlink()
    (out / MANIFEST_NAME).unlink()
    log.info("%s: retrying %d skipped sample(s) in %s", out, count, shards)
    return count


def readable_skips(manifest: Manifest, job: Job, adapter) -> dict[str, dict[int, list[str]]]:
    """Per split, the shards holding skipped samples whose image reads now, and their keys."""
    found: dict[str, dict[int, list[str]]] = {}
    for split, record in manifest.splits.items():
        images = {str(r.key): r.image for r in job.records.get(split, [])}
        for number, shard in enumerate(record.shards):
            for skipped in shard.skipped:
                image = images.get(skipped["key"])
                if image is not None and reads(adapter, skipped["key"], image):
                    found.setdefault(split, {}).setdefault(number, []).append(skipped["key"])
    return found


def reads(adapter, key: str, image: str) -> bool:
    from PIL import Image

    try:
        Image.open(io.BytesIO(adapter.read_image_bytes(Record(key, image, [])))).load()
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    return True


def keep_sums(out: Path, manifest: Manifest, job: Job, rewritten: list[int]) -> None:
    """The means split's sums of every shard that stays, read back from the shard itself (the
    stored values, decoded as the extraction decoded them when it summed them)."""
    if not rewritten:
        return
    split = job.means_split
    reader = CacheReader(out, group=job.group.name).split(split)
    parts = [(out, manifest.fields), (group_dir(out, job.group.name), job.group.fields)]
    for number in range(len(manifest.splits[split].shards)):
        if number in rewritten:
            continue
        sums = [FieldMeans(list(fields)) for _, fields in parts]
        shard = reader.shard_reader(number)
        try:
            for arrays, _ in shard.iterate():
                values = decoded({**manifest.fields, **job.group.fields}, arrays)
                for means in sums:
                    means.add(values)
        finally:
            shard.close()
        for (root, _), means in zip(parts, sums, strict=True):
            means.save(means_path(root / shard_stem(split, number)))
