"""`petseg demo`: its checks on --out (the full run trains a model and is exercised by hand)."""

from __future__ import annotations

import pytest

from petseg.errors import PetsegError, command_line_flag


def test_demo_out_must_be_a_folder(tmp_path):
    from petseg.demo import run_demo

    a_file = tmp_path / "demo.txt"
    a_file.write_text("keep me")
    with pytest.raises(PetsegError, match="is a file, not a folder"):
        run_demo(a_file, log=lambda line: None)
    assert a_file.read_text() == "keep me"


def test_demo_refuses_a_non_empty_folder_without_force(tmp_path):
    from petseg.demo import run_demo

    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(PetsegError) as raised:
        run_demo(tmp_path, log=lambda line: None)
    assert raised.value.worded(command_line_flag).endswith("already exists and is not empty; --force replaces the demo's files")


@pytest.mark.slow  # trains a toy model for one epoch and runs the bundled model on four photos (about 30-60 s)
def test_demo_runs_end_to_end_and_writes_what_it_lists(tmp_path):
    import json

    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from petseg.cli import app
    from petseg.demo import DEMO_CUTOUTS, SHEET_BACKGROUND, SHEET_FILE, SHEET_ROW_HEIGHT, example_photos

    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    for listed in ("run/curves.png", "run/best.safetensors", "evaluation/predictions.png", "evaluation/metrics.json",
                   SHEET_FILE):
        assert (out / listed).is_file(), listed
        assert str(out / listed) in result.output, listed
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert set(metrics["alpha"]) == {"matting", "hard", "soft"}
    assert 0.0 <= metrics["resolutions"]["original"]["fg_iou"] <= 1.0
    cutouts = sorted((out / "cutouts").glob("*.png"))
    assert len(cutouts) == DEMO_CUTOUTS
    for cutout in cutouts:
        image = Image.open(cutout)
        source = out / "data" / "images" / f"{cutout.stem}.jpg"
        assert image.mode == "RGBA" and image.size == Image.open(source).size

    # The sheet: one row per example photo, photo | cutout on checks | cutout on a colour.
    photos = example_photos()
    assert len(photos) == 4
    sheet = np.asarray(Image.open(out / SHEET_FILE).convert("RGB")).astype(int)
    assert sheet.shape[0] == len(photos) * (SHEET_ROW_HEIGHT + 6) + 6
    first = Image.open(photos[0]).convert("RGB")
    width = round(first.width * SHEET_ROW_HEIGHT / first.height)
    expected = np.asarray(first.resize((width, SHEET_ROW_HEIGHT), Image.LANCZOS)).astype(int)
    assert np.abs(sheet[6 : 6 + SHEET_ROW_HEIGHT, 6 : 6 + width] - expected).mean() < 1.0
    checks = sheet[6 : 6 + SHEET_ROW_HEIGHT, 12 + width : 12 + 2 * width]
    colour = sheet[6 : 6 + SHEET_ROW_HEIGHT, 18 + 2 * width : 18 + 3 * width]
    shown_through = (checks == 204).all(axis=2) | (checks == 153).all(axis=2)
    background = np.all(colour == Image.new("RGB", (1, 1), SHEET_BACKGROUND).getpixel((0, 0)), axis=2)
    # The background is cut away (checks and the colour show) and the pet is kept (the photo shows).
    assert 0.1 < shown_through.mean() < 0.9 and 0.1 < background.mean() < 0.9
    assert np.abs(checks[~shown_through] - expected[~shown_through]).mean() < 20
