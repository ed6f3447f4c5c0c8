"""`petseg cutout`: inputs, output names, skipping, bad files, stdin/stdout, the batch pipeline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from petseg.errors import PetsegError
from tests.test_inference_toy_model import foreground_iou, one_thread, toy_model_file, toy_photo  # noqa: F401


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
    return [path for path in folder.rglob("*") if path.name.startswith(".") or path.suffix == ".tmp"]


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
    assert "cat.png: its output" in plan.problems[0] and "already written from" in plan.problems[0]
    assert "nope.jpg: no such file" in plan.problems[1] and "no file matches" in plan.problems[2]

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
    good = (photos / "cat.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 2])
    big = photos / "big.png"
    Image.new("RGB", (400, 300)).save(big)
    out = tmp_path / "out"
    result = petseg_process("cutout", photos, "--out", out, "--model", toy_model_file, "--max-pixels", 100_000)
    errors = result.stderr.decode()
    assert result.returncode == 1, errors
    for name, reason in (("empty.jpg", "not an image"), ("text.png", "not an image"),
                         ("truncated.jpg", "truncated"), ("big.png", "megapixels")):
        assert any(name in line and reason in line for line in errors.splitlines()), (name, errors)
    assert "Traceback" not in errors
    assert sorted(path.name for path in out.iterdir()) == ["cat.png"]
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


def test_color_mode_writes_jpegs_and_checks_its_options(photos, tmp_path, toy_model_file):
    out = tmp_path / "out"
    result = cli("cutout", photos / "cat.jpg", "--out", out, "--model", toy_model_file, "--mode", "color", "--bg", "#336699")
    assert result.exit_code == 0, result.output
    assert Image.open(out / "cat.jpg").format == "JPEG"
    for args, message in (
        (["--mode", "rgba", "--bg", "red"], "--mode/--bg/--bg-image: a background colour or image needs cutout mode 'color'"),
        (["--mode", "color", "--bg", "nonsense"], "not a colour"),
        (["--model", tmp_path / "missing.safetensors"], "not found"),
    ):
        failed = cli("cutout", photos / "cat.jpg", "--out", out, "--force", "--model", toy_model_file, *args)
        assert isinstance(failed.exception, PetsegError) and message in str(failed.exception)


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
