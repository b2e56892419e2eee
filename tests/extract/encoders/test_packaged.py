"""The offline teachers equal their libraries and really carry their pretrained weights."""

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image

from extract.encoders import create_encoders
from extract.encoders.packaged import minilm_path

MILITARY_UNIFORM = 652  # ImageNet class of the classic Grace Hopper photo


@pytest.fixture(scope="module")
def minilm():
    (encoder,) = create_encoders("minilm", max_length=16)
    return encoder


@pytest.fixture(scope="module")
def effnet():
    (encoder,) = create_encoders("effnet-lite0")
    return encoder


def grace_hopper(size: int) -> torch.Tensor:
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    image = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0)


def test_minilm_equals_mean_pooled_transformers_output(minilm):
    from transformers import AutoModel, AutoTokenizer

    texts = ["a red cube left of a blue sphere", "what colour is the pyramid ?"]
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModel.from_pretrained(minilm_path()).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        reference = (hidden * mask).sum(1) / mask.sum(1)
        ids, lengths = minilm.tokenize(texts)
        out = minilm.encode(ids, lengths)
    assert ids.shape == (2, 16) and lengths.tolist() == batch["attention_mask"].sum(1).tolist()
    assert torch.allclose(out["global"], reference, atol=1e-5)
    width = hidden.shape[1]
    assert torch.allclose(out["tokens"][:, :width], hidden * mask, atol=1e-5)
    assert out["tokens"][0, lengths[0] :].abs().max() == 0  # padding zeroed
    assert minilm.fields == {"global": (384,), "tokens": (16, 384)}
    assert minilm.vocab_size == 30522 and int(ids.max()) < minilm.vocab_size


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    texts = ["a lime cylinder", "the violet ring is small"]
    reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(texts)
    with torch.inference_mode():
        pooled = minilm.encode(*minilm.tokenize(texts))["global"]
    normalized = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    assert np.allclose(normalized, reference, atol=1e-5)


def test_effnet_recognises_imagenet_class(effnet):
    with torch.inference_mode():
        logits = effnet.classify(grace_hopper(224))
        out = effnet.encode(grace_hopper(224))
    assert logits.argmax().item() == MILITARY_UNIFORM
    assert logits.softmax(-1)[0, MILITARY_UNIFORM] > 0.3
    assert out["grid"].shape == (1, 49, 1280) and out["global"].shape == (1, 1280)
    assert torch.allclose(out["grid"].mean(1), out["global"])


def test_effnet_grid_is_row_major(effnet):
    with torch.inference_mode():
        feature_map = effnet.features(grace_hopper(224))  # [1, 1280, 7, 7]
        grid = effnet.encode(grace_hopper(224))["grid"]
    assert torch.equal(grid[0, 1 * 7 + 3], feature_map[0, :, 1, 3])


def test_random_controls_differ_deterministically(effnet, minilm):
    (control,) = create_encoders("effnet-lite0:random")
    (again,) = create_encoders("effnet-lite0:random")
    with torch.inference_mode():
        image = grace_hopper(224)
        a, b = control.encode(image)["global"], again.encode(image)["global"]
        real = effnet.encode(image)["global"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, real)
    assert control.fingerprint != effnet.fingerprint and ":random" in control.fingerprint
    (text_control,) = create_encoders("minilm:random", max_length=16)
    assert text_control.fingerprint != minilm.fingerprint
    assert text_control.fields == minilm.fields


def test_fingerprints_name_weights_and_preprocessing(effnet, minilm):
    assert effnet.fingerprint.startswith("effnet-lite0|weights=")
    assert (
        "resize224-bicubic-mean[127.0, 127.0, 127.0]-std[128.0, 128.0, 128.0]" in effnet.fingerprint
    )
    assert minilm.fingerprint.endswith("|tokens16")
    assert effnet.space == "" and minilm.space == ""  # unaligned: no zero-shot scores
