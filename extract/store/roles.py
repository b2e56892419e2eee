"""What each split of a cache is for: training, model selection (``val``) or held-out testing
(``test``), and whether its labels are known. The extraction records it in the manifest; the
trainer never trains on, nor selects a model with, a held-out split.

A split's role comes from its name unless the user says otherwise (``--split-role``): names
starting with ``train`` train, ``val`` or ``dev`` select, and every other name is held out, so
a held-out split with an unforeseen name (``heldout``, ``shifted``) is safe by default.
"""

from __future__ import annotations

from typing import Any

ROLES = ("train", "val", "test")


def role_by_name(split: str) -> str:
    name = split.lower()
    if name.startswith("train"):
        return "train"
    if name.startswith(("val", "dev")):
        return "val"
    return "test"


def split_role(config: dict[str, Any], split: str) -> dict[str, Any]:
    """``{"role": ..., "labels": bool}`` of a split, from a cache's config (caches extracted
    before roles were recorded: from the name, labels assumed)."""
    recorded = config.get("split_roles", {}).get(split)
    return recorded or {"role": role_by_name(split), "labels": True}


def parse_roles(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["heldout=test", "eval=val"]`` -> ``{"heldout": "test", "eval": "val"}``."""
    roles = {}
    for item in items:
        split, sep, role = item.partition("=")
        if not sep or not split or role not in ROLES:
            raise ValueError(f"split role {item!r}: write SPLIT=ROLE with ROLE one of {ROLES}")
        roles[split] = role
    return roles
