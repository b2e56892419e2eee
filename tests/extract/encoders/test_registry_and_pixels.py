import pytest
import torch

from extract.encoders import create_encoders, known_ids


def test_unknown_id_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        create_encoders("resnet50")
    message = str(error.value)
    assert "unknown encoder id 'resnet50'" in message
    for form in ("minilm", "effnet-lite0", "openclip:ARCH/TAG", "hf:", "pixels:P", ":random"):
        assert form in message
    assert "pixels:P" in known_ids()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="has no weights, so it has no :random variant"):
        create_encoders("pixels:16:random")
    with pytest.raises(ValueError, match="must be a multiple of P=16"):
        create_encoders("pixels:16@60")
    with pytest.raises(ValueError, match="minilm:x takes no argument"):
        create_encoders("minilm:x")


def test_pixel_patches_are_exact():
    (encoder,) = create_encoders("pixels:2@4")
    assert encoder.fields == {"patches": (4, 12)}
    assert encoder.preprocess.size == 4
    image = torch.arange(3 * 4 * 4, dtype=torch.uint8).reshape(1, 3, 4, 4)
    patches = encoder.encode(image)["patches"]
    assert patches.dtype == torch.uint8 and patches.shape == (1, 4, 12)
    # patch 1 is the top-right 2x2 block; its pixels in row-major order, channels last
    expected = [image[0, c, y, x].item() for y in (0, 1) for x in (2, 3) for c in range(3)]
    assert patches[0, 1].tolist() == expected
    # patch 2 is the bottom-left block
    assert patches[0, 2, :3].tolist() == [image[0, c, 2, 0].item() for c in range(3)]
    assert encoder.fingerprint.startswith("pixels:2@4|weights=none|")
