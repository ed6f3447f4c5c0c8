"""`petseg data check` and the other data commands, through the library and the CLI."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from petseg.data.check import check_dataset, format_report
from petseg.data.layouts import load_mask, load_samples, read_split_list
from tests.test_pixel_limits import tiff_of_strips, tiff_opens  # noqa: F401


def _petseg(*args):
    return subprocess.run([sys.executable, "-m", "petseg", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.shared_data
@pytest.mark.slow
def test_shared_sample_report(shared_sample):
    result = _petseg("data", "check", shared_sample, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 450 and report["readable"] == 450 and report["ok"]
    assert report["splits"] == {
        "trainval": len(read_split_list(shared_sample / "annotations" / "trainval.txt")),
        "test": len(read_split_list(shared_sample / "annotations" / "test.txt")),
        "all": 450,
    }
    assert report["unreadable"] == [] and report["mislabelled"] == [] and report["size_mismatches"] == []
    disguised = {item["file"].rsplit("/", 1)[-1]: item["content"] for item in report["disguised"]}
    assert disguised == {"Abyssinian_34.jpg": "GIF"}  # the RGBA PNG Abyssinian_5 is not in the sample
    assert report["unlisted"] == ["Abyssinian_34", "Abyssinian_82"]
    assert "Abyssinian_34" in report["no_pet_pixels"]
    frequencies = report["class_pixel_frequencies"]
    assert abs(sum(frequencies.values()) - 1) < 1e-4 and frequencies["background"] > frequencies["pet"] > 0


def test_report_names_every_problem(toy_data, tmp_path):
    root = shutil.copytree(toy_data, tmp_path / "pets")
    names = read_split_list(root / "annotations" / "list.txt")
    images, trimaps = root / "images", root / "annotations" / "trimaps"
    truncated = (images / f"{names[0]}.jpg").read_bytes()[:400]
    (images / f"{names[0]}.jpg").write_bytes(truncated)  # unreadable
    Image.open(images / f"{names[1]}.jpg").save(images / f"{names[1]}.jpg", "PNG")  # disguised
    Image.fromarray(np.full((5, 5), 7, np.uint8)).save(trimaps / f"{names[2]}.png")  # bad values, wrong size
    Image.fromarray(np.full((7, 9), 2, np.uint8)).save(trimaps / f"{names[3]}.png")  # size mismatch, no pet
    (trimaps / f"{names[4]}.png").unlink()  # photo without mask
    report = check_dataset(root)
    assert not report["ok"]
    assert report["images"] == 23 and report["readable"] == 21
    assert [item["file"] for item in report["unreadable"]] == [str(images / f"{names[0]}.jpg")]
    assert "truncated" in report["unreadable"][0]["reason"].lower()
    assert report["disguised"] == [{"file": str(images / f"{names[1]}.jpg"), "extension": "jpg", "content": "PNG"}]
    assert [item["file"] for item in report["mislabelled"]] == [str(trimaps / f"{names[2]}.png")]
    assert "[7]" in report["mislabelled"][0]["reason"]
    assert [item["name"] for item in report["size_mismatches"]] == [names[3]]
    assert report["size_mismatches"][0]["mask"] == [9, 7]
    assert {"name": names[4], "missing": "mask"} in report["missing"]
    assert names[3] in report["no_pet_pixels"]
    text = format_report(report)
    for name in names[:5]:
        assert name in text
    assert text.endswith("problems found")


def test_check_cli_exit_codes_and_text(toy_data, tmp_path):
    result = _petseg("data", "check", toy_data, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "24 images, 24 readable" in result.stdout and "trainval 12, test 12" in result.stdout
    missing = _petseg("data", "check", tmp_path / "nowhere")
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nowhere'}: dataset folder not found"
    root = shutil.copytree(toy_data, tmp_path / "pets")
    next((root / "images").iterdir()).write_bytes(b"broken")
    broken = _petseg("data", "check", root, "--json")
    assert broken.returncode == 1 and len(json.loads(broken.stdout)["unreadable"]) == 1


def test_check_cli_on_a_folder_layout_with_mask_values(tmp_path):
    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "a.jpg")
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    Image.fromarray(mask).save(root / "masks" / "a.png")
    no_mapping = _petseg("data", "check", root)
    assert no_mapping.returncode == 2 and "--mask-values" in no_mapping.stderr and "Traceback" not in no_mapping.stderr
    result = _petseg("data", "check", root, "--json", "--mask-values", "0=background,255=pet")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["layout"] == "folder" and report["images"] == 1
    assert report["class_pixel_frequencies"]["pet"] == pytest.approx(16 / 64, abs=1e-6)


def test_toy_cli_writes_once_and_refuses_overwrite(tmp_path):
    created = _petseg("data", "toy", tmp_path / "toy", "--n", 5, "--size", 40, "--seed", 2)
    assert created.returncode == 0, created.stderr
    assert len(list((tmp_path / "toy" / "images").glob("*.jpg"))) == 5
    again = _petseg("data", "toy", tmp_path / "toy", "--n", 5)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_a_photo_listed_twice_or_in_both_splits_is_found(toy_data, tmp_path):
    root = shutil.copytree(toy_data, tmp_path / "pets")
    trainval, test = root / "annotations" / "trainval.txt", root / "annotations" / "test.txt"
    leaked = read_split_list(trainval)[0]
    test.write_text(test.read_text() + f"{leaked} 1 1 1\n{leaked} 1 1 1\n")  # twice, and also in trainval
    assert read_split_list(test).count(leaked) == 1  # scored once, not twice
    report = check_dataset(root)
    assert report["in_both_splits"] == [leaked] and not report["ok"]
    assert f"in both trainval and test (1): {leaked}" in format_report(report).splitlines()


def test_the_report_shows_names_on_one_line_and_cut(toy_data, tmp_path):
    root = shutil.copytree(toy_data, tmp_path / "pets")
    (root / "annotations" / "test.txt").write_text("x" * 100_000 + "\nbad\x1b]0;title\x07name\n")
    lines = format_report(check_dataset(root)).splitlines()
    missing = [line for line in lines if line.startswith("missing: ")]
    assert len(missing) == 2 and all(len(line) < 200 for line in missing), missing
    assert any("bad\\x1b]0;title\\x07name" in line for line in missing) and not any("\x1b" in line for line in lines)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.timeout(60)  # opening the FIFO would block for ever
def test_a_fifo_named_like_a_mask_is_not_a_regular_file(toy_data, tmp_path):
    root = shutil.copytree(toy_data, tmp_path / "pets")
    name = read_split_list(root / "annotations" / "list.txt")[0]
    fifo = root / "annotations" / "trimaps" / f"{name}.png"
    fifo.unlink()
    os.mkfifo(fifo)
    report = check_dataset(root)
    reason = f"{fifo}: is a FIFO (named pipe), not a regular file"
    assert report["unreadable"] == [{"file": str(fifo), "reason": reason}]
    assert {"name": name, "missing": "mask"} not in report["missing"] and not report["ok"]  # not "has no mask"
    assert f"unreadable: {reason}" in format_report(report).splitlines()


@pytest.mark.parametrize("kind", ["device", "folder"])
def test_a_split_list_that_is_no_file_is_refused_not_taken_for_missing(toy_data, tmp_path, kind):
    """A test.txt linked to /dev/zero was skipped as absent: its photos came out "in no split list", then "ok"."""
    from petseg.errors import PetsegError

    root = shutil.copytree(toy_data, tmp_path / "pets")
    listed = root / "annotations" / "test.txt"
    listed.unlink()
    listed.symlink_to("/dev/zero") if kind == "device" else listed.mkdir()
    reason = "is a character device, not a regular file" if kind == "device" else "is a directory, not a file"
    for check in (lambda: check_dataset(root), lambda: load_samples(root, "test")):
        with pytest.raises(PetsegError) as raised:
            check()
        assert str(raised.value) == f"{listed}: cannot read the list file ({reason})"


def test_photos_that_share_a_name_are_reported_and_the_first_is_used(toy_data, tmp_path):
    root = shutil.copytree(toy_data, tmp_path / "pets")
    name = read_split_list(root / "annotations" / "list.txt")[0]
    jpeg, png = root / "images" / f"{name}.jpg", root / "images" / f"{name}.png"
    Image.open(jpeg).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(png)  # another photo, or the same converted
    report = check_dataset(root)
    assert report["same_name"] == [{"name": name, "files": [str(jpeg), str(png)], "used": str(jpeg)}]
    assert not report["ok"] and report["images"] == 24  # still one sample
    assert f"same name: {jpeg}, {png}; only {name}.jpg is used" in format_report(report).splitlines()
    with pytest.warns(UserWarning, match=rf"{name}\.jpg, {name}\.png share a name; only {name}\.jpg is used$"):
        samples = load_samples(root, "all")
    assert next(sample.image_path for sample in samples if sample.name == name) == jpeg  # as before


def test_multi_frame_masks_are_noted(toy_data, tmp_path):
    root = shutil.copytree(toy_data, tmp_path / "pets")
    names = read_split_list(root / "annotations" / "list.txt")
    trimaps = root / "annotations" / "trimaps"
    animated, paged = trimaps / f"{names[0]}.png", trimaps / f"{names[1]}.tif"
    first = Image.open(animated)
    first.save(animated, save_all=True, append_images=[Image.new("L", first.size, 3)])  # an animated PNG
    second = Image.open(trimaps / f"{names[1]}.png")
    second.save(paged, save_all=True, append_images=[Image.new("L", second.size, 3)])  # a two-page TIFF
    (trimaps / f"{names[1]}.png").unlink()
    report = check_dataset(root)
    assert report["multi_frame"] == [{"file": str(animated)}, {"file": str(paged)}]
    assert report["ok"]  # the first frame is a good trimap
    lines = format_report(report).splitlines()
    for path in (animated, paged):
        assert f"multi-frame: {path} holds more than one frame; only the first is used" in lines


def test_float_masks_are_checked_against_the_class_mapping(tmp_path):
    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = np.zeros((8, 8), np.float32)
    mask[2:6, 2:6] = 255
    for name, odd in (("good", 255.0), ("nan", np.nan), ("half", 0.5)):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / f"{name}.jpg")
        Image.fromarray(np.where(np.arange(64).reshape(8, 8) == 0, odd, mask).astype(np.float32), "F").save(
            root / "masks" / f"{name}.tif")  # a float TIFF, as some tools save masks
    report = check_dataset(root, label_map={0: "background", 255: "pet"})
    reasons = {Path(item["file"]).stem: item["reason"] for item in report["mislabelled"]}
    assert reasons == {name: f"{root / 'masks' / name}.tif: mask values [{value}] are not in the class mapping "
                             "(a floating-point mask)" for name, value in (("nan", "nan"), ("half", "0.5"))}
    good = next(sample for sample in load_samples(root, "all", label_map={0: "background", 255: "pet"})
                if sample.name == "good")
    assert np.bincount(load_mask(good).ravel()).tolist() == [17, 47]  # pet 0, background 1


def _folder_dataset(root: Path, masks: dict[str, bytes]) -> Path:
    """images/<name>.jpg (64 x 48) and masks/<name>.<suffix> from {"name.suffix": mask file's bytes}."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for file_name, data in masks.items():
        Image.new("RGB", (64, 48)).save(root / "images" / f"{Path(file_name).stem}.jpg")
        (root / "masks" / file_name).write_bytes(data)
    return root


def _tiff(image: Image.Image, associated_alpha: bool = False) -> bytes:
    """A TIFF of `image`; associated_alpha: its LA alpha marked premultiplied, which Pillow opens as mode La."""
    import struct

    buffer = io.BytesIO()
    image.save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    directory = struct.unpack_from("<I", data, 4)[0]
    for start in range(directory + 2, directory + 2 + 12 * struct.unpack_from("<H", data, directory)[0], 12):
        if associated_alpha and struct.unpack_from("<H", data, start)[0] == 338:  # ExtraSamples: 2 -> 1
            struct.pack_into("<H", data, start + 8, 1)
    return bytes(data)


def test_a_mask_with_no_gray_levels_is_mislabelled_and_left_out_of_training(tmp_path):
    """La and LAB masks: image.convert("L") raised ValueError, a traceback in check, train and evaluate."""
    from petseg.data.check import find_unfit

    root = _folder_dataset(tmp_path / "mine", {
        "la.tif": _tiff(Image.new("LA", (64, 48), (255, 255)), associated_alpha=True),
        "lab.tif": _tiff(Image.new("LAB", (64, 48))),
    })
    label_map = {0: "background", 255: "pet"}
    report = check_dataset(root, label_map=label_map)
    reasons = {Path(item["file"]).name: item["reason"] for item in report["mislabelled"]}
    assert reasons == {f"{name}.tif": f"{root / 'masks' / name}.tif: a mask in mode {mode} has no gray levels to read "
                                      f"(conversion from {mode} to {to} not supported); save it as a gray-scale image"
                       for name, mode, to in (("la", "La", "L"), ("lab", "LAB", "RGB"))}
    unfit = find_unfit(load_samples(root, "all", label_map=label_map))
    assert sorted(found.sample.name for found in unfit if found.broken) == ["la", "lab"]


def test_a_tiff_of_too_many_strips_never_reaches_pillow_in_the_check(tmp_path, tiff_opens):
    """sniff_format opened files with Pillow directly: a 1 x 4,000,000 TIFF in one-row strips took
    `petseg data check` (and `petseg train`, which leaves out what the check finds) to 1.3 GB."""
    from petseg.data.check import find_unfit
    from petseg.data.tiff_pieces import MAX_PIECES

    mask = io.BytesIO()
    Image.new("L", (64, 48), 255).save(mask, "PNG")
    root = _folder_dataset(tmp_path / "mine", {"s.png": mask.getvalue()})
    (root / "images" / "s.jpg").unlink()
    (root / "images" / "s.tif").write_bytes(tiff_of_strips(MAX_PIECES + 1))
    label_map = {0: "background", 255: "pet"}
    reason = (f"{root / 'images' / 's.tif'}: a TIFF in {MAX_PIECES + 1} strips or tiles, over {MAX_PIECES} (each costs "
              "memory before the image's size can be checked; photos have at most a few thousand)")
    assert check_dataset(root, label_map=label_map)["unreadable"] == [{"file": str(root / "images" / "s.tif"),
                                                                     "reason": reason}]
    assert [found.reason for found in find_unfit(load_samples(root, "all", label_map=label_map))] == [reason]
    assert tiff_opens == []
