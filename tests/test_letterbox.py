"""The one geometry between photos and the model's square input."""

import numpy as np
import pytest
import torch

from petseg.data.labels import IGNORE_INDEX
from petseg.data.letterbox import Letterbox, mean_fill, normalize


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
