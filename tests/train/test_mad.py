"""The MAD objective on hand-built tensors."""

import pytest
import torch

from train.mad import (
    DistillConfig,
    DistillHeads,
    branch_distance,
    centre_normalize,
    distill_loss,
    normalize_weights,
    resample_grid,
    top_k_mask,
)
from train.students import StudentOutput


def test_top_k_picks_the_highest_valid_scores():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.8, 0.7, 0.6, 0.9]])
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    assert top_k_mask(scores, valid, 2).tolist() == [
        [False, True, True, False],
        [True, True, False, False],
    ]
    # a fraction of each row's valid tokens, rounded up: 4 * 0.5 = 2 and 3 * 0.5 -> 2
    assert top_k_mask(scores, valid, 0.5).sum(1).tolist() == [2, 2]
    # fewer valid tokens than k: all of them
    assert top_k_mask(scores, valid, 10).tolist() == valid.tolist()


def test_naive_uses_every_valid_token_and_mad_only_the_selected():
    projected = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # [1, 3, 2]
    targets = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    attention = torch.tensor([[0.2, 0.7, 0.1]])
    naive = branch_distance(projected, targets, valid, attention, DistillConfig(mode="naive"))
    assert naive.tolist() == pytest.approx([(0.0 + 1.0) / 2])  # the padded token is ignored
    mad = branch_distance(projected, targets, valid, attention, DistillConfig(mode="mad", topk=1))
    assert mad.tolist() == pytest.approx([1.0])  # token 1 has the most [CLS] attention
    least = branch_distance(
        projected, targets, valid, attention, DistillConfig(select="similarity", topk=1)
    )
    assert least.tolist() == pytest.approx([1.0])  # the token the student matches least


def test_grid_resampling_maps_cells_to_patches():
    teacher = torch.arange(16.0).reshape(1, 16, 1)  # a 4x4 grid, cell value = its index
    down = resample_grid(teacher, 4)[0, :, 0]  # to 2x2: mean of each 2x2 block
    assert down.tolist() == [
        (0 + 1 + 4 + 5) / 4,
        (2 + 3 + 6 + 7) / 4,
        (8 + 9 + 12 + 13) / 4,
        (10 + 11 + 14 + 15) / 4,
    ]
    small = torch.arange(4.0).reshape(1, 4, 1)  # 2x2 -> 4x4: each patch takes the cell it lies in
    up = resample_grid(small, 16)[0, :, 0].reshape(4, 4)
    assert up.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    with pytest.raises(ValueError, match="not square"):
        resample_grid(torch.zeros(1, 12, 3), 4)


def test_centring_uses_the_stored_mean():
    mean = torch.tensor([5.0, 5.0, 5.0])
    values = torch.tensor([[8.0, 5.0, 9.0]])
    assert centre_normalize(values, mean)[0].tolist() == pytest.approx([0.6, 0.0, 0.8])


def test_weights_are_normalized_over_the_batch():
    assert normalize_weights(torch.tensor([1.0, 3.0])).tolist() == [0.5, 1.5]
    assert normalize_weights(torch.ones(4)).tolist() == [1.0] * 4


def fixed_output(width=2, tokens=4, length=3):
    torch.manual_seed(0)
    visual = torch.randn(2, tokens, width, requires_grad=True)
    text = torch.randn(2, length, width, requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    attention = torch.rand(2, tokens + length)
    return StudentOutput(visual.mean(1), visual, text, mask, attention), visual, text


def test_none_is_zero_and_weights_scale_the_loss():
    out, _, _ = fixed_output()
    heads = DistillHeads(2, 2, 2)
    targets = {"img_grid": torch.randn(2, 4, 2), "txt_tok": torch.randn(2, 3, 2)}
    means = {"img_grid": torch.zeros(2), "txt_tok": torch.zeros(2)}
    loss, stats = distill_loss(out, heads, targets, means, None, DistillConfig(mode="none"))
    assert loss.item() == 0.0 and stats["vis"].item() == 0.0
    one, _ = distill_loss(out, heads, targets, means, torch.ones(2), DistillConfig(weight=2.0))
    skewed, _ = distill_loss(
        out, heads, targets, means, torch.tensor([1.0, 0.0]), DistillConfig(weight=2.0)
    )
    plain, _ = distill_loss(out, heads, targets, means, None, DistillConfig(weight=1.0))
    assert one.item() == pytest.approx(2 * plain.item())
    assert skewed.item() != pytest.approx(one.item())
    only_vis, stats = distill_loss(
        out, heads, targets, means, None, DistillConfig(branches=("vis",))
    )
    assert stats["txt"].item() == 0.0 and only_vis.item() == pytest.approx(stats["vis"].item())


def test_exact_value_with_identity_heads():
    out, _, _ = fixed_output()
    heads = DistillHeads(2, 2, 2)
    with torch.no_grad():
        for head in (heads.vis, heads.txt):
            head.weight.copy_(torch.eye(2))
            head.bias.zero_()
    targets = {
        "img_emb": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        "txt_emb": torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
    }
    means = {"img_emb": torch.zeros(2), "txt_emb": torch.zeros(2)}
    config = DistillConfig(mode="naive", target="global")
    loss, stats = distill_loss(out, heads, targets, means, None, config)
    unit = torch.nn.functional.normalize
    vis = (1 - (unit(out.visual, dim=-1) * targets["img_emb"][:, None]).sum(-1)).mean(1).mean()
    cos_txt = (unit(out.text, dim=-1) * targets["txt_emb"][:, None]).sum(-1)
    txt = torch.stack([(1 - cos_txt[0, :2]).mean(), (1 - cos_txt[1]).mean()]).mean()
    assert stats["vis"].item() == pytest.approx(vis.item(), abs=1e-6)
    assert stats["txt"].item() == pytest.approx(txt.item(), abs=1e-6)
    assert loss.item() == pytest.approx(vis.item() + txt.item(), abs=1e-6)


def test_gradients_reach_heads_and_student_never_targets():
    out, visual, text = fixed_output()
    heads = DistillHeads(2, 2, 2)
    targets = {
        "img_grid": torch.randn(2, 16, 2, requires_grad=True),
        "txt_tok": torch.randn(2, 3, 2, requires_grad=True),
    }
    means = {"img_grid": torch.zeros(2), "txt_tok": torch.zeros(2)}
    loss, _ = distill_loss(
        out, heads, targets, means, torch.tensor([0.5, 2.0]), DistillConfig(topk=2)
    )
    loss.backward()
    assert heads.vis.weight.grad.abs().sum() > 0 and heads.txt.weight.grad.abs().sum() > 0
    assert visual.grad.abs().sum() > 0 and text.grad.abs().sum() > 0
    assert targets["img_grid"].grad is None and targets["txt_tok"].grad is None


def test_bad_flags_are_named():
    with pytest.raises(ValueError, match="--distill 'kd'"):
        DistillConfig(mode="kd")
    with pytest.raises(ValueError, match="--branches"):
        DistillConfig(branches=("audio",))
