"""The student's [CLS] attention used for token selection."""

import torch

from train.students.own import Block, Student, StudentConfig


def test_cls_attention_equals_the_attention_weights_without_dropout():
    torch.manual_seed(0)
    block = Block(width=16, heads=4, mlp_ratio=2.0, dropout=0.5).train()  # heavy dropout on purpose
    h = torch.randn(3, 7, 16)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[1, -2:] = True
    ours = block.cls_attention(h, padding)
    block.eval()
    _, reference = block.attention(h, h, h, key_padding_mask=padding, need_weights=True)
    assert torch.allclose(ours, reference[:, 0], atol=1e-6)
    assert torch.allclose(ours.sum(-1), torch.ones(3)) and ours[1, -2:].abs().max() == 0


def test_student_shapes_and_padding():
    torch.manual_seed(0)
    student = Student(
        StudentConfig(vocab_size=50, max_text_len=6, num_visual_tokens=4, visual_dim=12)
    )
    out = student(
        torch.randint(0, 256, (2, 4, 12), dtype=torch.uint8),
        torch.randint(1, 50, (2, 6)),
        torch.tensor([6, 2]),
    )
    assert (
        out.cls.shape == (2, 128)
        and out.visual.shape == (2, 4, 128)
        and out.text.shape == (2, 6, 128)
    )
    assert out.text_mask.tolist()[1] == [True, True, False, False, False, False]
    assert out.cls_attention.shape == (2, 10) and out.cls_attention[1, 4 + 2 :].abs().max() == 0
