"""Finding samples: the Oxford layout with its split lists, and images/ + masks/ folders."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from petseg.data.layouts import (
    Sample,
    in_folder_test_split,
    load_mask,
    load_sample,
    load_samples,
    parse_label_map,
    read_split_list,
)
from petseg.errors import ImageError, LabelError, PetsegError, command_line_flag


def _copy(toy_data, tmp_path):
    return shutil.copytree(toy_data, tmp_path / "pets")


def _folder_dataset(root, masks: dict[str, np.ndarray]):
    """images/ + masks/ with the given mask arrays and matching random photos."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for stem, mask in masks.items():
        photo = rng.integers(0, 255, (*mask.shape, 3), dtype=np.uint8)
        Image.fromarray(photo).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    return root


def test_oxford_splits_follow_the_lists(toy_data):
    trainval = load_samples(toy_data, "trainval")
    test = load_samples(toy_data, "test")
    assert [s.name for s in trainval] == read_split_list(toy_data / "annotations" / "trainval.txt")
    assert [s.name for s in test] == read_split_list(toy_data / "annotations" / "test.txt")
    for sample in trainval + test:
        assert sample.image_path == toy_data / "images" / f"{sample.name}.jpg"
        assert sample.mask_path == toy_data / "annotations" / "trimaps" / f"{sample.name}.png"
        assert sample.label_map is None
    assert len(load_samples(toy_data, "all")) == 24


def test_all_includes_unlisted_images_and_splits_skip_missing_files(toy_data, tmp_path):
    root = _copy(toy_data, tmp_path)
    listed = read_split_list(root / "annotations" / "trainval.txt")
    # An extra photo in no list, and a listed photo whose file is gone.
    shutil.copy(root / "images" / f"{listed[0]}.jpg", root / "images" / "Extra_1.jpg")
    shutil.copy(root / "annotations" / "trimaps" / f"{listed[0]}.png", root / "annotations" / "trimaps" / "Extra_1.png")
    (root / "images" / f"{listed[1]}.jpg").unlink()
    # macOS resource forks ship inside the official tarballs; they are not images.
    (root / "annotations" / "trimaps" / f"._{listed[2]}.png").write_bytes(b"\x00\x05\x16\x07")
    names = {s.name for s in load_samples(root, "all")}
    assert "Extra_1" in names and listed[1] not in names and len(names) == 24
    with pytest.warns(UserWarning, match="1 listed images"):
        trainval = load_samples(root, "trainval")
    assert [s.name for s in trainval] == [n for n in listed if n != listed[1]]


@pytest.mark.parametrize(
    "root_name, split, layout, message",
    [("missing", "all", "auto", "not found"), ("pets", "train", "auto", "split 'train'"),
     ("pets", "all", "coco", "layout 'coco'"), ("empty", "all", "auto", "not a dataset folder")],
)  # fmt: skip
def test_bad_arguments_are_one_clear_error(toy_data, tmp_path, root_name, split, layout, message):
    (tmp_path / "empty").mkdir()
    root = toy_data if root_name == "pets" else tmp_path / root_name
    with pytest.raises(PetsegError, match=message):
        load_samples(root, split, layout=layout)


def test_folder_layout_with_a_class_file(tmp_path):
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:15, 5:20] = 255
    mask[5, 5:20] = 128
    masks = {f"photo{i}": mask for i in range(20)}
    root = _folder_dataset(tmp_path / "mine", masks)
    (root / "classes.json").write_text(json.dumps({"0": "background", "255": "pet", "128": "border"}))
    samples = load_samples(root, "all")
    assert len(samples) == 20
    labels = load_mask(samples[0])
    expected = np.ones_like(mask)
    expected[mask == 255], expected[mask == 128] = 0, 2
    np.testing.assert_array_equal(labels, expected)
    # Without split lists, a stable hash of the name puts about one in five in test.
    test = {s.name for s in load_samples(root, "test")}
    trainval = {s.name for s in load_samples(root, "trainval")}
    assert test == {name for name in masks if in_folder_test_split(name)}
    assert test | trainval == set(masks) and not test & trainval


def test_folder_layout_with_yaml_flags_and_split_lists(tmp_path):
    mask = np.array([[0, 1], [1, 9]], dtype=np.uint8)
    root = _folder_dataset(tmp_path / "mine", {"a": mask, "b": mask, "c": mask})
    (root / "test.txt").write_text("b\n")
    (root / "classes.yaml").write_text("0: background\n1: pet\n9: ignore\n")
    assert [s.name for s in load_samples(root, "test")] == ["b"]
    np.testing.assert_array_equal(load_mask(load_samples(root, "all")[0]), [[1, 0], [0, 255]])
    flagged = load_samples(root, "all", label_map=parse_label_map("0=background, 1=2, 9=0"))
    np.testing.assert_array_equal(load_mask(flagged[0]), [[1, 2], [2, 0]])
    assert load_samples(root, "all", label_map={0: 1, 1: 0, 9: 2})[0].label_map == ((0, 1), (1, 0), (9, 2))


def test_folder_layout_errors_name_the_file_or_option(tmp_path):
    mask = np.array([[0, 7]], dtype=np.uint8)
    root = _folder_dataset(tmp_path / "mine", {"a": mask})
    with pytest.raises(PetsegError) as raised:
        load_samples(root, "all")
    assert raised.value.worded(command_line_flag).endswith(
        'needs a class mapping; add classes.json (e.g. {"0": "background", "255": "pet"}) or give --mask-values 0=background,255=pet')
    (root / "classes.json").write_text("{not json")
    with pytest.raises(PetsegError, match="classes.json: not valid JSON"):
        load_samples(root, "all")
    (root / "classes.json").write_text('{"0": "background"}')
    with pytest.raises(LabelError, match=r"a\.png: mask values \[7\]"):
        load_mask(load_samples(root, "all")[0])
    for text, message in [("0", "VALUE=CLASS"), ("x=pet", "not an integer"), ("0=cat", "class 'cat'"),
                          ("7=pet,7=background", "'7' is given twice")]:
        with pytest.raises(PetsegError, match=message):
            parse_label_map(text)


@pytest.mark.parametrize("text, message", [
    ('{"0": 1e400, "255": "pet"}', "class inf must be one of"),  # int() would raise OverflowError
    ('{"0": 0.5, "255": "pet"}', "class 0.5 must be one of"),  # int() would make it pet
    ('{"0": true, "255": "pet"}', "class True must be one of"),
    ('{"0": "background", "255": "pet", "0255": "border"}', "mask value 255 is given twice"),
    ('{"255.7": "pet"}', "mask value '255.7' is not an integer"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON (nested too deeply)"),
])
def test_hostile_class_mappings_are_one_line(tmp_path, text, message):
    root = _folder_dataset(tmp_path / "mine", {"a": np.zeros((2, 2), np.uint8)})
    (root / "classes.json").write_text(text)
    with pytest.raises(PetsegError, match=r"classes\.json: " + re.escape(message)):
        load_samples(root, "all")


def test_list_and_mapping_files_that_cannot_be_text_are_one_line(tmp_path):
    root = _folder_dataset(tmp_path / "mine", {"a": np.zeros((2, 2), np.uint8)})
    (root / "classes.json").write_bytes(b'\xff\xfe{"0": "pet"}')
    with pytest.raises(PetsegError, match=r"classes\.json: the class mapping is not UTF-8 text \(byte 0\)"):
        load_samples(root, "all")
    with open(tmp_path / "huge.txt", "wb") as huge:  # sparse: 17 MB on paper, nothing on disk
        huge.truncate(17 * 2**20)
    with pytest.raises(PetsegError, match=r"huge\.txt: the list file is over 16 MB$"):
        read_split_list(tmp_path / "huge.txt")
    os.mkfifo(tmp_path / "list.txt")  # reading it would wait for a writer forever
    with pytest.raises(PetsegError, match=r"list\.txt: cannot read the list file \(is a FIFO"):
        read_split_list(tmp_path / "list.txt")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, before ours refuses
def test_a_mask_bomb_is_refused_before_decoding(tmp_path):
    from tests.test_pixel_limits import png_bomb

    root = _folder_dataset(tmp_path / "mine", {"a": np.zeros((2, 2), np.uint8)})
    (root / "classes.json").write_text('{"0": "background"}')
    png_bomb(root / "masks" / "a.png")  # 13000 x 13000 in a few hundred KB: 2.9 GB to check decoded
    with pytest.raises(ImageError, match=r"a\.png: 13000x13000 is 169 megapixels, over the limit of 100"):
        load_mask(load_samples(root, "all")[0])


def test_load_sample_uses_stored_orientation_when_exif_turns_photo_off_its_mask(tmp_path):
    photo = np.zeros((20, 30, 3), dtype=np.uint8)
    photo[:, :10] = 255
    image = Image.fromarray(photo)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90": an upright view would be 30 x 20
    image.save(tmp_path / "p.jpg", exif=exif.tobytes())
    Image.fromarray(np.full((20, 30), 2, np.uint8)).save(tmp_path / "p.png")
    loaded, labels = load_sample(Sample("p", tmp_path / "p.jpg", tmp_path / "p.png"))
    assert loaded.shape == (20, 30, 3) and labels.shape == (20, 30)
    assert loaded[:, :10].mean() > 200 and loaded[:, 12:].mean() < 50
    Image.fromarray(np.full((21, 30), 2, np.uint8)).save(tmp_path / "p.png")
    with pytest.raises(ImageError, match=r"p\.jpg: photo is 20x30 but its mask p\.png is 30x21"):
        load_sample(Sample("p", tmp_path / "p.jpg", tmp_path / "p.png"))


@pytest.mark.shared_data
def test_shared_sample_counts(shared_sample):
    counts = {split: len(load_samples(shared_sample, split)) for split in ("trainval", "test", "all")}
    assert counts == {
        "trainval": len(read_split_list(shared_sample / "annotations" / "trainval.txt")),
        "test": len(read_split_list(shared_sample / "annotations" / "test.txt")),
        "all": 450,
    }
    names = {s.name for s in load_samples(shared_sample, "all")}
    assert {"Abyssinian_34", "Abyssinian_82"} <= names  # in no list, still usable in 'all'


@pytest.mark.parametrize("listed", ["trainval", "test"])
def test_folder_layout_with_one_split_list_takes_the_rest_for_the_other(tmp_path, listed):
    mask = np.zeros((2, 2), dtype=np.uint8)
    stems = [f"img{i:02d}" for i in range(12)]
    root = _folder_dataset(tmp_path / "mine", {stem: mask for stem in stems})
    (root / "classes.json").write_text('{"0": "background"}')
    (root / f"{listed}.txt").write_text("img00\nimg01\nimg02\n")
    trainval = {s.name for s in load_samples(root, "trainval")}
    test = {s.name for s in load_samples(root, "test")}
    assert not trainval & test and trainval | test == set(stems)
    assert {"trainval": trainval, "test": test}[listed] == {"img00", "img01", "img02"}


def test_one_bit_masks_read_as_0_and_255(tmp_path):
    root = _folder_dataset(tmp_path / "mine", {"a": np.zeros((2, 2), dtype=np.uint8)})
    Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert("1").save(root / "masks" / "a.png")
    with Image.open(root / "masks" / "a.png") as saved:
        assert saved.mode == "1"
    sample = load_samples(root, "all", label_map={0: "background", 255: "pet"})[0]
    np.testing.assert_array_equal(load_mask(sample), [[1, 0], [0, 1]])


def _yaml_alias_bomb(levels: int) -> str:
    """A few hundred bytes of YAML standing for 9**levels strings: repr() of 5 levels is 400 KB, of 9 levels 2.7 GB."""
    lines = ['0: [&l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"],']
    lines += [f"  &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]," for level in range(1, levels)]
    return "\n".join(lines) + "\n  0]\n"


def test_a_yaml_alias_bomb_is_one_short_line(tmp_path):
    root = _folder_dataset(tmp_path / "mine", {"a": np.zeros((2, 2), np.uint8)})
    (root / "classes.yaml").write_text(_yaml_alias_bomb(5))
    with pytest.raises(PetsegError) as raised:
        load_samples(root, "all")
    assert str(raised.value) == f"{root / 'classes.yaml'}: a class mapping may not use YAML aliases (*l0)"


@pytest.mark.parametrize("name, text, message", [
    ("classes.json", '{"0": [' + "[0, 1], " * 50_000 + "2]}", "class [[0, 1], [0, 1], [0, 1], [0, 1], [0, 1], [0, 1], ...]"),
    ("classes.yaml", "0: " + "9" * 5000 + "\n", "not valid YAML (Exceeds the limit (4300 digits)"),  # int()'s ValueError
    ("classes.yaml", "0: 2024-13-45\n", "not valid YAML (month must be in 1..12)"),
])  # fmt: skip
def test_a_class_of_the_wrong_kind_is_one_short_line(tmp_path, name, text, message):
    root = _folder_dataset(tmp_path / "mine", {"a": np.zeros((2, 2), np.uint8)})
    (root / name).write_text(text)
    with pytest.raises(PetsegError) as raised:
        load_samples(root, "all")
    assert str(raised.value).startswith(f"{root / name}: {message}") and len(str(raised.value)) < 400


def test_a_yaml_class_mapping_is_refused_as_it_grows_past_any_mapping(tmp_path, monkeypatch):
    import petseg.data.layouts

    monkeypatch.setattr(petseg.data.layouts, "MAX_LABEL_MAP_VALUES", 11)
    root = _folder_dataset(tmp_path / "mine", {"a": np.zeros((2, 2), np.uint8)})
    (root / "classes.yaml").write_text("".join(f"{value}: pet\n" for value in range(5)))
    assert len(load_samples(root, "all")[0].label_map) == 5  # 11 values: the mapping and 5 pairs
    (root / "classes.yaml").write_text("".join(f"{value}: pet\n" for value in range(6)))
    with pytest.raises(PetsegError, match=r"classes\.yaml: over 11 YAML values, more than a class mapping has"):
        load_samples(root, "all")


def test_echoed_names_and_arguments_are_clipped(toy_data, tmp_path):
    for split, layout in [("x" * 10_000, "auto"), ("all", "x" * 10_000)]:
        with pytest.raises(PetsegError) as raised:
            load_samples(toy_data, split, layout=layout)
        assert "'" + "x" * 100 + "…'" in str(raised.value) and len(str(raised.value)) < 200
    root = _copy(toy_data, tmp_path)
    (root / "annotations" / "trainval.txt").write_text("x" * 1_000_000 + "\n")
    with pytest.warns(UserWarning) as warned:
        load_samples(root, "trainval")
    assert str(warned[0].message).endswith(f"(first: {'x' * 100}…)") and len(str(warned[0].message)) < 400
