"""open_clip and transformers teachers equal their libraries (tiny random models built here)."""

import json

import pytest
import torch

from extract.encoders import create_encoders
from extract.encoders.packaged import minilm_path

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}


@pytest.fixture
def tiny_clip_config(tmp_path):
    path = tmp_path / "tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return path


def images(size: int, count: int = 2) -> torch.Tensor:
    return torch.randint(
        0,
        256,
        (count, 3, size, size),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.uint8,
    )


def test_openclip_towers_equal_encode_image_and_text(tiny_clip_config):
    image, text = create_encoders(f"openclip:{tiny_clip_config}:random", max_length=24)
    assert image.space == text.space != ""  # one shared space: zero-shot scores make sense
    assert image.fields == {"global": (32,), "grid": (16, 64)}
    assert text.fields == {"global": (32,), "tokens": (24, 32)}
    assert text.vocab_size == 49408
    model = image.model
    with torch.inference_mode():
        pixels = images(32)
        out = image.encode(pixels)
        model.visual.output_tokens = False
        reference = model.encode_image(image.preprocess.normalize(pixels))
        model.visual.output_tokens = True
        ids, lengths = text.tokenize(["a red cube", "two blue spheres on grass"])
        text_out = text.encode(ids, lengths)
        import open_clip

        text_reference = model.encode_text(
            open_clip.get_tokenizer("tiny-clip")(["a red cube", "two blue spheres on grass"])
        )
    assert torch.allclose(out["global"], reference, atol=1e-6)
    assert out["grid"].shape == (2, 16, 64)
    assert torch.allclose(text_out["global"], text_reference, atol=1e-5)
    assert lengths.tolist() == [5, 7]  # start, 3 or 5 words, end


def test_openclip_local_checkpoint_round_trip(tiny_clip_config, tmp_path):
    image, _ = create_encoders(f"openclip:{tiny_clip_config}:random")
    with torch.no_grad():  # make the weights differ from the seeded random init
        for parameter in image.model.parameters():
            parameter.add_(0.01)
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"state_dict": image.model.state_dict()}, checkpoint)
    loaded, _ = create_encoders(f"openclip:{tiny_clip_config}@{checkpoint}")
    with torch.inference_mode():
        assert torch.allclose(
            loaded.encode(images(32))["global"], image.encode(images(32))["global"]
        )
    assert loaded.weights_sha256 != image.weights_sha256
    assert str(checkpoint) in loaded.fingerprint


def test_openclip_missing_checkpoint_is_named(tiny_clip_config):
    with pytest.raises(FileNotFoundError, match="checkpoint /nowhere.pt does not exist"):
        create_encoders(f"openclip:{tiny_clip_config}@/nowhere.pt")


def save_tiny_bert(directory):
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(directory)


def test_hf_text_model_is_mean_pooled(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    save_tiny_bert(tmp_path)
    (text,) = create_encoders(f"hf:{tmp_path}", max_length=12)
    assert text.modality == "text" and text.fields == {"global": (32,), "tokens": (12, 32)}
    model = AutoModel.from_pretrained(tmp_path).eval()
    batch = AutoTokenizer.from_pretrained(tmp_path)(["a small violet ring"], return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
        out = text.encode(*text.tokenize(["a small violet ring"]))
    assert torch.allclose(out["global"], hidden.mean(1), atol=1e-5)


def test_hf_vision_model_grid_drops_cls(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    ViTModel(config).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    (vision,) = create_encoders(f"hf:{tmp_path}")
    assert vision.modality == "image" and vision.fields == {"global": (32,), "grid": (16, 32)}
    with torch.inference_mode():
        pixels = images(32)
        out = vision.encode(pixels)
        hidden = vision.model(pixel_values=vision.preprocess.normalize(pixels)).last_hidden_state
    assert torch.equal(out["grid"], hidden[:, 1:])
    assert vision.preprocess.mean == (127.5, 127.5, 127.5)


def test_hf_clip_towers_equal_get_features(tmp_path):
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    torch.manual_seed(0)
    tower = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
    }
    text_config = {**tower, "vocab_size": 30522, "eos_token_id": 102, "max_position_embeddings": 40}
    vision_config = {**tower, "image_size": 32, "patch_size": 8}
    config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=16)
    CLIPModel(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path)
    image, text = create_encoders(f"hf:{tmp_path}", max_length=12)
    assert image.space == text.space != ""
    model = image.model
    with torch.inference_mode():
        pixels = images(32)
        reference = model.get_image_features(pixel_values=image.preprocess.normalize(pixels))
        ids, lengths = text.tokenize(["a red cube"])
        text_reference = model.get_text_features(
            input_ids=ids, attention_mask=(torch.arange(12) < lengths[0]).long()[None]
        )
        assert torch.allclose(
            image.encode(pixels)["global"],
            getattr(reference, "pooler_output", reference),
            atol=1e-5,
        )
        got = text.encode(ids, lengths)["global"]
    assert torch.allclose(got, getattr(text_reference, "pooler_output", text_reference), atol=1e-5)


def test_an_openclip_id_without_weights_is_refused(tiny_clip_config):
    """A random model must never pass for a real teacher: ARCH alone needs :random."""
    with pytest.raises(ValueError, match=r"names no weights.*ViT-B-16/TAG; tags for ViT-B-16: "):
        create_encoders("openclip:ViT-B-16")
    with pytest.raises(ValueError, match="openai"):  # the message lists the tags there are
        create_encoders("openclip:ViT-B-16")
    with pytest.raises(ValueError, match=r"tags for tiny-clip: none"):
        create_encoders(f"openclip:{tiny_clip_config}")
