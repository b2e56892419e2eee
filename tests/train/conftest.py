"""Fixtures of the trainer tests: the packaged BERT-uncased tokenizer and tiny random
transformers VL students written with ``save_pretrained``, as a user's checkpoint would be."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def wordpiece():
    from transformers import AutoTokenizer

    from train.students.hf import packaged_minilm

    return AutoTokenizer.from_pretrained(packaged_minilm())


def save_tiny(model, folder, tokenizer=None):
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def vilt_dir(tmp_path_factory, wordpiece):
    """ViLT with 2 px patches: the tiny cache's 8 px images become 4 x 4 patches."""
    from transformers import ViltConfig, ViltModel

    torch.manual_seed(0)
    config = ViltConfig(
        vocab_size=len(wordpiece), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, image_size=8, patch_size=2, max_position_embeddings=40,
    )  # fmt: skip
    return save_tiny(ViltModel(config), tmp_path_factory.mktemp("vilt"), wordpiece)


@pytest.fixture(scope="session")
def visualbert_dir(tmp_path_factory, wordpiece):
    """VisualBERT expecting 24-wide visual features (the tiny cache's are 48 or 6 wide)."""
    from transformers import VisualBertConfig, VisualBertModel

    torch.manual_seed(0)
    config = VisualBertConfig(
        vocab_size=len(wordpiece), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, visual_embedding_dim=24, max_position_embeddings=64,
    )  # fmt: skip
    return save_tiny(VisualBertModel(config), tmp_path_factory.mktemp("visualbert"), wordpiece)


@pytest.fixture(scope="session")
def untokenized_dir(tmp_path_factory):
    """A VisualBERT checkpoint shipped without a tokenizer (as uclanlp's are)."""
    from transformers import VisualBertConfig, VisualBertModel

    config = VisualBertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, visual_embedding_dim=8,
    )  # fmt: skip
    return save_tiny(VisualBertModel(config), tmp_path_factory.mktemp("bare"))
