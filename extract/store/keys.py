"""Sample keys as they appear in container member names.

WebDataset splits a member name at its first dot into key and extension, so a dataset id such as
SNLI-VE's ``555378351.jpg#2r1e`` cannot be used as is. Keys are percent-encoded (dots included),
which is reversible and collision-free; the original key is kept in each sample's json.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

SAFE_CHARS = "-_~#,:=@+"


def member_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"sample key must be a non-empty string, got {key!r}")
    return quote(key, safe=SAFE_CHARS).replace(".", "%2E")


def original_key(safe: str) -> str:
    return unquote(safe)
