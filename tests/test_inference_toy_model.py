"""A tiny U-Net trained in seconds on the toy pets: the model the inference tests check outputs with.

It is trained on all 24 toy photos and checked on one of them: these tests check that
probabilities become the right cutouts, not that 24 photos teach a 64 px net to generalise.

The other inference, cutout, export and evaluate tests import `toy_model_file`, `one_thread`
and `toy_photo` from here. Training writes the model once per session under pytest's base
temporary folder, so every module reuses it.
"""

from __future__ import annotations

import numpy as np
import pytest

TRAINING_STEPS = 100
IMAGE_SIZE = 64


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, two threads mostly wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_toy_model(data_root, steps: int = TRAINING_STEPS, seed: int = 0):
    """A hundred Adam steps of unet_diy (width 8, 64 px) on letterboxed toy pets."""
    import torch

    from petseg.data.layouts import load_sample, load_samples
    from petseg.data.letterbox import Letterbox, mean_fill, normalize
    from petseg.models import create_model

    torch.manual_seed(seed)
    model = create_model("unet_diy", width=8, image_size=IMAGE_SIZE)
    config = model.config
    images, masks = [], []
    for sample in load_samples(data_root, "all"):
        photo, labels = load_sample(sample)
        box = Letterbox.fit(*photo.shape[:2], IMAGE_SIZE)
        images.append(box.apply_image(photo, mean_fill(config.mean)))
        masks.append(box.apply_mask(labels))
    inputs = normalize(np.stack(images), config.mean, config.std)
    targets = torch.from_numpy(np.stack(masks)).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(inputs), (8,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(inputs[batch]), targets[batch], ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def toy_model_file(tmp_path_factory, toy_data):
    """best.safetensors of a run folder holding the trained toy model (trained once per session)."""
    import torch

    from petseg.models import save_model

    path = tmp_path_factory.getbasetemp() / "toy-run" / "best.safetensors"
    if not path.exists():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            model = train_toy_model(toy_data)
        finally:
            torch.set_num_threads(threads)
        path.parent.mkdir(exist_ok=True)
        save_model(model, path)
    return path


@pytest.fixture(scope="session")
def toy_photo(toy_data):
    """A toy photo (H, W, 3) uint8 the model was trained on, and its labels (H, W): 0 pet, 1 background, 2 border."""
    from petseg.data.layouts import load_sample, load_samples

    return load_sample(load_samples(toy_data, "test")[0])


def foreground_iou(predicted_foreground: np.ndarray, labels: np.ndarray) -> float:
    """IoU of a predicted pet mask with the true pet (pet or border), as METRICS.md's fg_iou."""
    truth = labels != 1
    return float((predicted_foreground & truth).sum() / (predicted_foreground | truth).sum())


@pytest.mark.slow  # trains the session's toy model when it runs first (about 10-20 s)
def test_toy_model_learns_the_pets(toy_model_file, toy_photo):
    """The fixture model is good enough for output checks: its pets come out with fg IoU > 0.8."""
    from petseg.inference import Segmenter

    photo, labels = toy_photo
    probabilities = Segmenter.load(toy_model_file).predict(photo)
    assert probabilities.shape == (3, *photo.shape[:2])
    assert foreground_iou(probabilities.argmax(0) != 1, labels) > 0.8
