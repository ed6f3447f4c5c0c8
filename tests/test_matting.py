"""Matted alpha (inference/matting.py): the Laplacian against pymatting's, edges, colours, sizes, class roles."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from petseg.data.masks import dilate
from petseg.errors import PetsegError
from petseg.inference import matting


def star_scene(height: int = 375, width: int = 500, blend: int = 0):
    """A noisy two-colour photo of a star-shaped 'pet', its exact mask and the true alpha.

    blend > 0 softens the edge over that many pixels (a true alpha between 0 and 1 there),
    mixing the two colours as a camera would.
    """
    ys, xs = np.mgrid[:height, :width]
    angle, radius = np.arctan2(ys - 180, xs - 240), np.hypot(ys - 180, xs - 240)
    distance = 100 + 30 * np.cos(7 * angle) - radius  # > 0 inside the star
    alpha = np.clip(distance / blend + 0.5, 0, 1) if blend else (distance > 0).astype(float)
    pet, background = np.array([200, 150, 60]), np.array([40, 90, 160])
    noise = np.random.default_rng(0).normal(0, 5, (height, width, 3))
    photo = alpha[..., None] * pet + (1 - alpha[..., None]) * background + noise
    return np.clip(photo, 0, 255).astype(np.uint8), distance > 0, alpha


def coarse_soft_alpha(shape: np.ndarray, factor: int = 8) -> np.ndarray:
    """What a network sees: the mask at 1/factor size, blurred by the shrinking."""
    mask = Image.fromarray((shape * 255).astype(np.uint8))
    small = mask.resize((shape.shape[1] // factor, shape.shape[0] // factor), Image.BILINEAR)
    return np.asarray(small, np.float32) / 255


def iou(alpha: np.ndarray, shape: np.ndarray) -> float:
    return float(((alpha >= 128) & shape).sum() / ((alpha >= 128) | shape).sum())


def test_band_laplacian_equals_pymatting_cf_laplacian():
    """Our rows of the closed-form matting Laplacian, built only around the band, against pymatting's whole matrix."""
    from pymatting import cf_laplacian

    rng = np.random.default_rng(1)
    image = rng.random((13, 17, 3))
    unknown = np.zeros((13, 17), bool)
    unknown[3:9, 4:12] = True
    unknown[0, 0] = unknown[12, 16] = True  # corners: covered only by their one inner window
    epsilon = 1e-5
    pixels, neighbours, values = matting.band_laplacian(image, unknown, epsilon)
    np.testing.assert_array_equal(pixels, np.flatnonzero(unknown))
    assert neighbours.shape == values.shape == (len(pixels), 25)
    ours = np.zeros((image.shape[0] * image.shape[1],) * 2)
    np.add.at(ours, (np.repeat(pixels, 25), neighbours.ravel()), values.ravel())
    reference = cf_laplacian(image, epsilon=epsilon, radius=1).toarray()
    flat_unknown = unknown.ravel()
    np.testing.assert_allclose(ours[flat_unknown], reference[flat_unknown], atol=1e-9)
    assert not ours[~flat_unknown].any()


def test_matting_snaps_a_coarse_prediction_to_the_photo_edges_without_haze():
    photo, shape, _ = star_scene()
    soft = coarse_soft_alpha(shape)
    result = matting.matte(soft, photo)
    assert result.alpha.shape == shape.shape and result.alpha.dtype == np.uint8
    thresholded = (matting.resize_float(soft, *shape.shape) >= 0.5) * 255
    assert iou(result.alpha, shape) > iou(thresholded, shape) + 0.01
    assert iou(result.alpha, shape) > 0.98
    # No haze (METRICS.md: alpha between 0.1 and 0.9) 4 px away from the true edge, and
    # beyond the matted band (4 px each side of the network's edge at 1/8 size) exactly 0 or 255.
    for distance, low, high in ((4, 25, 230), (12, 0, 255)):
        inner, outer = ~dilate(~shape, distance), ~dilate(shape, distance)
        assert (result.alpha[inner] >= high).all() and (result.alpha[outer] <= low).all(), distance


def test_matting_follows_a_soft_edge_and_decontaminates_its_colours():
    """A blended edge: alpha ramps like the truth, and edge pixels get the pet's colour back."""
    photo, shape, truth = star_scene(blend=6)
    result = matting.matte(coarse_soft_alpha(shape), photo)
    edge = (truth > 0.2) & (truth < 0.8)
    assert np.abs(result.alpha[edge] / 255 - truth[edge]).mean() < 0.2
    assert ((result.alpha[edge] > 0) & (result.alpha[edge] < 255)).mean() > 0.8
    pet = np.array([200, 150, 60])
    before = np.abs(photo[edge].astype(float) - pet).mean()
    after = np.abs(result.foreground[edge].astype(float) - pet).mean()
    assert after < 0.5 * before, (before, after)
    # Pixels with alpha 0 or 1 keep the photo's own colours.
    solid = (result.alpha == 0) | (result.alpha == 255)
    np.testing.assert_array_equal(result.foreground[solid], photo[solid])
    alone = matting.matte(coarse_soft_alpha(shape), photo, foreground=False)
    np.testing.assert_array_equal(alone.alpha, result.alpha)
    assert alone.foreground is photo


def test_all_background_and_all_pet_predictions_are_plain_answers():
    photo = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    empty = matting.matte(np.zeros((30, 40), np.float32), photo)
    assert (empty.alpha == 0).all()
    np.testing.assert_array_equal(empty.foreground, photo)
    full = matting.matte(np.ones((30, 40), np.float32), photo)
    assert (full.alpha == 255).all()


def test_big_photos_are_matted_at_the_working_size_and_keep_their_own():
    photo, shape, _ = star_scene(750, 1000)
    soft = coarse_soft_alpha(shape, 16)
    whole = matting.matte(soft, photo)
    capped = matting.matte(soft, photo, work_pixels=750 * 1000 // 9)  # a third of each side
    assert capped.alpha.shape == whole.alpha.shape == shape.shape
    assert iou(capped.alpha, shape) > 0.97
    assert np.mean(np.abs(capped.alpha.astype(int) - whole.alpha) > 64) < 0.01


def test_tiny_photos_do_not_break_the_solver():
    for height, width in ((1, 1), (2, 5), (3, 3)):
        photo = np.full((height, width, 3), 128, np.uint8)
        result = matting.matte(np.full((2, 2), 0.5, np.float32), photo)
        assert result.alpha.shape == (height, width)


@pytest.mark.parametrize(
    "labels, expected",
    [
        (("pet", "background", "border"), (0, 1, 2)),
        (("background", "pet"), (1, 0, None)),
        (("class_0", "class_1"), (0, 1, None)),
        (("class_0", "class_1", "class_2"), (0, 1, 2)),
    ],
)
def test_pet_classes_come_from_the_model_labels(labels, expected):
    from petseg.inference.compose import PetClasses, soft_alpha

    classes = PetClasses.from_labels(labels)
    assert (classes.pet, classes.background, classes.border) == expected
    probabilities = np.random.default_rng(0).dirichlet(np.ones(len(labels)), (4, 5)).transpose(2, 0, 1)
    border = probabilities[expected[2]] if expected[2] is not None else 0
    np.testing.assert_allclose(soft_alpha(probabilities, classes), probabilities[expected[0]] + 0.5 * border, atol=1e-6)


def test_a_one_class_model_is_refused():
    from petseg.inference.compose import PetClasses

    with pytest.raises(PetsegError, match="1 class cannot cut out"):
        PetClasses.from_labels(("pet",))


def test_hard_alpha_is_pet_and_border_and_soft_counts_border_half():
    """On the prediction's own classes: a 4x4 photo, columns pet | border | background | background."""
    from petseg.data.letterbox import Letterbox
    from petseg.inference.compose import PetClasses
    from petseg.inference.render import cutout_alpha
    from petseg.inference.segmenter import Prediction

    probabilities = np.zeros((3, 4, 4), np.float32)
    probabilities[0, :, 0] = probabilities[2, :, 1] = 1.0
    probabilities[1, :, 2:] = 1.0
    prediction = Prediction(probabilities, Letterbox.fit(4, 4, 4))
    photo = np.full((4, 4, 3), 128, np.uint8)
    np.testing.assert_array_equal(cutout_alpha(photo, prediction, "hard").alpha[0], [255, 255, 0, 0])
    np.testing.assert_array_equal(cutout_alpha(photo, prediction, "soft").alpha[0], [255, 128, 0, 0])
    # A two-class model named (background, pet): its channel 1 is the pet.
    two = Prediction(probabilities[[1, 0]], Letterbox.fit(4, 4, 4), PetClasses.from_labels(("background", "pet")))
    np.testing.assert_array_equal(cutout_alpha(photo, two, "hard").alpha[0], [255, 0, 0, 0])


def blur_fusion_everywhere(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Forte and Pitie's blur fusion as the paper writes it, over whole images: the reference."""
    from petseg.inference.foreground import box_mean, fuse, radii

    image, alpha3 = image.astype(np.float32), alpha[..., None].astype(np.float32)
    foreground, background = image, image
    for radius in radii(alpha.shape):
        foreground, background = fuse(image, alpha3, box_mean(alpha3, radius), box_mean(foreground * alpha3, radius),
                                      box_mean(background * (1 - alpha3), radius))
    return foreground


def edge_scene():
    """A soft-edged star whose alpha is also partly transparent along the image's own border."""
    photo, _, truth = star_scene(blend=6)
    alpha = truth.copy()
    alpha[:4] = 0.5  # where windows leave the image
    wanted = (alpha > 0) & (alpha < 1)
    wanted[200, 0] = wanted[0, 499] = True  # and a background and a border pixel
    return photo / 255.0, alpha, wanted


def test_foreground_at_edge_pixels_equals_blur_fusion_over_the_whole_image(monkeypatch):
    from petseg.inference import foreground

    monkeypatch.setattr(foreground, "COARSE_RADIUS", 1000)  # the first pass on the full grid too: exact
    image, alpha, wanted = edge_scene()
    expected = blur_fusion_everywhere(image, alpha)[wanted]
    np.testing.assert_allclose(foreground.foreground_at(image, alpha, wanted), expected, atol=1e-6)


def test_the_coarse_first_pass_moves_colours_by_a_few_levels_at_most():
    from petseg.inference.foreground import foreground_at

    image, alpha, wanted = edge_scene()
    error = np.abs(foreground_at(image, alpha, wanted) - blur_fusion_everywhere(image, alpha)[wanted]) * 255
    # Measured: 0.28 levels on average, 1.9 at most (on real photos 0.2-1.0 and up to 8).
    assert error.mean() <= 1.0 and error.max() <= 4.0


def test_edge_colours_of_big_photos_come_from_a_smaller_grid_within_a_few_levels(monkeypatch):
    photo, shape, truth = star_scene(750, 1000, blend=12)  # 0.75 MP, above FOREGROUND_PIXELS
    soft = coarse_soft_alpha(shape, 16)
    capped = matting.matte(soft, photo)
    monkeypatch.setattr(matting, "FOREGROUND_PIXELS", 10**9)
    whole = matting.matte(soft, photo)
    np.testing.assert_array_equal(capped.alpha, whole.alpha)
    edge = (whole.alpha > 0) & (whole.alpha < 255)
    np.testing.assert_array_equal(capped.foreground[~edge], photo[~edge])
    error = np.abs(capped.foreground[edge].astype(int) - whole.foreground[edge])
    # Measured: 0.22 levels on average, 5 at most, while the colours moved by 52 on average.
    assert error.mean() <= 1.0 and error.max() <= 8
    assert np.abs(whole.foreground[edge].astype(int) - photo[edge]).mean() > 20


def test_the_cofactor_inverse_equals_numpy_on_covariances():
    rng = np.random.default_rng(0)
    centered = rng.normal(0, 0.01, (500, 9, 3))
    covariances = centered.transpose(0, 2, 1) @ centered / 9 + (matting.EPSILON / 9) * np.eye(3)
    expected = np.linalg.inv(covariances)[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]].T
    entries = covariances[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]].T
    np.testing.assert_allclose(matting.inverse_symmetric_3x3(*entries), expected, rtol=1e-9, atol=0)


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_dilate_equals_scipy_binary_dilation(radius):
    from scipy.ndimage import binary_dilation

    from petseg.data.masks import edge_band

    mask = np.random.default_rng(radius).random((23, 31)) > 0.93
    mask[0, 0] = mask[-1, 5] = True  # at the edges too
    square = np.ones((2 * radius + 1,) * 2, bool)
    expected = binary_dilation(mask, square) if radius else mask
    np.testing.assert_array_equal(dilate(mask, radius), expected)
    expected_band = (binary_dilation(mask, square) & binary_dilation(~mask, square)) if radius else np.zeros_like(mask)
    np.testing.assert_array_equal(edge_band(mask, radius), expected_band)
    # Without corners: the diamond of r steps up, down, left or right.
    expected = binary_dilation(mask, iterations=radius) if radius else mask
    np.testing.assert_array_equal(dilate(mask, radius, corners=False), expected)
