"""How a student reads the cached texts, and where its per-token text targets come from.

- :class:`TeacherTokens`: the student reads the text teacher's own token ids from the cache, so
  student token j is teacher token j and its target is the cached state j (the own students; and
  any student whose tokenizer gives exactly the cached ids, e.g. a MiniLM-initialised student
  with the MiniLM teacher).
- :class:`StudentTokens`: the student tokenizes the stored texts itself; each token's target is
  the mean of the teacher tokens whose character spans overlap it (:mod:`train.align`).
"""

from __future__ import annotations

import numpy as np
import torch

from extract.store import CacheReader
from train.align import aligned_states

IDENTITY_PROBE = 512  # training samples whose texts decide whether two tokenizers agree


def stack(samples: list[dict], name: str) -> torch.Tensor:
    return torch.from_numpy(np.stack([s[name] for s in samples]))


def gold_rows(values: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """``[B, C, ...]`` -> ``[B, G, ...]``: each group's gold candidate."""
    return values[torch.arange(len(values))[:, None], gold]


class TeacherTokens:
    """The cached token ids; targets at the same positions.

    ``special_ids``: token ids that get no target. A pretrained student reading the cached ids
    (its tokenizer is the teacher's) leaves its special tokens undistilled, as it would with
    its own tokenizer; the own students distil every real token (``None``), as they always did.
    """

    input_fields = ("token_ids", "token_len")
    target_fields = ("txt_tok",)
    description = "the text teacher's token ids; token j's target is teacher token j"

    def __init__(self, special_ids: list[int] | None = None):
        self.special_ids = None if special_ids is None else torch.tensor(sorted(special_ids))

    def inputs(self, samples: list[dict]) -> dict:
        return {
            "token_ids": stack(samples, "token_ids").long(),
            "token_len": stack(samples, "token_len").long(),
        }

    def token_targets(self, samples: list[dict], gold: torch.Tensor, inputs: dict):
        """``[B, G, L, D]`` targets of each group's gold text, and ``[B, G, L]`` which tokens
        have one (None: every real token)."""
        targets = gold_rows(stack(samples, "txt_tok").float(), gold)
        if self.special_ids is None:
            return targets, None
        return targets, ~torch.isin(gold_rows(inputs["token_ids"], gold), self.special_ids)


class StudentTokens:
    """The student's own tokenizer over the stored texts; targets aligned by character spans."""

    input_fields = ()
    target_fields = ("txt_tok", "token_spans")

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.description = (
            f"the student's tokenizer ({type(tokenizer).__name__}); each token's target is the "
            "mean of the teacher tokens its characters overlap"
        )

    def inputs(self, samples: list[dict]) -> dict:
        texts = [text for sample in samples for text in sample["meta"]["texts"]]
        encoded = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="np",
        )
        shape = (len(samples), len(texts) // len(samples), -1)
        offsets = encoded["offset_mapping"].astype(np.int32)
        offsets[encoded["special_tokens_mask"].astype(bool)] = 0  # special tokens: no span
        return {
            "token_ids": torch.from_numpy(encoded["input_ids"].astype(np.int64)).reshape(shape),
            "token_len": torch.from_numpy(encoded["attention_mask"].sum(1))
            .long()
            .reshape(shape[:2]),
            "offsets": offsets.reshape(*shape, 2),
        }

    def token_targets(self, samples: list[dict], gold: torch.Tensor, inputs: dict):
        """Aligned ``[B, G, L, D]`` targets and ``[B, G, L]`` whether each token has one."""
        offsets = inputs["offsets"]
        count, groups, length = len(samples), gold.shape[1], offsets.shape[2]
        width = samples[0]["txt_tok"].shape[-1]
        targets = np.zeros((count, groups, length, width), dtype=np.float32)
        valid = np.zeros((count, groups, length), dtype=bool)
        for row, sample in enumerate(samples):
            for group in range(groups):
                text = int(gold[row, group])
                targets[row, group], valid[row, group] = aligned_states(
                    offsets[row, text], sample["token_spans"][text], sample["txt_tok"][text]
                )
        return torch.from_numpy(targets), torch.from_numpy(valid)


def text_reader(tokenizer, max_length: int | None, cache: CacheReader, split: str):
    """:class:`TeacherTokens` when the student reads the cached ids (no tokenizer of its own, or
    one that gives exactly the cached ids, untruncated, for the first training samples' texts),
    else :class:`StudentTokens`."""
    cached_length = cache.fields["token_ids"].shape[-1]
    if tokenizer is None:
        return TeacherTokens()
    if max_length is not None and max_length >= cached_length:
        if gives_cached_ids(tokenizer, cache, split, cached_length):
            reader = TeacherTokens(tokenizer.all_special_ids)
            reader.description = (
                f"the text teacher's token ids: the student's tokenizer "
                f"({type(tokenizer).__name__}) gives exactly the cached ids; special tokens "
                "are not distilled"
            )
            return reader
    return StudentTokens(tokenizer, max_length or cached_length)


def gives_cached_ids(tokenizer, cache: CacheReader, split: str, length: int) -> bool:
    """Does ``tokenizer`` turn the stored texts into exactly the cached ids, none of them cut
    by the teacher's length (first :data:`IDENTITY_PROBE` training samples)? A text the teacher
    truncated rules it out: read through the cached ids the student would never see its end."""
    for number, sample in enumerate(cache.split(split, fields=["token_ids", "token_len"])):
        if number == IDENTITY_PROBE:
            break
        ids = tokenizer(list(sample["meta"]["texts"]))["input_ids"]
        for row, text_ids in enumerate(ids):
            cached = sample["token_ids"][row]
            if len(text_ids) != int(sample["token_len"][row]) or len(text_ids) > length:
                return False
            if not np.array_equal(np.asarray(text_ids), cached[: len(text_ids)]):
                return False
    return True
