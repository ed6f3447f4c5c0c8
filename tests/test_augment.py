"""Augmentation keeps image and mask aligned: a synthetic image paints each class its own
colour, and after every transform each pixel away from an edge must still have its
label's colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from petseg.data.augment import Augment
from petseg.data.copy_paste import paste_on_background, pet_free_square
from petseg.data.labels import BACKGROUND, BORDER, IGNORE_INDEX, PET
from petseg.data.pet_recolor import KEPT_COLOUR, KINDS, LUMA, recolor_pet
from petseg.errors import PetsegError

PAD_COLOUR = (124, 116, 104)
COLOURS = {PET: (250, 10, 10), BACKGROUND: (10, 250, 10), BORDER: (10, 10, 250), IGNORE_INDEX: PAD_COLOUR}
# Bilinear resampling with antialiasing blends colours up to a few pixels from an edge
# (more at strong zoom-out): pixels closer than this to another label are not checked.
EDGE = 4
COLOUR_TOLERANCE = 3  # uint8 levels, for the colour of an interior pixel


def striped_pair(size=64):
    """A pet rectangle with a border ring, background, and letterbox padding on the right."""
    mask = np.full((size, size), BACKGROUND, dtype=np.uint8)
    mask[8:44, 4:34] = BORDER
    mask[10:42, 6:32] = PET
    mask[:, 50:] = IGNORE_INDEX
    image = np.zeros((size, size, 3), dtype=np.uint8)
    for value, colour in COLOURS.items():
        image[mask == value] = colour
    return image, mask


def interior(mask: np.ndarray) -> np.ndarray:
    """The mask with pixels within EDGE of another label (or the image edge) set to 254."""
    padded = np.pad(mask, EDGE, mode="constant", constant_values=254)
    inside = mask.copy()
    size_y, size_x = mask.shape
    for dy in range(-EDGE, EDGE + 1):
        for dx in range(-EDGE, EDGE + 1):
            shifted = padded[EDGE + dy : EDGE + dy + size_y, EDGE + dx : EDGE + dx + size_x]
            inside = np.where(shifted == mask, inside, 254)
    return inside


def assert_aligned(image: np.ndarray, mask: np.ndarray, colours=COLOURS) -> int:
    """Every interior labelled pixel has its label's colour; returns how many labels were checked.

    Padding (IGNORE_INDEX) is left out: it counts in no loss, and torchvision's bilinear
    affine darkens a 1-2 px seam where the photo's old edge meets the new fill.
    """
    assert set(np.unique(mask)) <= set(colours), "nearest-neighbour only: no invented labels"
    inside = interior(mask)
    checked = 0
    for value, colour in colours.items():
        if value == IGNORE_INDEX:
            continue
        region = inside == value
        if region.any():
            checked += 1
            worst = np.abs(image[region].astype(int) - colour).max()
            assert worst <= COLOUR_TOLERANCE, f"label {value}: colour off by {worst}"
    return checked


GEOMETRIC = {
    "hflip": dict(hflip=True),
    "scale": dict(hflip=False, scale=(0.5, 1.6)),
    "rotation": dict(hflip=False, rotation=25),
    "crop_scale": dict(hflip=False, crop_scale=(0.3, 1.0)),
    "all": dict(hflip=True, scale=(0.7, 1.3), rotation=15, crop_scale=(0.5, 1.0)),
}


@pytest.mark.parametrize("options", GEOMETRIC.values(), ids=GEOMETRIC.keys())
def test_geometric_augmentation_moves_image_and_mask_together(options):
    image, mask = striped_pair()
    augment = Augment(**options)
    changed = checked = 0
    for seed in range(20):
        torch.manual_seed(seed)
        out_image, out_mask = augment(image, mask, fill=PAD_COLOUR)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out_mask.shape == mask.shape and out_mask.dtype == np.uint8
        changed += not np.array_equal(out_mask, mask)
        checked += assert_aligned(out_image, out_mask)
    assert changed >= 5, "the transform should change the pair most of the time"
    assert checked >= 40


def test_new_pixels_from_rotation_are_ignored_and_padding_coloured():
    image, mask = striped_pair()
    image[:], mask[:] = COLOURS[PET], PET  # no padding before: every ignored pixel is new
    rotated = 0
    for seed in range(5):
        torch.manual_seed(seed)
        out_image, out_mask = Augment(hflip=False, rotation=40)(image, mask, fill=PAD_COLOUR)
        rotated += (out_mask == IGNORE_INDEX).sum() > 20
        new = interior(out_mask) == IGNORE_INDEX
        assert np.abs(out_image[new].astype(int) - PAD_COLOUR).max(initial=0) <= COLOUR_TOLERANCE
        assert_aligned(out_image, out_mask)
    assert rotated >= 3


APPEARANCE = {
    "color_jitter": dict(color_jitter=0.4),
    "hue": dict(hue=0.3),
    "gamma": dict(gamma=0.5),
    "grayscale": dict(grayscale=1.0),
    "blur": dict(blur=1.0),
    "noise": dict(noise=0.1),
}


@pytest.mark.parametrize("options", APPEARANCE.values(), ids=APPEARANCE.keys())
def test_appearance_augmentation_changes_the_image_only(options):
    image, mask = striped_pair()
    changed = 0
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out_mask = Augment(hflip=False, **options)(image, mask, fill=PAD_COLOUR)
        np.testing.assert_array_equal(out_mask, mask)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        changed += np.abs(out_image.astype(int) - image).mean() > 1
    assert changed >= 4


def test_grayscale_makes_the_channels_equal():
    image, mask = striped_pair()
    out_image, _ = Augment(hflip=False, grayscale=1.0)(image, mask)
    assert np.abs(out_image[..., 0].astype(int) - out_image[..., 2]).max() <= 1


def test_no_knob_means_no_change():
    image, mask = striped_pair()
    out_image, out_mask = Augment(hflip=False)(image, mask)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_mask, mask)


def donor_pair(size=64, colour=(200, 200, 40)):
    """Another photo: its pet in the middle, a wide background strip on top, padding below."""
    mask = np.full((size, size), BACKGROUND, dtype=np.uint8)
    mask[30:56, 20:44] = PET
    mask[58:, :] = IGNORE_INDEX
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:] = colour
    image[mask == PET] = COLOURS[PET]
    image[mask == IGNORE_INDEX] = PAD_COLOUR
    return image, mask


def test_pet_free_square_holds_background_only():
    _, mask = donor_pair()
    top, left, side = pet_free_square(mask)
    assert side == 30  # the strip above the pet is 30 rows high, 64 wide
    assert (mask[top : top + side, left : left + side] == BACKGROUND).all()
    assert pet_free_square(np.full((64, 64), PET, np.uint8)) is None


def test_copy_paste_puts_the_pet_with_its_labels_on_the_donor_background():
    image, mask = striped_pair()
    donor_image, donor_mask = donor_pair()
    out_image, out_mask = paste_on_background(image, mask, donor_image, donor_mask)
    pet = (mask == PET) | (mask == BORDER)
    np.testing.assert_array_equal(out_mask[pet], mask[pet])
    np.testing.assert_array_equal(out_image[pet], image[pet])
    assert (out_mask[~pet] == BACKGROUND).all(), "the new background fills the padding too"
    # Only the donor's background colour is left around the pet: not its pet, not our old room.
    assert_aligned(out_image, out_mask, {**COLOURS, BACKGROUND: (200, 200, 40)})


def test_copy_paste_without_a_pet_free_donor_changes_nothing():
    image, mask = striped_pair()
    full = np.full((64, 64), PET, np.uint8)
    out_image, out_mask = paste_on_background(image, mask, image, full)
    np.testing.assert_array_equal(out_mask, mask)
    np.testing.assert_array_equal(out_image, image)


def test_copy_paste_then_geometry_stays_aligned():
    image, mask = striped_pair()
    augment = Augment(hflip=True, rotation=20, scale=(0.8, 1.2), copy_paste=1.0)
    pasted = 0
    for seed in range(10):
        torch.manual_seed(seed)
        out_image, out_mask = augment(image, mask, fill=PAD_COLOUR, donor=donor_pair)
        pasted += (out_mask == BACKGROUND).any() and not (out_mask[:, 52:] == IGNORE_INDEX).all()
        assert_aligned(out_image, out_mask, {**COLOURS, BACKGROUND: (200, 200, 40)})
    assert pasted >= 8


def test_copy_paste_asks_for_a_donor_only_when_it_pastes():
    image, mask = striped_pair()

    def no_donor():
        raise AssertionError("donor asked for although copy_paste is 0")

    Augment(copy_paste=0.0)(image, mask, donor=no_donor)


@pytest.mark.parametrize("kind", KINDS)
def test_pet_recolouring_changes_the_pet_and_border_only(kind):
    image, mask = striped_pair()
    recoloured = recolor_pet(image, mask, kind, strength=0.6)
    pet = (mask == PET) | (mask == BORDER)
    assert np.array_equal(recoloured[~pet], image[~pet])  # background and padding untouched
    fur = recoloured[pet].astype(int)
    luma = (image[pet].astype(np.float32) @ LUMA).mean()
    # How far the channels are apart (0 is grey): 240 in the striped pet's pure colours, of
    # which KEPT_COLOUR stays, then shrunk by 1 - strength as the fur goes white or black.
    spread = np.ptp(fur, axis=1).max()
    assert spread <= KEPT_COLOUR[kind] * 240 * (1 - 0.6 * (kind != "grey")) + 1
    if kind == "white":
        assert fur.mean() > luma + 0.5 * (255 - luma)
    elif kind == "black":
        assert fur.mean() < luma * 0.5
    else:
        assert abs(fur.mean() - luma) < 1


def test_pet_recolouring_follows_the_mask_through_the_geometry():
    """Same seed, with and without recolouring: the images differ exactly where the moved mask has a pet."""
    image, mask = striped_pair()
    geometry = dict(hflip=True, rotation=20, scale=(0.8, 1.2), crop_scale=(0.6, 1.0))
    for seed in range(5):
        torch.manual_seed(seed)
        plain_image, plain_mask = Augment(**geometry)(image, mask, fill=PAD_COLOUR)
        torch.manual_seed(seed)
        recoloured, recoloured_mask = Augment(**geometry, pet_recolor=1.0)(image, mask, fill=PAD_COLOUR)
        assert np.array_equal(plain_mask, recoloured_mask)
        pet = (plain_mask == PET) | (plain_mask == BORDER)
        changed = (recoloured != plain_image).any(axis=2)
        assert pet.any() and not (changed & ~pet).any() and changed[pet].mean() > 0.9


@pytest.mark.parametrize("options", [
    {"scale": (0.0, 1.0)}, {"scale": (1.5, 1.0)}, {"color_jitter": 1.5}, {"crop_scale": (0.5, 1.5)},
    {"hue": 0.6}, {"rotation": -1}, {"grayscale": 2}, {"copy_paste": -0.1}, {"gamma": 1.0}, {"pet_recolor": 1.5},
])
def test_bad_augment_options_are_errors_naming_their_setting(options):
    from petseg.errors import command_line_flag

    (name,) = options
    with pytest.raises(PetsegError) as raised:
        Augment(**options)
    assert raised.value.option == name  # so the command line names its flag: --pet-recolor must be ...
    assert raised.value.worded(command_line_flag).startswith(command_line_flag(name) + " ")


def test_the_training_dataset_pastes_onto_other_samples(toy_data, tmp_path):
    from petseg.data.dataset import SegmentationDataset
    from petseg.data.layouts import load_samples

    samples = load_samples(toy_data, "all")[:8]
    plain = SegmentationDataset(samples, 48, (0.5,) * 3, (0.5,) * 3, augment=Augment(hflip=False), cache=False)
    pasting = SegmentationDataset(samples, 48, (0.5,) * 3, (0.5,) * 3,
                                  augment=Augment(hflip=False, copy_paste=1.0), cache=False)
    torch.manual_seed(0)
    pasted = 0
    for index in range(len(samples)):
        before, after = plain[index][1], pasting[index][1]
        pet = (before == PET) | (before == BORDER)
        assert torch.equal(after[pet], before[pet]), "the pet keeps its labels"
        # Toy photos are not square: letterbox padding becomes the new background.
        pasted += bool((before == IGNORE_INDEX).any() and not (after == IGNORE_INDEX).any())
    assert pasted >= len(samples) // 2
