"""Segmenter, remove_background and the alpha/compositing pieces, on a trained toy model."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from petseg.errors import PetsegError
from tests.test_inference_toy_model import foreground_iou, one_thread, toy_model_file, toy_photo  # noqa: F401

PET, BACKGROUND = 0, 1


@pytest.fixture(scope="module")
def segmenter(toy_model_file):
    from petseg.inference import Segmenter

    return Segmenter.load(toy_model_file.parent)  # a run folder: its best.safetensors


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


# --- Segmenter ------------------------------------------------------------------------


def test_predict_gives_probabilities_at_each_original_size(segmenter, toy_photo):
    photo, _ = toy_photo
    wide = np.ascontiguousarray(np.concatenate([photo, photo], axis=1))
    single = segmenter.predict(photo)
    results = segmenter.predict([photo, wide])
    assert isinstance(results, list) and len(results) == 2
    assert single.shape == (3, *photo.shape[:2]) and single.dtype == np.float32
    assert results[1].shape == (3, *wide.shape[:2])
    np.testing.assert_allclose(single.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(results[0], single, atol=1e-5)


@pytest.fixture(params=[(60, 180), (180, 60)], ids=["3:1", "1:3"])
def oblong_photo(request, toy_photo):
    """The toy photo stretched to 3:1 or 1:3: letterboxing pads one side by two thirds."""
    height, width = request.param
    return np.asarray(Image.fromarray(toy_photo[0]).resize((width, height), Image.BILINEAR))


def test_oblong_photos_come_back_where_the_training_geometry_puts_them(segmenter, oblong_photo, toy_model_file):
    """Inference (numpy letterbox, Pillow upsampling) == training's path (torch normalize,
    the model, Letterbox.restore with torch's interpolate) on strongly non-square photos."""
    import torch

    from petseg.data.letterbox import Letterbox, mean_fill, normalize
    from petseg.inference import remove_background
    from petseg.models import load_model

    photo = oblong_photo
    height, width = photo.shape[:2]
    model = load_model(toy_model_file)
    config = model.config
    box = Letterbox.fit(height, width, config.image_size)
    square = normalize(box.apply_image(photo, mean_fill(config.mean)), config.mean, config.std)[None]
    with torch.inference_mode():
        expected = box.restore(torch.softmax(model(square), dim=1))[0].numpy()
    restored = segmenter.predict(photo)
    assert restored.shape == (3, height, width)
    np.testing.assert_allclose(restored, expected, rtol=0, atol=1e-4)
    [prediction] = segmenter.predict_batch([photo])
    assert prediction.alpha().shape == (height, width)
    np.testing.assert_array_equal(prediction.labels(), restored.argmax(0))
    assert remove_background(photo, segmenter=segmenter).shape == (height, width, 4)


def test_flip_tta_averages_the_photo_and_its_mirror(segmenter, toy_photo):
    from petseg.inference import Segmenter

    photo, _ = toy_photo
    # A size whose letterbox pads both sides equally, so mirroring the photo mirrors its square.
    photo = np.ascontiguousarray(photo[: photo.shape[1] // 2 * 2 - 16, :])
    tta = Segmenter(segmenter.backend, flip_tta=True)
    plain, mirrored = segmenter.predict(photo), segmenter.predict(np.ascontiguousarray(photo[:, ::-1]))
    expected = (plain + mirrored[..., ::-1]) / 2
    assert np.abs(plain - expected).max() > 1e-3  # the mirror does change the answer: the check can fail
    np.testing.assert_allclose(tta.predict(photo), expected, atol=1e-5)
    # One backend call gives both views; predict_batch's flip overrides the segmenter's rule.
    views = segmenter.predict_views([photo], (False, True))
    np.testing.assert_allclose(views[True][0].restore(), expected, atol=1e-5)
    np.testing.assert_allclose(views[False][0].restore(), plain, atol=1e-6)
    np.testing.assert_allclose(segmenter.predict_batch([photo], flip=True)[0].restore(), expected, atol=1e-5)


def test_flip_tta_by_default_averages_matted_cutouts_only(segmenter, toy_photo):
    """flip_tta None: matting (the quality path) averages in the mirror; hard, soft, labels
    and plain probabilities show the single answer; True and False decide for all."""
    from petseg.inference import Segmenter, remove_background

    photo, _ = toy_photo
    rules = {flip: Segmenter(segmenter.backend, flip_tta=flip) for flip in (None, True, False)}
    assert [rules[None].flips_for(alpha) for alpha in ("matting", "hard", "soft", None)] == [True, False, False, False]
    for alpha in ("matting", "hard", None):
        assert rules[True].flips_for(alpha) and not rules[False].flips_for(alpha)
    np.testing.assert_array_equal(rules[None].predict(photo), rules[False].predict(photo))

    def cut(flip, alpha):
        return remove_background(photo, segmenter=rules[flip], alpha=alpha, mode="mask")

    np.testing.assert_array_equal(cut(None, "matting"), cut(True, "matting"))
    np.testing.assert_array_equal(cut(None, "soft"), cut(False, "soft"))
    assert np.abs(cut(True, "soft").astype(int) - cut(False, "soft")).max() > 5  # the two views differ here
    with pytest.raises(PetsegError, match="^flip must be True, False or None, got 'yes'$"):
        rules[None].predict_batch([photo], flip="yes")


def test_every_input_type_gives_the_same_prediction(segmenter, toy_photo, tmp_path):
    photo, _ = toy_photo
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(photo))
    expected = segmenter.predict(photo)
    for image in (Image.fromarray(photo), png_bytes(photo), path, str(path)):
        np.testing.assert_allclose(segmenter.predict(image), expected, atol=1e-6)
    # predict_batch, the batch step under predict, takes the same inputs (it took arrays only).
    grey = Image.fromarray(photo).convert("L")
    batch = segmenter.predict_batch([photo, Image.fromarray(photo), path, grey, np.asarray(grey)])
    for prediction in batch[1:3]:
        np.testing.assert_allclose(prediction.probabilities, batch[0].probabilities, atol=1e-6)
    np.testing.assert_allclose(batch[3].probabilities, batch[4].probabilities, atol=1e-6)


def test_lean_alpha_and_labels_match_the_restored_probabilities(segmenter, toy_photo):
    """Prediction.alpha/labels avoid full-size float maps; they must agree with Letterbox.restore."""
    from petseg.inference.compose import soft_alpha

    import torch

    photo, _ = toy_photo
    [prediction] = segmenter.predict_batch([photo])
    restored = prediction.restore()
    torch_restored = prediction.letterbox.restore(torch.from_numpy(prediction.probabilities[None]))[0].numpy()
    np.testing.assert_allclose(restored, torch_restored, atol=1e-4)  # enlarging: Pillow == torch bilinear
    expected_alpha = soft_alpha(restored) * 255
    assert np.abs(prediction.alpha().astype(np.float32) - expected_alpha).max() <= 2.0
    np.testing.assert_array_equal(prediction.labels(), restored.argmax(0))  # the same upsampling path


@pytest.mark.parametrize("height, width", [(1733, 2311), (37, 29), (3000, 31)])
def test_labels_made_in_strips_equal_one_full_size_resize(monkeypatch, height, width):
    """Strips of rows keep a 100-megapixel label map from needing full-size float maps; the
    answer is the full resize's, but where two classes tie within float32 rounding."""
    import petseg.inference.compose as compose

    rng = np.random.default_rng(0)
    probabilities = rng.random((3, 190, 256)).astype(np.float32)
    full = np.stack([compose.upsample(channel, height, width) for channel in probabilities])
    monkeypatch.setattr(compose, "STRIP_PIXELS", 5000)  # dozens of strips at every size here
    labels = compose.upsample_labels(probabilities, height, width)
    assert labels.shape == (height, width) and labels.dtype == np.uint8
    top_two = np.sort(full, axis=0)[-2:]
    near_tie = top_two[1] - top_two[0] < 1e-5
    assert np.array_equal(labels[~near_tie], full.argmax(0)[~near_tie])
    assert near_tie.mean() < 1e-3  # the exemption leaves nearly every pixel checked
    mask = compose.upsample_labels(probabilities, height, width, values=[255, 0, 255])
    assert np.array_equal(mask, np.where(labels == 1, 0, 255))


def test_load_reports_bad_models_in_one_line(tmp_path, toy_model_file):
    from petseg.inference import Segmenter

    (tmp_path / "empty-run").mkdir()
    (tmp_path / "weights.pt").write_bytes(b"not a model")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"x")
    cases = {
        str(tmp_path / "missing.safetensors"): "not found",
        str(tmp_path / "empty-run"): "best.safetensors",
        str(tmp_path / "weights.pt"): ".safetensors or .onnx",
    }
    for model, expected in cases.items():
        with pytest.raises(PetsegError, match=expected):
            Segmenter.load(model)
    with pytest.raises(PetsegError, match="onnx backend"):
        Segmenter.load(onnx_file, backend="torch")
    with pytest.raises(PetsegError, match="not a usable ONNX model"):
        Segmenter.load(onnx_file)
    with pytest.raises(PetsegError, match="backend 'tensorflow'"):
        Segmenter.load(toy_model_file, backend="tensorflow")
    with pytest.raises(PetsegError, match="^a model is a run folder or a model file's path, not 5$"):
        Segmenter.load(5)
    with pytest.raises(PetsegError, match="^flip_tta must be True, False or None, got 'no'$"):  # it turned TTA on
        Segmenter.load(toy_model_file, flip_tta="no")
    with pytest.raises(PetsegError) as raised:
        Segmenter.load(toy_model_file, backend="x" * 100_000)
    assert len(str(raised.value)) < 200


def test_no_bundled_model_is_a_clear_error(monkeypatch, tmp_path):
    from petseg.inference import Segmenter
    from petseg.models import files

    monkeypatch.setattr(files, "WEIGHTS_FOLDER", tmp_path)
    with pytest.raises(PetsegError, match="no bundled model"):
        Segmenter.load()


# --- remove_background ----------------------------------------------------------------


def test_remove_background_returns_the_type_it_was_given(segmenter, toy_photo):
    from petseg.inference import remove_background

    photo, _ = toy_photo
    height, width = photo.shape[:2]
    as_pil = remove_background(Image.fromarray(photo), segmenter=segmenter)
    assert isinstance(as_pil, Image.Image) and as_pil.mode == "RGBA" and as_pil.size == (width, height)
    as_array = remove_background(photo, segmenter=segmenter)
    assert isinstance(as_array, np.ndarray) and as_array.shape == (height, width, 4)
    np.testing.assert_array_equal(as_array, np.asarray(as_pil))
    as_png = remove_background(png_bytes(photo), segmenter=segmenter)
    assert as_png.startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(as_png))), as_array)
    as_jpeg = remove_background(png_bytes(photo), segmenter=segmenter, mode="color")
    assert as_jpeg.startswith(b"\xff\xd8") and Image.open(io.BytesIO(as_jpeg)).size == (width, height)


def test_rgba_is_opaque_on_the_pet_and_transparent_elsewhere(segmenter, toy_photo):
    from petseg.inference import remove_background

    photo, labels = toy_photo
    rgba = remove_background(photo, segmenter=segmenter)
    opaque, clear = rgba[..., 3] == 255, rgba[..., 3] == 0
    assert opaque.any() and clear.any()
    np.testing.assert_array_equal(rgba[..., :3][opaque], photo[opaque])  # matting recolours only partly transparent pixels
    np.testing.assert_array_equal(rgba[clear], 0)  # invisible pixels are transparent black
    for kind in ("hard", "soft"):
        cutout = remove_background(photo, segmenter=segmenter, alpha=kind)
        visible = cutout[..., 3] > 0
        np.testing.assert_array_equal(cutout[..., :3][visible], photo[visible])
        np.testing.assert_array_equal(cutout[~visible], 0)
    alpha = rgba[..., 3].astype(np.float32)
    assert alpha[labels == PET].mean() > 220 and alpha[labels == BACKGROUND].mean() < 35
    assert foreground_iou(alpha >= 128, labels) > 0.8


def test_mask_labels_and_color_modes_agree_with_the_alpha(segmenter, toy_photo):
    from petseg.inference import remove_background

    photo, labels = toy_photo
    rgba = remove_background(photo, segmenter=segmenter)
    alpha, colours = rgba[..., 3], rgba[..., :3]  # the colours matting leaves: the pet's own at its edges
    mask = remove_background(photo, segmenter=segmenter, mode="mask")
    np.testing.assert_array_equal(mask, alpha)

    trimap = remove_background(photo, segmenter=segmenter, mode="labels")
    assert trimap.shape == labels.shape and set(np.unique(trimap)) <= {1, 2, 3}
    decided = labels != 2  # border pixels are a thin band either way
    assert (trimap[decided] == labels[decided] + 1).mean() > 0.9

    green = np.array([0, 255, 0], np.float32)
    color = remove_background(photo, segmenter=segmenter, mode="color", bg="#00ff00").astype(np.float32)
    weight = alpha[..., None].astype(np.float32) / 255
    assert np.abs(color - (colours * weight + green * (1 - weight))).max() <= 1.0
    assert np.abs(color[labels == BACKGROUND] - green).mean(axis=0).max() < 40


def test_background_image_is_scaled_to_cover_the_photo(segmenter, toy_photo):
    from petseg.inference import remove_background

    photo, _ = toy_photo
    background = np.zeros((300, 30, 3), np.uint8)
    background[...] = (10, 20, 200)
    result = remove_background(photo, segmenter=segmenter, bg_image=background)  # a background implies mode color
    rgba = remove_background(photo, segmenter=segmenter)
    assert result.shape == photo.shape
    weight = rgba[..., 3:].astype(np.float32) / 255
    expected = rgba[..., :3] * weight + np.array([10, 20, 200], np.float32) * (1 - weight)
    assert np.abs(result - expected).max() <= 1.0


def test_exif_rotated_photo_gives_an_upright_cutout_of_the_original_size(segmenter, toy_photo, tmp_path):
    from petseg.inference import remove_background

    photo, labels = toy_photo
    assert photo.shape[0] != photo.shape[1]  # the check needs a non-square photo
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter anticlockwise: viewers rotate it back clockwise
    path = tmp_path / "sideways.jpg"
    Image.fromarray(np.rot90(photo)).save(path, "JPEG", quality=98, exif=exif)
    upright = remove_background(path, segmenter=segmenter)
    assert upright.size == (photo.shape[1], photo.shape[0])
    alpha = np.asarray(upright)[..., 3]
    assert foreground_iou(alpha >= 128, labels) > 0.8


def test_bad_options_are_user_errors(segmenter, toy_photo):
    from petseg.inference import remove_background

    photo, _ = toy_photo
    for options, message in (
        ({"mode": "sepia"}, "cutout mode 'sepia'"),
        ({"mode": "rgba", "bg": "#000000"}, "mode 'color'"),
        ({"mode": "color", "bg": "not-a-colour"}, "not a colour"),
        ({"mode": "color", "bg": "rgb(256,0,0)"}, "not a colour"),  # Pillow would pass 256 through
    ):
        with pytest.raises(PetsegError, match=message):
            remove_background(photo, segmenter=segmenter, **options)
    with pytest.raises(PetsegError, match="not an image"):
        remove_background(b"hello", segmenter=segmenter)
    with pytest.raises(PetsegError, match="pixels, over the limit of"):
        remove_background(png_bytes(photo), segmenter=segmenter, max_pixels=100)
    with pytest.raises(PetsegError, match="segmenter must be a petseg Segmenter .*, got str"):
        remove_background(photo, segmenter="bundled")


# --- alpha and compositing -----------------------------------------------------


def test_soft_alpha_is_pet_plus_half_border():
    from petseg.inference.compose import labels_to_trimap, soft_alpha

    probabilities = np.array([[[1.0, 0.0, 0.2]], [[0.0, 1.0, 0.2]], [[0.0, 0.0, 0.6]]], np.float32)
    np.testing.assert_allclose(soft_alpha(probabilities), [[1.0, 0.0, 0.5]], atol=1e-6)
    np.testing.assert_array_equal(labels_to_trimap(np.array([0, 1, 2], np.uint8)), [1, 2, 3])


def test_pillow_upsampling_matches_torch_bilinear():
    import torch

    from petseg.inference.compose import upsample

    channel = np.random.default_rng(0).random((23, 31), dtype=np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(channel)[None, None], size=(101, 77), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(upsample(channel, 101, 77), expected, atol=1e-5)


@pytest.mark.parametrize("value, words", [
    (np.zeros((0, 0, 3), np.uint8), "image array is empty: shape (0, 0, 3)"),
    (np.zeros((5, 0), np.uint8), "image array is empty"),
    (5, "cannot read an image from int (give a path"),
    # A batch of one: its shape is named, not checked as a 150 x 1 photo (it was "150x1 is not a photo's shape").
    (np.zeros((1, 150, 200, 3), np.uint8), "image array must be (H, W), (H, W, 3) or (H, W, 4), got shape (1, 150, 200, 3)"),
    (np.zeros((150, 200, 2), np.uint8), "image array must be (H, W), (H, W, 3) or (H, W, 4), got shape (150, 200, 2)"),
    (np.zeros((1,) * 32, np.uint8), "image array must be (H, W), (H, W, 3) or (H, W, 4), got shape (1, 1, 1, 1, 1, 1,"),
])  # fmt: skip
def test_inputs_that_hold_no_image_are_one_line(value, words):
    from petseg.inference.segmenter import as_photo

    with pytest.raises(PetsegError) as raised:
        as_photo(value)
    assert str(raised.value).startswith(words)


def test_a_background_colour_that_is_not_text_is_one_line():
    from petseg.inference.compose import parse_color

    with pytest.raises(PetsegError, match="background colour must be a text such as #rrggbb or white, got 5"):
        parse_color(5)


@pytest.mark.parametrize("threads", [0, -1, 100_000, 2.5, "2", True])
def test_thread_counts_outside_1_to_1024_are_one_line(threads):
    """100000 ONNX Runtime threads exhausted memory before a traceback; every front end checks first."""
    from petseg.inference import Segmenter
    from petseg.server import create_app

    for start in (lambda: Segmenter.load(threads=threads), lambda: create_app(threads=threads)):
        with pytest.raises(PetsegError) as raised:
            start()
        assert str(raised.value).startswith("threads must be a whole number in 1..1024, got ")


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_a_batch_size_that_is_not_a_positive_whole_number_is_one_line(toy_model_file, batch_size):
    """-1 returned no predictions at all, 0 and 2.5 died in range()."""
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter

    segmenter = Segmenter.load(toy_model_file)
    for call in (lambda: segmenter.predict([np.zeros((8, 8, 3), np.uint8)], batch_size=batch_size),
                 lambda: evaluate(segmenter, [], batch_size=batch_size)):
        with pytest.raises(PetsegError, match=r"^batch_size must be a whole number in 1\.\.64, got "):
            call()


def test_a_batch_or_flips_of_the_wrong_kind_is_one_clear_error(segmenter, toy_photo):
    """A path's characters were taken for photos, an array gave numpy's "truth value ... is ambiguous",
    flips="TF" a TypeError, and flips=[None] answered {None: ...}."""
    photo, _ = toy_photo
    for photos, got in (("photo.jpg", "str"), (photo, "ndarray")):
        with pytest.raises(PetsegError, match=rf"^photos must be a list or tuple of photos, got {got} "
                                              r"\(for one photo, pass \[photo\]\)$"):
            segmenter.predict_batch(photos)
    with pytest.raises(PetsegError, match=r"got generator \(pass list\(photos\)\)$"):
        segmenter.predict_views((photo for _ in range(2)), [False])
    for flips in ("TF", [None], [1]):
        expected = f"flips must be a list or tuple of True and False, got {flips!r}"
        with pytest.raises(PetsegError, match=f"^{re.escape(expected)}$"):
            segmenter.predict_views([photo], flips)


def test_batch_size_is_bounded_where_photos_are_held_a_batch_at_a_time(segmenter, toy_photo):
    """--batch-size 2000 of tiny photos took 4.8 GB: more than 64 photos a call is refused, in one line."""
    from petseg.evaluate import evaluate
    from petseg.inference import CutoutOptions
    from petseg.inference.pipeline import run_cutouts

    photo, _ = toy_photo
    assert len(segmenter.predict([photo] * 3, batch_size=64)) == 3
    for call in (lambda: segmenter.predict([photo], batch_size=65),
                 lambda: run_cutouts(segmenter, [], CutoutOptions(), batch_size=65),
                 lambda: evaluate(segmenter, [], batch_size=65)):
        with pytest.raises(PetsegError, match=r"^batch_size must be a whole number in 1\.\.64, got 65$"):
            call()
