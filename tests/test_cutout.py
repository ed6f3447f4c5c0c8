"""`petseg cutout`: inputs, output names, skipping, bad files, stdin/stdout, the batch pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from petseg.errors import PetsegError
from tests.test_inference_toy_model import foreground_iou, one_thread, toy_model_file, toy_photo  # noqa: F401
from tests.test_decode import dds_without_pixel_format


def cli(*args):
    """Run the CLI in-process; user errors are returned as exceptions (main() prints them)."""
    from petseg.cli import app

    return CliRunner().invoke(app, [str(arg) for arg in args])


def petseg_process(*args, stdin: bytes | None = None):
    """Run the real entry point in a child process (exit codes, stdout bytes, error lines)."""
    return subprocess.run(
        [sys.executable, "-m", "petseg", *map(str, args)], input=stdin, capture_output=True, timeout=180
    )


@pytest.fixture
def photos(tmp_path, toy_photo):
    """A folder with two photos (one in a subfolder) and a non-image file."""
    photo, _ = toy_photo
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    Image.fromarray(photo).save(folder / "cat.jpg", quality=95)
    Image.fromarray(photo).save(folder / "more" / "dog.png")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def leftovers(folder: Path) -> list[Path]:
    from petseg.inference.provenance import RECORD_FILE

    return [path for path in folder.rglob("*")
            if (path.name.startswith(".") and path.name != RECORD_FILE) or path.suffix == ".tmp"]


# --- planning: inputs and output names --------------------------------------------------


def test_outputs_are_named_from_inputs_and_kept_inside_out(photos, tmp_path):
    from petseg.inference.files import plan_cutouts

    out = tmp_path / "out"
    flat = plan_cutouts([str(photos)], out, ".png")
    assert [(job.source.name, job.output) for job in flat.jobs] == [("cat.jpg", out / "cat.png")]
    deep = plan_cutouts([str(photos)], out, ".png", recursive=True)
    assert [job.output for job in deep.jobs] == [out / "cat.png", out / "more" / "dog.png"]
    assert all(job.output.resolve().is_relative_to(out.resolve()) for job in deep.jobs)
    matched = plan_cutouts([str(photos / "**" / "*.png")], out, ".jpg", recursive=True)
    assert [job.output for job in matched.jobs] == [out / "dog.jpg"]
    (photos / "cutouts").mkdir()
    Image.new("RGB", (8, 8)).save(photos / "cutouts" / "old.png")  # earlier outputs inside the input
    again = plan_cutouts([str(photos)], photos / "cutouts", ".png", recursive=True)
    assert [job.source.name for job in again.jobs] == ["cat.jpg", "dog.png"]


def test_missing_inputs_collisions_and_self_overwrites_are_problems(photos, tmp_path):
    from petseg.inference.files import plan_cutouts

    Image.new("RGB", (8, 8)).save(photos / "cat.png")  # cat.jpg and cat.png both want OUT/cat.png
    inputs = [photos / "cat.jpg", photos / "cat.png", tmp_path / "nope.jpg", tmp_path / "*.gif"]
    plan = plan_cutouts(map(str, inputs), tmp_path / "out", ".png")
    assert [job.source.name for job in plan.jobs] == ["cat.jpg"]
    assert len(plan.problems) == 3
    assert "cat.png: its output" in plan.problems[0] and "cat.jpg's; rename one of them" in plan.problems[0]
    assert "nope.jpg: no such file" in plan.problems[1] and "no file matches" in plan.problems[2]

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cat.png").symlink_to(tmp_path / "gone.png")  # dangling: still not ours to replace
    assert plan_cutouts([str(photos / "cat.jpg")], tmp_path / "out", ".png").jobs == []

    in_place = plan_cutouts([str(photos / "cat.png")], photos, ".png", force=True)
    assert in_place.jobs == [] and "would overwrite the input" in in_place.problems[0]


def test_an_output_never_overwrites_another_input_even_when_forced(photos):
    from petseg.inference.files import plan_cutouts

    Image.new("RGB", (8, 8)).save(photos / "cat.png")  # cat.jpg's cutout would be photos/cat.png
    for order in ([photos / "cat.jpg", photos / "cat.png"], [photos / "cat.png", photos / "cat.jpg"]):
        plan = plan_cutouts(map(str, order), photos, ".png", force=True)
        assert plan.jobs == []
        assert any(f"its output {photos / 'cat.png'} is an input file" in problem for problem in plan.problems)


def test_existing_outputs_are_skipped_unless_forced(photos, tmp_path):
    from petseg.inference.files import plan_cutouts

    out = tmp_path / "out"
    out.mkdir()
    (out / "cat.png").write_bytes(b"old")
    assert [job.output.name for job in plan_cutouts([str(photos)], out, ".png").skipped] == ["cat.png"]
    assert [job.output.name for job in plan_cutouts([str(photos)], out, ".png", force=True).jobs] == ["cat.png"]


# --- the command --------------------------------------------------------------------------


def test_folder_cutout_writes_rgba_pngs_and_skips_existing(photos, tmp_path, toy_model_file, toy_photo):
    photo, labels = toy_photo
    out = tmp_path / "out"
    result = cli("cutout", photos, "--out", out, "--model", toy_model_file, "--recursive")
    assert result.exit_code == 0, result.output
    written = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.png"))
    assert written == ["cat.png", "more/dog.png"]
    cutout = np.asarray(Image.open(out / "more" / "dog.png"))
    assert cutout.shape == (*photo.shape[:2], 4)
    assert foreground_iou(cutout[..., 3] >= 128, labels) > 0.8

    before = (out / "cat.png").stat().st_mtime_ns
    again = cli("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file)
    assert again.exit_code == 0 and "skipped 1" in again.output
    assert (out / "cat.png").stat().st_mtime_ns == before
    forced = cli("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file, "--force", "--mode", "mask")
    assert forced.exit_code == 0 and Image.open(out / "cat.png").mode == "L"


def test_bad_files_are_reported_and_the_others_written(photos, tmp_path, toy_model_file):
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_text("hello")
    (photos / "odd.dds").write_bytes(dds_without_pixel_format())  # Pillow raises NotImplementedError
    good = (photos / "cat.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 2])
    big = photos / "big.png"
    Image.new("RGB", (400, 300)).save(big)
    out = tmp_path / "out"
    result = petseg_process("cutout", photos, "--out", out, "--model", toy_model_file, "--max-pixels", 100_000)
    errors = result.stderr.decode()
    assert result.returncode == 1, errors
    for name, reason in (("empty.jpg", "not an image"), ("text.png", "not an image"), ("odd.dds", "cannot read image"),
                         ("truncated.jpg", "truncated"), ("big.png", "pixels, over the limit of")):
        assert any(name in line and reason in line for line in errors.splitlines()), (name, errors)
    assert "Traceback" not in errors
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith(".")) == ["cat.png"]
    assert leftovers(out) == []


def test_stdin_to_stdout_and_user_errors(toy_model_file, toy_photo, tmp_path):
    photo, labels = toy_photo
    source = tmp_path / "photo.png"
    Image.fromarray(photo).save(source)
    result = petseg_process("cutout", "-", "--model", toy_model_file, "--mode", "labels", stdin=source.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    trimap = np.asarray(Image.open(__import__("io").BytesIO(result.stdout)))
    assert trimap.shape == labels.shape and set(np.unique(trimap)) <= {1, 2, 3}
    assert foreground_iou(trimap != 2, labels) > 0.8

    bad = petseg_process("cutout", "-", "--model", toy_model_file, stdin=b"not an image")
    assert bad.returncode != 0 and bad.stdout == b""
    assert bad.stderr.decode().strip().splitlines() == ["error: <stdin>: not an image (unrecognised or empty file)"]

    command = [sys.executable, "-m", "petseg", "cutout", "-", "--model", str(toy_model_file)]
    with open(source, "rb") as stdin, open("/dev/full", "wb") as full:  # a full disk under stdout
        result = subprocess.run(command, stdin=stdin, stdout=full, stderr=subprocess.PIPE, timeout=180)
    assert (result.returncode, result.stderr.decode().splitlines()) == (
        1, ["error: stdout: cannot write the cutout (No space left on device)"])
    with open(source, "rb") as stdin:  # stdout closed
        result = subprocess.run(command, stdin=stdin, stderr=subprocess.PIPE, timeout=180, close_fds=True,
                                preexec_fn=lambda: __import__("os").close(1))
    assert result.stderr.decode().splitlines() == [
        "error: stdout is closed; redirect it to a file (petseg cutout - > out.png)"]


def test_control_characters_in_file_names_stay_on_one_line(tmp_path, toy_model_file):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a\nerror: fake\x1b]0;title\x07.jpg").write_bytes(b"not a photo")
    result = petseg_process("cutout", folder / "a\nerror: fake\x1b]0;title\x07.jpg", "--model", toy_model_file,
                            "--out", tmp_path / "out")
    lines = result.stderr.decode().splitlines()
    assert result.returncode != 0 and lines[0].startswith("error: ") and len(lines) == 2, lines  # the error, the summary
    assert "a\\nerror: fake\\x1b]0;title\\x07.jpg: not an image" in lines[0] and "\x1b" not in lines[0]


def test_color_mode_writes_jpegs_and_checks_its_options(photos, tmp_path, toy_model_file):
    out = tmp_path / "out"
    result = cli("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file, "--mode", "color", "--bg", "#336699")
    assert result.exit_code == 0, result.output
    assert Image.open(out / "cat.jpg").format == "JPEG"
    for args, message in (
        (["--mode", "rgba", "--bg", "red"], "--mode/--alpha/--bg/--bg-image: a background colour or image needs cutout mode 'color'"),
        (["--mode", "color", "--bg", "nonsense"], "not a colour"),
        (["--model", tmp_path / "missing.safetensors"], "not found"),
    ):
        failed = cli("cutout", photos / "cat.jpg", "--out", out, "--force", "--model", toy_model_file, *args)
        assert isinstance(failed.exception, PetsegError) and message in str(failed.exception)


def test_a_wrong_flag_combination_is_refused_before_the_background_photo_decodes(photos, tmp_path, toy_model_file,
                                                                                monkeypatch):
    """--bg with --bg-image is refused from the flags alone: the background photo is never read."""
    from petseg.data import decode

    decoded = []

    def load_rgb(*args, **kwargs):
        decoded.append(args)
        raise AssertionError("the background photo was decoded")

    monkeypatch.setattr(decode, "load_rgb", load_rgb)
    failed = cli("cutout", photos / "cat.jpg", "--out", tmp_path / "out", "--model", toy_model_file,
                 "--bg", "red", "--bg-image", photos / "cat.jpg")
    assert isinstance(failed.exception, PetsegError), failed.output
    assert "--mode/--alpha/--bg/--bg-image: give one background, a colour or an image, not both" in str(failed.exception)
    assert decoded == []


def test_pipeline_keeps_order_independent_results_in_small_batches(photos, tmp_path, toy_model_file, monkeypatch):
    """Batches of 1 with a tiny pixel budget give the same files as one batch."""
    from petseg.inference import CutoutOptions, Segmenter, pipeline
    from petseg.inference.files import plan_cutouts

    segmenter = Segmenter.load(toy_model_file)
    outputs = {}
    for batch_size, budget in ((8, pipeline.IN_FLIGHT_PIXELS), (1, 1)):
        monkeypatch.setattr(pipeline, "IN_FLIGHT_PIXELS", budget)
        out = tmp_path / f"out{batch_size}"
        plan = plan_cutouts([str(photos)], out, ".png", recursive=True)
        summary = pipeline.run_cutouts(segmenter, plan.jobs, CutoutOptions(), batch_size=batch_size)
        assert len(summary.written) == 2 and summary.failed == []
        outputs[batch_size] = [np.asarray(Image.open(out / name)) for name in ("cat.png", "more/dog.png")]
    for batched, single in zip(outputs[8], outputs[1]):
        assert np.abs(batched.astype(int) - single).max() <= 1


# --- every cutout option, through the CLI -------------------------------------------------


def cut(source, out, model, *args) -> Path:
    """Run `petseg cutout` on one photo into its own folder; the path of the single output."""
    result = cli("cutout", source, "--out", out, "--model", model, *args)
    assert result.exit_code == 0, result.output
    [written] = [path for path in out.iterdir() if not path.name.startswith(".")]
    return written


def test_alpha_option_gives_each_kind_of_alpha(photos, tmp_path, toy_model_file, toy_photo):
    _, labels = toy_photo
    source = photos / "cat.jpg"
    alphas = {kind: np.asarray(Image.open(cut(source, tmp_path / kind, toy_model_file, "--mode", "mask", "--alpha", kind)))
              for kind in ("matting", "hard", "soft")}
    default = np.asarray(Image.open(cut(source, tmp_path / "default", toy_model_file, "--mode", "mask")))
    np.testing.assert_array_equal(default, alphas["matting"])
    assert set(np.unique(alphas["hard"])) <= {0, 255}
    # hard is the label mask: the labels mode's pet and border pixels.
    trimap = np.asarray(Image.open(cut(source, tmp_path / "labels", toy_model_file, "--mode", "labels")))
    np.testing.assert_array_equal(alphas["hard"] == 255, trimap != 2)
    semi = {kind: ((alpha > 25) & (alpha < 230)).mean() for kind, alpha in alphas.items()}
    assert semi["matting"] < semi["soft"], semi
    assert (alphas["matting"] != alphas["hard"]).any()
    for kind, alpha in alphas.items():
        assert foreground_iou(alpha >= 128, labels) > 0.8, kind


def test_modes_write_what_they_claim_and_matting_recolours_edges(photos, tmp_path, toy_model_file):
    source = photos / "cat.jpg"
    photo = np.asarray(Image.open(source).convert("RGB"))
    rgba = Image.open(cut(source, tmp_path / "rgba", toy_model_file, "--mode", "rgba"))
    assert rgba.format == "PNG" and rgba.mode == "RGBA"
    rgba = np.asarray(rgba)
    mask = np.asarray(Image.open(cut(source, tmp_path / "mask", toy_model_file, "--mode", "mask")))
    np.testing.assert_array_equal(rgba[..., 3], mask)
    edge = (mask > 0) & (mask < 255)
    assert edge.any()
    # Matting decontaminates: edge pixels change colour, solid ones keep the photo's.
    assert np.abs(rgba[..., :3][edge].astype(int) - photo[edge]).max() > 10
    np.testing.assert_array_equal(rgba[..., :3][mask == 255], photo[mask == 255])
    # Invisible pixels are transparent black (small files); hard alpha leaves visible colours alone.
    np.testing.assert_array_equal(rgba[mask == 0], 0)
    hard = np.asarray(Image.open(cut(source, tmp_path / "hard", toy_model_file, "--alpha", "hard")))
    visible = hard[..., 3] > 0
    assert visible.any() and not visible.all()
    np.testing.assert_array_equal(hard[..., :3][visible], photo[visible])
    np.testing.assert_array_equal(hard[~visible], 0)

    color = Image.open(cut(source, tmp_path / "color", toy_model_file, "--mode", "color"))
    assert color.format == "JPEG" and color.mode == "RGB"
    color = np.asarray(color).astype(int)
    assert np.abs(color[mask == 0] - 255).mean() < 3  # white by default
    assert np.abs(color[mask == 255] - photo[mask == 255]).mean() < 3


def test_bg_and_bg_image_alone_imply_color_mode(photos, tmp_path, toy_model_file):
    source = photos / "cat.jpg"
    mask = np.asarray(Image.open(cut(source, tmp_path / "mask", toy_model_file, "--mode", "mask")))
    red = Image.open(cut(source, tmp_path / "red", toy_model_file, "--bg", "#ff0000"))
    assert red.format == "JPEG"
    assert np.abs(np.asarray(red).astype(int)[mask == 0] - (255, 0, 0)).mean() < 4
    stripes = np.zeros((40, 60, 3), np.uint8)
    stripes[:, ::2] = (0, 0, 255)
    backdrop = tmp_path / "backdrop.png"
    Image.fromarray(stripes).save(backdrop)
    pasted = Image.open(cut(source, tmp_path / "pasted", toy_model_file, "--bg-image", backdrop))
    assert pasted.format == "JPEG" and pasted.size == (mask.shape[1], mask.shape[0])
    background = np.asarray(pasted).astype(int)[mask == 0]
    assert background[:, 2].mean() > 60 and background[:, 0].mean() < 20  # the blue stripes, not white


def test_flip_tta_makes_the_cutout_mirror_symmetric(tmp_path, toy_model_file, toy_photo):
    """With --flip-tta (by default with matting) the prediction averages the photo and its mirror: cutting out the
    mirror gives the mirrored cutout."""
    photo, _ = toy_photo
    side = min(photo.shape[:2])
    photo = np.ascontiguousarray(photo[:side, :side])  # square: no letterbox padding to break the mirror
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(np.ascontiguousarray(photo[:, ::-1])).save(tmp_path / "mirror.png")

    def asymmetry(*args) -> int:
        plain = np.asarray(Image.open(cut(tmp_path / "photo.png", tmp_path / f"a{args}", toy_model_file, *args)))
        mirrored = np.asarray(Image.open(cut(tmp_path / "mirror.png", tmp_path / f"b{args}", toy_model_file, *args)))
        return int(np.abs(plain.astype(int) - mirrored[:, ::-1]).max())

    assert asymmetry("--mode", "mask", "--alpha", "soft", "--flip-tta") <= 1
    assert asymmetry("--mode", "mask", "--alpha", "soft") > 5
    # Matting, the default alpha, flips unless told not to (the solver itself is mirror-symmetric).
    assert asymmetry("--mode", "mask") <= 1
    assert asymmetry("--mode", "mask", "--no-flip-tta") > 5


def test_rerun_skips_same_options_and_refuses_other_options_until_forced(photos, tmp_path, toy_model_file):
    out = tmp_path / "out"
    source = photos / "cat.jpg"
    first = cli("cutout", source, "--out", out, "--model", toy_model_file, "--alpha", "hard")
    assert first.exit_code == 0, first.output
    made = (out / "cat.png").read_bytes()
    same = cli("cutout", source, "--out", out, "--model", toy_model_file, "--alpha", "hard")
    assert same.exit_code == 0 and "skipped 1" in same.output
    other = cli("cutout", source, "--out", out, "--model", toy_model_file, "--alpha", "soft")
    assert other.exit_code != 0
    [line] = other.output.strip().splitlines()
    assert "other options" in line and "--force" in line
    assert (out / "cat.png").read_bytes() == made
    forced = cli("cutout", source, "--out", out, "--model", toy_model_file, "--alpha", "soft", "--force")
    assert forced.exit_code == 0 and (out / "cat.png").read_bytes() != made
    again = cli("cutout", source, "--out", out, "--model", toy_model_file, "--alpha", "soft")
    assert again.exit_code == 0 and "skipped 1" in again.output
    # A file petseg did not record is not silently taken for a finished cutout.
    (out / "dog.png").write_bytes(b"someone else's")
    (photos / "dog.jpg").write_bytes(source.read_bytes())
    unknown = cli("cutout", photos / "dog.jpg", "--out", out, "--model", toy_model_file, "--alpha", "soft")
    assert unknown.exit_code != 0 and "--force" in unknown.output


def test_a_different_photo_of_the_same_name_or_a_retrained_model_is_not_taken_for_done(tmp_path, toy_model_file,
                                                                                       toy_photo):
    import shutil

    photo, _ = toy_photo
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(photo).save(tmp_path / "a" / "photo.jpg")
    Image.fromarray(np.ascontiguousarray(photo[::-1])).save(tmp_path / "b" / "photo.jpg")
    model = shutil.copy(toy_model_file, tmp_path / "model.safetensors")
    out = tmp_path / "out"
    refusal = (f"error: {out}: 1 existing output(s) (e.g. photo.png) were made with other options, from another "
               "photo or model file, or by something else; use --force to overwrite them, or another --out")
    assert cli("cutout", tmp_path / "a" / "photo.jpg", "--out", out, "--model", model).exit_code == 0
    made = (out / "photo.png").read_bytes()
    other_photo = cli("cutout", tmp_path / "b" / "photo.jpg", "--out", out, "--model", model)
    assert (other_photo.exit_code, other_photo.output.strip()) == (2, refusal)
    assert (out / "photo.png").read_bytes() == made
    os.utime(model, ns=(os.stat(model).st_atime_ns, os.stat(model).st_mtime_ns + 10**9))  # retrained in place
    retrained = cli("cutout", tmp_path / "a" / "photo.jpg", "--out", out, "--model", model)
    assert (retrained.exit_code, retrained.output.strip()) == (2, refusal)
    forced = cli("cutout", tmp_path / "a" / "photo.jpg", "--out", out, "--model", model, "--force")
    assert forced.exit_code == 0, forced.output
    again = cli("cutout", tmp_path / "a" / "photo.jpg", "--out", out, "--model", model)
    assert again.exit_code == 0 and "skipped 1" in again.output
    # So is a background photo replaced under the same name.
    background = tmp_path / "garden.jpg"
    Image.new("RGB", (8, 8), (0, 120, 0)).save(background)
    first = cli("cutout", tmp_path / "a" / "photo.jpg", "--out", out, "--model", model, "--bg-image", background, "--force")
    assert first.exit_code == 0, first.output
    Image.new("RGB", (8, 8), (0, 0, 200)).save(background)
    os.utime(background, ns=(os.stat(background).st_atime_ns, os.stat(background).st_mtime_ns + 10**9))
    replaced = cli("cutout", tmp_path / "a" / "photo.jpg", "--out", out, "--model", model, "--bg-image", background)
    assert (replaced.exit_code, replaced.output.strip()) == (2, refusal.replace("photo.png", "photo.jpg"))  # colour mode


def test_an_output_recorded_without_its_photo_and_model_is_not_taken_for_done(photos, tmp_path, toy_model_file):
    """Records written before petseg noted the files hold the options only: such outputs count as unknown."""
    import json

    from petseg.inference.provenance import RECORD_FILE

    out = tmp_path / "out"
    assert cli("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file).exit_code == 0
    record = json.loads((out / RECORD_FILE).read_text())
    for entry in record.values():
        del entry["source"], entry["model_file"]
    (out / RECORD_FILE).write_text(json.dumps(record))
    old = cli("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file)
    assert old.exit_code == 2 and old.output.startswith(f"error: {out}: 1 existing output(s)")
    assert old.output.strip().endswith("use --force to overwrite them, or another --out")


@pytest.mark.timeout(120)  # reading a FIFO would wait for a writer forever
@pytest.mark.parametrize("damage, problem", [
    ("deep", "not valid JSON (nested too deeply)"),
    ("fifo", "cannot read the cutout record (is a FIFO (named pipe), not a regular file)"),
])  # fmt: skip
def test_a_broken_record_is_one_warning_and_the_outputs_count_as_unknown(photos, tmp_path, toy_model_file,
                                                                          damage, problem):
    from petseg.inference.provenance import RECORD_FILE

    out = tmp_path / "out"
    assert cli("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file).exit_code == 0
    record = out / RECORD_FILE
    record.unlink()
    if damage == "fifo":
        os.mkfifo(record)
    else:
        record.write_text("[" * 200_000)
    result = petseg_process("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        f"warning: {record}: {problem}; the outputs already in the folder count as made with unknown options",
        f"error: {out}: 1 existing output(s) (e.g. cat.png) were made with other options, from another photo or "
        "model file, or by something else; use --force to overwrite them, or another --out",
    ]
    forced = petseg_process("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file, "--force")
    assert forced.returncode == 0
    assert forced.stderr.decode().splitlines()[0] == f"warning: {record}: {problem}; writing a new one"
    assert cli("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file).exit_code == 0  # a new record


def test_a_pipe_is_held_to_the_file_checks_and_a_closed_stdin_is_one_line(toy_model_file):
    """A pipe skipped the TIFF strip count (Pillow read all of it into memory: 1.4 GB for a 1 x 4,000,000
    TIFF of one-row strips), and a closed stdin was a traceback."""
    from petseg.data.tiff_pieces import MAX_PIECES
    from tests.test_pixel_limits import tiff_of_strips

    strips = petseg_process("cutout", "-", "--model", toy_model_file, stdin=tiff_of_strips(MAX_PIECES + 1))
    assert (strips.returncode, strips.stdout, strips.stderr.decode().splitlines()) == (2, b"", [
        f"error: <stdin>: a TIFF in {MAX_PIECES + 1} strips or tiles, over {MAX_PIECES} (each costs memory before "
        "the image's size can be checked; photos have at most a few thousand)"])
    closed = subprocess.run([sys.executable, "-m", "petseg", "cutout", "-", "--model", str(toy_model_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180, close_fds=True,
                            preexec_fn=lambda: os.close(0))
    assert (closed.returncode, closed.stderr.decode().splitlines()) == (
        2, ["error: stdin is closed; pipe a photo in (petseg cutout - < photo.jpg > out.png)"])
