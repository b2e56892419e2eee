"""Student registry: ``--student ID`` -> the model that encodes (image, text) pairs.

- ``tiny``, ``small``, ``base``: the own single-stream transformer, trained from zero; it reads
  the text teacher's token ids.
- ``hf:<model id or path>``: a transformers VL encoder, ViLT (pixels) or VisualBERT (cached
  features), with its own tokenizer.
- ``visualbert-init:minilm``, ``visualbert-init:<BERT folder>``: VisualBERT whose text side is
  copied from a BERT-family checkpoint on disk (offline and pretrained).

Heavy libraries are imported by each factory, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from train.students.base import StudentBase, StudentContext, StudentInfo, StudentOutput
from train.students.own import SIZES

Factory = Callable[[str, StudentContext], StudentBase]
FACTORIES: dict[str, Factory] = {}
ID_FORMS = {
    "own": " | ".join(SIZES),
    "hf": "hf:<model id or local path>",
    "visualbert-init": "visualbert-init:minilm | visualbert-init:<BERT folder>",
}


def register(prefix: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        FACTORIES[prefix] = factory
        return factory

    return add


def known_ids() -> str:
    return ", ".join(ID_FORMS.values())


def create_student(student_id: str, context: StudentContext) -> StudentBase:
    """The student ``student_id`` names, built for what the cache offers."""
    if student_id in SIZES:
        return FACTORIES["own"](student_id, context)
    prefix, _, rest = student_id.partition(":")
    if prefix not in FACTORIES or prefix == "own" or not rest:
        raise ValueError(f"unknown --student {student_id!r}; known: {known_ids()}")
    return FACTORIES[prefix](rest, context)


@register("own")
def _own(size: str, context: StudentContext) -> StudentBase:
    from train.students.own import own_student

    return own_student(size, context)


@register("hf")
def _hf(source: str, context: StudentContext) -> StudentBase:
    from train.students.hf import hf_student

    return hf_student(source, context)


@register("visualbert-init")
def _visualbert_init(source: str, context: StudentContext) -> StudentBase:
    from train.students.bert_init import visualbert_from_bert

    return visualbert_from_bert(source, context)


__all__ = [
    "StudentBase",
    "StudentContext",
    "StudentInfo",
    "StudentOutput",
    "create_student",
    "known_ids",
    "register",
]
