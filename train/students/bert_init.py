"""An offline pretrained student: ``--student visualbert-init:minilm`` (or ``:<BERT folder>``).

VisualBERT's text side has BERT's exact layout, so every BERT tensor (word, position and type
embeddings, the encoder layers, the pooler) is copied from a BERT-family checkpoint on disk;
VisualBERT's visual type and position embeddings start as copies of the text ones (VisualBERT's
own ``special_visual_initialize``), and its visual projection is new. With the packaged
all-MiniLM-L6-v2 (BERT-uncased vocabulary, 6 layers, width 384) this gives a pretrained
single-stream student on a machine without a model hub. Its tokenizer is the checkpoint's, so
with the MiniLM text teacher the student reads the teacher's own token ids.
"""

from __future__ import annotations

from pathlib import Path

import torch

from train.students.base import StudentContext
from train.students.hf import (
    MINILM,
    VisualBertStudent,
    check_vocabulary,
    load_tokenizer,
    packaged_minilm,
)

# the BertConfig settings VisualBertConfig shares
SHARED_CONFIG = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
    "max_position_embeddings", "type_vocab_size", "initializer_range", "layer_norm_eps",
    "pad_token_id",
)  # fmt: skip
# VisualBERT tensors initialised from text ones (not in a BERT checkpoint)
VISUAL_COPIES = {
    "embeddings.visual_token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "embeddings.visual_position_embeddings.weight": "embeddings.position_embeddings.weight",
}


def bert_folder(source: str) -> Path:
    path = packaged_minilm() if source == MINILM else Path(source)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"--student visualbert-init:{source}: {path} has no config.json; give a folder "
            "holding a BERT-family checkpoint (config.json, weights, vocabulary), or 'minilm'"
        )
    return path


def visualbert_from_bert(source: str, context: StudentContext) -> VisualBertStudent:
    from transformers import AutoModel, VisualBertConfig, VisualBertModel

    folder = bert_folder(source)
    bert = AutoModel.from_pretrained(folder, dtype=torch.float32)
    if bert.config.model_type != "bert":
        raise ValueError(
            f"--student visualbert-init:{source} is a {bert.config.model_type!r} checkpoint; "
            "VisualBERT's text side copies a BERT ('bert') checkpoint tensor for tensor"
        )
    config = VisualBertConfig(
        **{name: getattr(bert.config, name) for name in SHARED_CONFIG},
        visual_embedding_dim=context.visual_shape[-1],
        special_visual_initialize=True,
    )
    model = VisualBertModel(config)
    copied = copy_bert_weights(bert.state_dict(), model)
    tokenizer = load_tokenizer(str(folder), context.tokenizer)
    check_vocabulary(tokenizer, config.vocab_size, f"visualbert-init:{source}")
    student = VisualBertStudent(model, tokenizer, context)
    info = student.info
    info.kind = "VisualBERT, text side initialised from a BERT checkpoint"
    info.source = f"visualbert-init:{source} ({folder})"
    info.loaded = len(copied)
    info.missing = sorted(set(model.state_dict()) - set(copied))
    info.unexpected = sorted(set(bert.state_dict()) - set(copied))
    info.notes.append(
        f"{len(copied)} BERT tensors copied; visual type and position embeddings start as "
        "copies of the text ones; the visual projection is new"
    )
    return student


@torch.no_grad()
def copy_bert_weights(bert_state: dict[str, torch.Tensor], model) -> list[str]:
    """Copy every tensor with the same name and shape; returns the names copied."""
    target = model.state_dict()
    copied = []
    for name, value in bert_state.items():
        if name in target and target[name].shape == value.shape:
            target[name].copy_(value)
            copied.append(name)
    for visual, text in VISUAL_COPIES.items():
        target[visual].copy_(target[text])
    return copied
