"""The offline pretrained student: VisualBERT whose text side is the packaged MiniLM."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.train.tiny_cache import build
from train.students import StudentContext, create_student
from train.students.hf import packaged_minilm
from train.text_inputs import TeacherTokens
from train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def student():
    context = StudentContext("pixels", "pixels", (4, 48), vocab_size=30522, max_text_len=6)
    return create_student("visualbert-init:minilm", context)


def test_every_bert_tensor_is_copied_exactly(student):
    packaged = load_file(packaged_minilm() / "model.safetensors")
    packaged = {name.removeprefix("bert."): value for name, value in packaged.items()}
    state = student.model.state_dict()
    shared = [name for name in packaged if name in state]
    assert len(shared) == student.info.loaded == 103  # embeddings 5, 6 layers x 16, pooler 2
    assert set(packaged) - set(shared) == {"embeddings.position_ids"}  # an arange, not a weight
    assert student.info.unexpected == []
    for name in shared:
        assert torch.equal(state[name], packaged[name]), name
    embeddings = "embeddings.{}_embeddings.weight"
    for kind in ("token_type", "position"):  # VisualBERT's special_visual_initialize
        visual = state[embeddings.format(f"visual_{kind}")]
        assert torch.equal(visual, packaged[embeddings.format(kind)])
    assert set(student.info.missing) == {
        "embeddings.visual_projection.weight",
        "embeddings.visual_projection.bias",
        "embeddings.visual_token_type_embeddings.weight",
        "embeddings.visual_position_embeddings.weight",
    }
    assert student.model.config.hidden_size == 384 and student.model.config.num_hidden_layers == 6
    assert student.model.config.visual_embedding_dim == 48  # the cached pixels, no projection
    assert student.info.adapters == ["pixels: learned position per grid cell (4 cells)"]


@pytest.mark.slow
def test_with_the_minilm_teacher_it_reads_the_cached_ids(tmp_path, student):
    cache = build(tmp_path / "cache", "snli_ve", tokenizer=student.tokenizer)
    config = TrainConfig(
        cache=cache, out=tmp_path / "run", epochs=1, batch_size=16, student="visualbert-init:minilm"
    )
    trainer = Trainer(config)
    assert isinstance(trainer.text, TeacherTokens)  # identity: the teacher's own targets
    assert trainer.fields.inputs == ["pixels", "token_ids", "token_len"]
    results = trainer.fit()
    assert results["student"]["loaded"] == student.info.loaded
    assert "gives exactly the cached ids" in results["student"]["text_input"]
    assert (tmp_path / "run" / "best_hf" / "model.safetensors").is_file()


def test_a_folder_without_a_checkpoint_is_named(tmp_path):
    context = StudentContext("pixels", "pixels", (4, 48), vocab_size=50, max_text_len=6)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        create_student(f"visualbert-init:{tmp_path}", context)


def test_pretrained_and_new_parameters_get_their_own_learning_rates(student):
    from train.model import DistilledStudent
    from train.setup import make_optimizer
    from train.tasks import resolve_task

    task = resolve_task("snli_ve", {"name": "snli_ve", "labels": ["e", "n", "c"]}, "cache")
    model = DistilledStudent(student, task, image_dim=8, text_dim=8, distill=True)
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.01, lr_new=1e-3)
    pretrained, new = optimizer.param_groups
    assert (pretrained["lr"], new["lr"]) == (1e-4, 1e-3)
    assert len(pretrained["params"]) == 103  # every tensor copied from MiniLM
    names = {id(p): n for n, p in model.named_parameters()}
    fresh = sorted(names[id(p)] for p in new["params"])
    assert fresh[:3] == [
        "distill_heads.txt.bias",
        "distill_heads.txt.weight",
        "distill_heads.vis.bias",
    ]
    assert "student.adapter.position" in fresh and "head.linear.weight" in fresh
    assert "student.model.embeddings.visual_projection.weight" in fresh
