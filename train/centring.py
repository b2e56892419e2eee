"""The means the distillation targets are centred by.

The cache stores means over its whole training split. A run restricted to one domain
(``--train-where source=lsmdc``) must not centre by means that hold the held-out domain's
features, so its means are computed here over the training split's samples of that domain
(the same sums the extraction makes, on the values as stored).
"""

from __future__ import annotations

import numpy as np

from extract.store import CacheReader
from extract.store.means import MEAN_FIELDS, FieldMeans


def stored_means(cache: CacheReader, names: list[str]) -> dict[str, np.ndarray]:
    return {name: cache.shared(f"mean_{name}") for name in names}


def domain_means(cache: CacheReader, split: str, keys: list[str], names: list[str]):
    """Means of ``names`` over the samples ``keys`` of ``split`` (valid tokens and regions
    only, as the extraction counts them)."""
    counters = {MEAN_FIELDS[name] for name in names if MEAN_FIELDS.get(name)}
    reader = cache.split(split, [*names, *sorted(counters)])
    sums = FieldMeans(names)
    for key in keys:
        sums.add(reader[key])
    means = sums.result()
    missing = sorted(set(names) - set(means))
    if missing:
        raise ValueError(f"{cache.cache_dir}: no values of {missing} to average over {split!r}")
    return means
