"""Where outputs go: `prepare_output_folder`, and `petseg summary --diagram` into a place it cannot write."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from petseg.atomic import prepare_output_folder
from petseg.errors import PetsegError
from tests.test_atomic import dead_pid

ON_LINUX_PROC = Path("/proc/self").is_dir()  # /proc takes no new files, even from root


def test_prepare_output_folder_refuses_a_file_in_the_way_and_creates_nothing(tmp_path):
    a_file = tmp_path / "photo.jpg"
    a_file.write_text("keep me")
    for folder in (a_file, a_file / "sub", a_file / "sub" / "deeper"):
        with pytest.raises(PetsegError) as raised:
            prepare_output_folder(folder)
        assert str(raised.value) == f"{a_file}: exists and is not a folder; the outputs need a folder"
    prepare_output_folder(tmp_path / "new" / "folder")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photo.jpg"]  # nothing made, no probe left


@pytest.mark.skipif(not ON_LINUX_PROC, reason="needs Linux's /proc")
def test_prepare_output_folder_refuses_a_place_that_takes_no_files():
    with pytest.raises(PetsegError) as raised:
        prepare_output_folder("/proc/petseg-outputs")
    assert str(raised.value) == "/proc/petseg-outputs: cannot write there (No such file or directory)"


def test_prepare_output_folder_removes_what_dead_runs_left(tmp_path):
    stale = tmp_path / f".x.onnx.petseg-tmp-{dead_pid()}-deadbeef"
    stale.write_bytes(b"half a model")
    (tmp_path / "kept.onnx").write_bytes(b"a model")
    prepare_output_folder(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept.onnx"]


def _summary(monkeypatch, capsys, *args) -> tuple[int, str]:
    """`petseg summary unet_diy ARGS` through the real entry point: (exit status, stderr)."""
    from petseg.cli import main

    monkeypatch.setattr(sys, "argv", ["petseg", "summary", "unet_diy", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_a_diagram_that_cannot_be_written_is_one_line_before_the_model_is_built(tmp_path, monkeypatch, capsys):
    import petseg.models as models

    def create_model(*args, **kwargs):
        raise AssertionError("the diagram's place must be checked before the model is built")

    monkeypatch.setattr(models, "create_model", create_model)
    a_file = tmp_path / "photo.jpg"
    a_file.write_text("keep me")
    assert _summary(monkeypatch, capsys, "--diagram", a_file / "unet.png") == (
        2, f"error: {a_file}: exists and is not a folder; the outputs need a folder\n")
    assert _summary(monkeypatch, capsys, "--diagram", tmp_path) == (
        2, f"error: {tmp_path}: is a folder; name the .png or .svg file to write\n")
    if ON_LINUX_PROC:
        assert _summary(monkeypatch, capsys, "--diagram", "/proc/unet.png") == (
            2, "error: /proc: cannot write there (No such file or directory)\n")


def test_a_failed_diagram_write_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    import petseg.models.diagram as diagram

    def disk_full(model, path, image_size):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(diagram, "draw_unet", disk_full)
    target = tmp_path / "unet.png"
    assert _summary(monkeypatch, capsys, "--diagram", target) == (
        2, f"error: {target}: cannot write the diagram (No space left on device)\n")


def test_a_diagram_run_removes_the_temporaries_a_killed_one_left(tmp_path, monkeypatch, capsys):
    stale = tmp_path / f".unet.png.petseg-tmp-{dead_pid()}-deadbeef"
    stale.write_bytes(b"half a picture")
    status, errors = _summary(monkeypatch, capsys, "--diagram", tmp_path / "unet.png", "--image-size", 32)
    assert (status, errors) == (0, "")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["unet.png"]


def test_a_cutout_record_of_more_values_than_outputs_have_is_refused_unbuilt(tmp_path, monkeypatch):
    """64 MB of "{}," was 22 million dicts, 1.7 GB, before the record was found to be no mapping."""
    import tracemalloc

    import petseg.inference.provenance as provenance

    record = tmp_path / provenance.RECORD_FILE
    record.write_text("[" + "{}," * 600_000 + "{}]")  # more objects than 190,000 outputs' entries
    monkeypatch.setattr(provenance, "MAX_RECORD_BYTES", 4 * 2**20)  # the read's buffer: tracemalloc counts it whole
    tracemalloc.start()
    try:
        with pytest.warns(UserWarning, match="the cutout record is too large .*; ignoring it"):
            assert provenance.read_record(tmp_path) == {}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20, peak  # the buffer and the text; the dicts would be 40 MB more


def test_the_cutout_record_limits_count_objects_and_values(tmp_path, monkeypatch):
    import petseg.inference.provenance as provenance

    monkeypatch.setattr(provenance, "MAX_RECORD_OUTPUTS", 100)  # at most 300 objects and 3200 values
    record = tmp_path / provenance.RECORD_FILE

    def outputs(count: int) -> str:
        return "{" + ",".join(f'"{number}.png": {{}}' for number in range(count)) + "}"

    def numbers(count: int) -> str:
        return '{"cat.png": {"n": [' + ",".join(["0"] * count) + "]}}"

    for fits, over in [(outputs(299), outputs(300)), (numbers(3196), numbers(3197))]:
        record.write_text(fits)
        assert provenance.read_record(tmp_path) != {}
        record.write_text(over)
        with pytest.warns(UserWarning, match=r"record is too large \(more JSON values than the settings of 100 outputs\); "
                                             "writing a new one"):
            assert provenance.read_record(tmp_path, "writing a new one") == {}
