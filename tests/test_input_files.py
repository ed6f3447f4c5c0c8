"""Folders as users have them: every format Pillow reads, FIFOs, sockets, symlink loops,
an --out that is a file, and temporaries a killed run left behind.

Every child process runs under a timeout, so a FIFO that is opened (and blocks) fails
the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from petseg.errors import ImageError
from petseg.inference.files import plan_cutouts
from petseg.inference.provenance import RECORD_FILE
from tests.test_atomic import dead_pid

HANG_GUARD_SECONDS = 120  # far above the few seconds these runs take; only a blocked open reaches it

# Formats this Pillow both writes and reads, with their usual names; AVIF where built in.
FORMATS = {".png": "PNG", ".webp": "WEBP", ".tga": "TGA", ".ppm": "PPM", ".qoi": "QOI", ".jp2": "JPEG2000",
           ".bmp": "BMP", ".tif": "TIFF"}  # fmt: skip
if features.check("avif"):
    FORMATS[".avif"] = "AVIF"


def petseg(*args, timeout: float = HANG_GUARD_SECONDS):
    return subprocess.run([sys.executable, "-m", "petseg", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from petseg.models import create_model, save_model

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(create_model("unet_diy", width=4, depth=2, image_size=32), path)
    return path


def photo_array() -> np.ndarray:
    rows, columns = np.mgrid[0:30, 0:40]
    return np.stack([rows * 8, columns * 6, np.full_like(rows, 90)], axis=-1).astype(np.uint8)


@pytest.fixture
def hostile_folder(tmp_path) -> Path:
    """A photo, a FIFO and a socket named like photos, a self-looping and a dangling symlink."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photo_array()).save(folder / "cat.jpg")
    os.mkfifo(folder / "fifo.jpg")
    (folder / "loop.jpg").symlink_to("loop.jpg")
    (folder / "gone.png").symlink_to(folder / "absent.png")
    with socket.socket(socket.AF_UNIX) as server:
        try:
            server.bind(str(folder / "sock.png"))
        except OSError:  # a path too long for a socket name: the other cases still run
            pass
    return folder


def test_folders_take_every_format_pillow_reads(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for suffix, image_format in FORMATS.items():
        Image.fromarray(photo_array()).save(folder / f"photo_{suffix[1:]}{suffix}", image_format)  # one output each
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".hidden.png").write_bytes(b"")  # hidden files (our temporaries) are never inputs
    in_folder = plan_cutouts([str(folder)], tmp_path / "out", ".png").jobs
    assert sorted(job.source.suffix for job in in_folder) == sorted(FORMATS)
    for job in in_folder:
        from petseg.data.decode import load_rgb

        assert load_rgb(job.source).shape == (30, 40, 3), job.source
    named = [path for path in sorted(folder.iterdir()) if path.suffix in FORMATS and not path.name.startswith(".")]
    assert [job.source for job in in_folder] == [job.source for job in plan_cutouts(map(str, named), tmp_path / "o", ".png").jobs]


def test_non_regular_files_and_symlink_loops_are_reported_never_opened(hostile_folder, tmp_path):
    plan = plan_cutouts([str(hostile_folder)], tmp_path / "out", ".png")
    assert [job.source.name for job in plan.jobs] == ["cat.jpg"]
    problems = "\n".join(plan.problems)
    assert "fifo.jpg: is a FIFO (named pipe), not a regular file; skipped" in problems
    assert "loop.jpg: Too many levels of symbolic links; skipped" in problems
    assert "gone.png: broken symbolic link; skipped" in problems
    if (hostile_folder / "sock.png").exists():
        assert "sock.png: is a socket, not a regular file; skipped" in problems
    named = plan_cutouts([str(hostile_folder / "fifo.jpg"), str(hostile_folder / "loop.jpg")], tmp_path / "out", ".png")
    assert named.jobs == [] and len(named.problems) == 2
    globbed = plan_cutouts([str(hostile_folder / "*.jpg")], tmp_path / "out", ".png")
    assert [job.source.name for job in globbed.jobs] == ["cat.jpg"] and len(globbed.problems) == 2


def test_the_decoder_never_opens_a_fifo(hostile_folder):
    """In a child process: were the FIFO opened, the open would block until the guard kills it."""
    code = (
        "import sys; from petseg.data.decode import load_rgb\n"
        "try:\n    load_rgb(sys.argv[1])\nexcept Exception as error:\n    print(type(error).__name__, error)"
    )
    child = subprocess.run([sys.executable, "-c", code, str(hostile_folder / "fifo.jpg")], capture_output=True,
                           text=True, timeout=HANG_GUARD_SECONDS)  # fmt: skip
    assert child.stdout.startswith("ImageError") and "is a FIFO" in child.stdout, child.stderr


@pytest.mark.parametrize("name, words", [("loop.jpg", "symbolic links"), ("gone.png", "broken symbolic link")])
def test_the_decoder_names_bad_links(hostile_folder, name, words):
    with pytest.raises(ImageError, match=words):
        from petseg.data.decode import load_rgb

        load_rgb(hostile_folder / name)


def test_the_batch_reports_each_bad_file_and_cuts_out_the_rest(hostile_folder, tmp_path, model_file):
    out = tmp_path / "out"
    result = petseg("cutout", hostile_folder, "--model", model_file, "--out", out)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert sum(name in " ".join(errors) for name in ("fifo.jpg", "loop.jpg", "gone.png")) == 3, errors
    assert sorted(path.name for path in out.iterdir() if path.name != RECORD_FILE) == ["cat.png"]


def test_out_that_is_a_file_fails_before_the_model_loads(tmp_path, model_file):
    Image.fromarray(photo_array()).save(tmp_path / "cat.jpg")
    (tmp_path / "taken").write_text("a file")
    broken_model = tmp_path / "broken.safetensors"
    broken_model.write_bytes(b"not a model")  # loading it would fail: the --out error must come first
    for out in (tmp_path / "taken", tmp_path / "taken" / "below"):
        result = petseg("cutout", tmp_path / "cat.jpg", "--model", broken_model, "--out", out)
        assert result.returncode == 2
        assert result.stderr.strip() == f"error: --out: {tmp_path / 'taken'}: exists and is not a folder; the outputs need a folder"
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_cutout_run_removes_the_temporaries_a_killed_run_left(tmp_path, model_file):
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    Image.fromarray(photo_array()).save(photos / "cat.jpg")
    Image.fromarray(photo_array()).save(photos / "more" / "dog.jpg")
    out = tmp_path / "out"
    (out / "more").mkdir(parents=True)
    dead = dead_pid()
    stale = [out / f".cat.png.petseg-tmp-{dead}-0123abcd", out / "more" / f".dog.png.petseg-tmp-{dead}-89abcdef"]
    for path in stale:
        path.write_bytes(b"half a cutout")
    live = out / f".other.png.petseg-tmp-{os.getpid()}-01234567"  # a run still writing here
    live.write_bytes(b"being written")
    result = petseg("cutout", photos, "-r", "--model", model_file, "--out", out)
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in stale) and live.exists()
    assert sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.name != RECORD_FILE) == [
        ".other.png.petseg-tmp-" + live.name.split("-tmp-")[1], "cat.png", "more", "more/dog.png"
    ]


def test_a_recursive_glob_walks_folders_as_a_folder_input_does(tmp_path):
    """glob.glob follows links to folders: with three links to "." its walk never ended (3**40 paths)."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    Image.fromarray(photo_array()).save(folder / "cat.jpg")
    Image.fromarray(photo_array()).save(folder / "more" / "dog.jpg")
    for name in ("l1", "l2", "l3"):
        (folder / name).symlink_to(".")
    code = ("import sys; from pathlib import Path; from petseg.inference.files import plan_cutouts\n"
            "plan = plan_cutouts([sys.argv[1] + '/**/*.jpg'], Path(sys.argv[1]) / 'out', '.png', recursive=True)\n"
            "print(sorted(str(job.source.relative_to(sys.argv[1])) for job in plan.jobs), plan.problems)")
    child = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=60)
    assert child.stdout.strip() == "['cat.jpg', 'more/dog.jpg'] []", child.stderr


def test_a_folder_without_photos_is_a_problem_of_its_own(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "folder.jpg").mkdir()  # a folder named like a photo
    (tmp_path / "only_below" / "deeper").mkdir(parents=True)
    Image.fromarray(photo_array()).save(tmp_path / "only_below" / "deeper" / "cat.jpg")
    names = ("empty", "folder.jpg", "only_below")
    plan = plan_cutouts([str(tmp_path / name) for name in names], tmp_path / "out", ".png")
    assert plan.jobs == [] and plan.problems == [
        f"{tmp_path / name}: no photos in this folder (subfolders are searched only when recursive)" for name in names]
    plan = plan_cutouts([str(tmp_path / name) for name in names], tmp_path / "out", ".png", recursive=True)
    assert len(plan.jobs) == 1 and plan.problems == [f"{tmp_path / 'empty'}: no photos in this folder",
                                                     f"{tmp_path / 'folder.jpg'}: no photos in this folder"]
