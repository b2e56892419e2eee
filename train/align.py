"""Text targets for a student whose tokenizer is not the teacher's.

The cache keeps, for every teacher token, its character span in the stored text. The student
tokenizes the same text with its own tokenizer (fast tokenizers report each token's span too);
each student token's target is the mean of the teacher token states whose spans overlap it.
A token with no overlapping teacher token (special tokens, text the teacher truncated) has no
target and is not distilled. Spans are half-open ``[start, end)``; ``(0, 0)`` is empty and
overlaps nothing.
"""

from __future__ import annotations

import numpy as np


def overlap_matrix(student: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """``[Ls, 2]`` x ``[Lt, 2]`` spans -> ``[Ls, Lt]`` bool: do the two tokens share a character?"""
    start = np.maximum(student[:, None, 0], teacher[None, :, 0])
    stop = np.minimum(student[:, None, 1], teacher[None, :, 1])
    nonempty = (student[:, None, 1] > student[:, None, 0]) & (
        teacher[None, :, 1] > teacher[None, :, 0]
    )
    return (start < stop) & nonempty


def aligned_states(
    student: np.ndarray, teacher: np.ndarray, states: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per student token, the mean of the overlapping teacher states ``[Ls, D]``, and whether it
    has any (``[Ls]`` bool). Rows without overlap are zero."""
    overlap = overlap_matrix(student, teacher)
    counts = overlap.sum(1)
    weights = overlap / np.maximum(counts, 1)[:, None]
    return (weights.astype(np.float32) @ states.astype(np.float32)), counts > 0
