"""The one geometry between photos and the model's square input."""

import numpy as np
import pytest
import torch

from petseg.data.labels import IGNORE_INDEX
from petseg.data.letterbox import Letterbox, mean_fill, normalize, normalize_array


@pytest.mark.parametrize("height, width", [(375, 500), (500, 375), (224, 224), (7, 900)])
def test_fit_keeps_aspect_and_centres(height, width):
    box = Letterbox.fit(height, width, 224)
    assert max(box.height, box.width) == 224
    assert abs(box.height / box.width - height / width) < 0.05 or min(box.height, box.width) <= 2
    assert box.top == (224 - box.height) // 2 and box.left == (224 - box.width) // 2


def test_image_padding_is_the_fill_and_mask_padding_is_ignored():
    image = np.full((100, 200, 3), 200, np.uint8)
    mask = np.ones((100, 200), np.uint8)
    box = Letterbox.fit(100, 200, 64)
    assert (box.height, box.width, box.top) == (32, 64, 16)
    boxed = box.apply_image(image, fill=(1, 2, 3))
    boxed_mask = box.apply_mask(mask)
    assert boxed.shape == (64, 64, 3) and boxed_mask.shape == (64, 64)
    assert (boxed[:16] == (1, 2, 3)).all() and (boxed[48:] == (1, 2, 3)).all()
    assert (boxed[16:48] == 200).all()
    assert (boxed_mask[:16] == IGNORE_INDEX).all() and (boxed_mask[16:48] == 1).all()


def test_mask_resize_invents_no_labels():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, (97, 131)).astype(np.uint8)
    boxed = Letterbox.fit(97, 131, 50).apply_mask(mask)
    assert set(np.unique(boxed)) <= {0, 1, 2, IGNORE_INDEX}


def test_restore_inverts_the_geometry():
    box = Letterbox.fit(60, 120, 32)
    # A map that is 1 on the left half of the photo, 0 on the right half, 5 in the padding.
    maps = torch.full((1, 1, 32, 32), 5.0)
    maps[..., box.top : box.top + box.height, box.left : box.left + box.width] = 0.0
    maps[..., box.top : box.top + box.height, box.left : box.left + box.width // 2] = 1.0
    restored = box.restore(maps)
    assert restored.shape == (1, 1, 60, 120)
    assert restored.max() <= 1.0 + 1e-6  # no padding leaks in
    assert torch.allclose(restored[..., :, :55], torch.ones(1), atol=1e-6)
    assert torch.allclose(restored[..., :, 65:], torch.zeros(1), atol=1e-6)


def test_normalize_turns_the_mean_fill_into_zero():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = np.broadcast_to(np.array(mean_fill(mean), np.uint8), (2, 4, 4, 3)).copy()
    tensor = normalize(pixels, mean, std)
    assert tensor.shape == (2, 3, 4, 4) and tensor.dtype == torch.float32
    assert tensor.abs().max() < 0.01  # rounding to uint8 costs at most half a level / std
    assert normalize(pixels[0], mean, std).shape == (3, 4, 4)


# Inference (numpy) and training (torch) preprocessing must agree to float32 rounding.
PREPROCESS_TOLERANCE = 1e-5
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_numpy_normalize_equals_the_training_torch_normalize_and_the_formula():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 9, 27, 3), dtype=np.uint8)  # 1:3, every channel distinct
    pixels[0, 0, 0] = (0, 128, 255)
    by_numpy = normalize_array(pixels, MEAN, STD)
    assert by_numpy.shape == (2, 3, 9, 27) and by_numpy.dtype == np.float32
    np.testing.assert_allclose(by_numpy, normalize(pixels, MEAN, STD).numpy(), rtol=0, atol=PREPROCESS_TOLERANCE)
    # Independent of the shared scale/shift: the definition, in float64.
    by_definition = (pixels.transpose(0, 3, 1, 2) / 255.0 - np.reshape(MEAN, (1, 3, 1, 1))) / np.reshape(STD, (1, 3, 1, 1))
    np.testing.assert_allclose(by_numpy, by_definition, rtol=0, atol=PREPROCESS_TOLERANCE)
    np.testing.assert_allclose(normalize_array(pixels[1], MEAN, STD), by_numpy[1], rtol=0, atol=0)


@pytest.mark.parametrize("height, width", [(40, 120), (120, 40)])  # 3:1 and 1:3
def test_segmenter_preprocessing_equals_the_training_pipeline(height, width):
    """Segmenter.preprocess (numpy) == letterbox + torch normalize as the data loader does it."""
    from petseg.inference import Segmenter
    from petseg.models.config import ModelConfig

    class Config:  # a backend stand-in: preprocessing reads only the config
        config = ModelConfig("unet_diy", image_size=64, mean=MEAN, std=STD)

    rng = np.random.default_rng(1)
    photos = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8), rng.integers(0, 256, (width, height, 3), dtype=np.uint8)]
    batch, boxes = Segmenter(Config()).preprocess(photos)
    for photo, box, square in zip(photos, boxes, batch):
        assert box == Letterbox.fit(photo.shape[0], photo.shape[1], 64)
        training = normalize(box.apply_image(photo, mean_fill(MEAN)), MEAN, STD).numpy()
        np.testing.assert_allclose(square, training, rtol=0, atol=PREPROCESS_TOLERANCE)
    wide = boxes[0] if width > height else boxes[1]
    assert (wide.width, wide.height, wide.top, wide.left) == (64, 21, 21, 0)
    # The padding normalises to (almost) zero: the mean colour, rounded to uint8.
    assert np.abs(batch[0 if width > height else 1][:, : wide.top]).max() < 0.01
