"""`petseg compare` over run directories built by hand (a model file + a history)."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from petseg.compare import compare_runs
from petseg.errors import PetsegError, command_line_flag


def make_run(run_dir: Path, width: int, history: list[dict], train_seconds: float) -> Path:
    from petseg.models import create_model, save_model
    from petseg.train.history import write_history

    run_dir.mkdir(parents=True)
    save_model(create_model("unet_diy", width=width, image_size=64), run_dir / "best.safetensors")
    write_history(run_dir, history)
    (run_dir / "summary.json").write_text(json.dumps({"train_seconds": train_seconds}))
    return run_dir


def rows(*mious):
    return [{"epoch": i + 1, "seconds": 10.0, "val_pixel_accuracy": 0.5 + m / 2, "val_miou": m, "val_fg_iou": m + 0.1}
            for i, m in enumerate(mious)]


@pytest.fixture
def two_runs(tmp_path):
    return [make_run(tmp_path / "small", 4, rows(0.3, 0.5, 0.4), 90.0),
            make_run(tmp_path / "wide", 8, rows(0.6), 30.0)]


def test_summaries_take_the_best_epoch_and_measure_the_model(two_runs):
    small, wide = compare_runs(two_runs, image_size=64, repeats=2)
    assert (small.name, small.epochs, small.miou, small.fg_iou) == ("small", 3, 0.5, pytest.approx(0.6))
    assert small.pixel_accuracy == pytest.approx(0.75) and small.train_minutes == pytest.approx(1.5)
    assert (wide.epochs, wide.miou) == (1, 0.6)
    # A twice-as-wide U-Net has about 4x the parameters and FLOPs.
    assert 3 < wide.parameters_m / small.parameters_m < 5
    assert 3 < wide.gflops / small.gflops < 5
    assert small.latency_ms > 0


def test_flop_count_of_a_single_convolution():
    import torch

    from petseg.models.summary import measure_gflops

    layer = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    gflops = measure_gflops(layer, 10)
    assert gflops == pytest.approx(2 * 8 * 3 * 9 * 10 * 10 / 1e9, rel=1e-9)  # 2 FLOPs per multiply-add


def test_outputs_written_and_not_overwritten_without_force(two_runs, tmp_path):
    from PIL import Image

    out = tmp_path / "comparison"
    compare_runs(two_runs, out, image_size=64, repeats=1)
    table = (out / "comparison.md").read_text().splitlines()
    assert table[0].startswith("| run | model | init | params (M) | GFLOPs | CPU ms |")
    assert len(table) == 4 and "| small |" in table[2] and "0.5000" in table[2]
    with open(out / "comparison.csv") as handle:
        records = list(csv.DictReader(handle))
    assert [record["name"] for record in records] == ["small", "wide"]
    assert float(records[1]["miou"]) == pytest.approx(0.6)
    with Image.open(out / "comparison.png") as chart:
        assert chart.format == "PNG"
    with pytest.raises(PetsegError, match="already exists; force overwrites it"):
        compare_runs(two_runs, out, image_size=64, repeats=1)
    compare_runs(two_runs, out, image_size=64, repeats=1, force=True)


def test_a_folder_that_is_not_a_run_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PetsegError, match="history.json"):
        compare_runs([tmp_path / "empty"])


@pytest.mark.parametrize("history, words", [
    ("[1, 2]", "row 1 is not a mapping of names to numbers"),
    ('[{"val_miou": "high"}]', "row 1 is not a mapping of names to numbers"),
    ('[{"val_miou": 0.5}]', "no finished epoch"),  # a row without the figures the table shows
])
def test_a_damaged_history_is_one_line(two_runs, history, words):
    (two_runs[0] / "history.json").write_text(history)
    with pytest.raises(PetsegError, match=words):
        compare_runs(two_runs[:1], image_size=64, repeats=1)


def test_a_damaged_summary_falls_back_to_the_history_time(two_runs):
    (two_runs[0] / "summary.json").write_text('{"train_seconds": "long"}')
    [small] = compare_runs(two_runs[:1], image_size=64, repeats=1)
    assert small.train_minutes == pytest.approx(0.5)  # 3 epochs of 10 s in history.json


def test_cli_prints_the_table(two_runs, tmp_path, monkeypatch, capsys):
    from petseg.cli import main

    monkeypatch.setattr(sys, "argv", ["petseg", "compare", *map(str, two_runs), "--image-size", "64",
                                      "--repeats", "1", "--out", str(tmp_path / "cmp")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "small" in printed and "wide" in printed and "mIoU" in printed
    assert (tmp_path / "cmp" / "comparison.csv").is_file()


@pytest.mark.parametrize("options, flag", [
    ({"repeats": 0}, "--repeats"), ({"image_size": 8}, "--image-size"), ({"image_size": 100_000}, "--image-size"),
])
def test_bad_measurement_options_are_user_errors(two_runs, options, flag):
    with pytest.raises(PetsegError) as raised:
        compare_runs(two_runs, **options)
    assert str(raised.value).startswith(next(iter(options)) + " must be ")
    assert raised.value.worded(command_line_flag).startswith(flag + " must be ")


def test_model_size_comes_from_the_shared_summary_functions(two_runs, monkeypatch):
    import petseg.models.summary as summary

    monkeypatch.setattr(summary, "measure_gflops", lambda model, image_size: 12.5)
    monkeypatch.setattr(summary, "count_parameters", lambda model: (3_000_000, 0))
    small, _ = compare_runs(two_runs, image_size=64, repeats=1)
    assert (small.gflops, small.parameters_m) == (12.5, 3.0)


def test_two_copies_of_one_run_measure_alike_and_show_their_init(tmp_path):
    """Warm-up and alternating rounds: the first model listed no longer absorbs the warm-up.

    A ratio of two medians on the same machine, not a time limit: 15% is the issue's bar.
    """
    import shutil

    first = make_run(tmp_path / "first", 8, rows(0.5), 30.0)
    (first / "config.json").write_text(json.dumps({"pretrained": False, "weights": None}))
    second = shutil.copytree(first, tmp_path / "second")
    (second / "config.json").write_text(json.dumps({"pretrained": True, "weights": None}))
    one, two = compare_runs([first, second], image_size=64, repeats=40)  # on one thread, the default
    assert abs(one.latency_ms / two.latency_ms - 1) < 0.15, (one.latency_ms, two.latency_ms)
    assert (one.init, two.init) == ("random", "ImageNet")
    assert compare_runs([tmp_path / "first"], image_size=64, repeats=1)[0].init == "random"


HUGE = "9" * 400  # a JSON integer that float() cannot hold: OverflowError, not a number


@pytest.mark.parametrize("summary", ['{"train_seconds": %s}' % HUGE, '{"train_seconds": NaN}',
                                     '{"train_seconds": Infinity}'], ids=["400 digits", "NaN", "Infinity"])
def test_a_summary_time_beyond_floats_falls_back_to_the_history_time(two_runs, summary):
    (two_runs[0] / "summary.json").write_text(summary)
    [small] = compare_runs(two_runs[:1], image_size=64, repeats=1)
    assert small.train_minutes == pytest.approx(0.5, abs=1e-9)  # 3 epochs of 10 s in history.json


def test_history_figures_beyond_floats_leave_their_row_out(two_runs, tmp_path):
    history = (json.dumps(rows(0.3, 0.5, 0.4)).replace('"val_miou": 0.5', '"val_miou": ' + HUGE)
               .replace('"seconds": 10.0', '"seconds": ' + HUGE, 1))
    (two_runs[0] / "history.json").write_text(history)
    (two_runs[0] / "summary.json").unlink()  # the time comes from the history, damaged row and all
    [small] = compare_runs(two_runs[:1], tmp_path / "cmp", image_size=64, repeats=1)
    assert (small.epochs, small.miou) == (3, pytest.approx(0.4, abs=1e-12))  # epoch 2 could not be ranked
    assert small.train_minutes == pytest.approx(20 / 60, abs=1e-9)  # epochs 2 and 3: 10 s each
    assert "| 0.4000 |" in (tmp_path / "cmp" / "comparison.md").read_text()
    (two_runs[0] / "history.json").write_text(json.dumps(rows(0.5)).replace('"val_miou": 0.5', '"val_miou": ' + HUGE))
    with pytest.raises(PetsegError, match="no finished epoch"):  # no row left to rank
        compare_runs(two_runs[:1], image_size=64, repeats=1)


@pytest.mark.timeout(60)  # reading a FIFO would wait for a writer forever
@pytest.mark.parametrize("damage", ["nested 200,000 deep", "a FIFO", "over 16 MB"])
def test_unreadable_run_files_cost_their_column_not_the_comparison(two_runs, damage):
    run = two_runs[0]
    for name in ("config.json", "summary.json"):
        path = run / name
        path.unlink(missing_ok=True)
        if damage == "a FIFO":
            os.mkfifo(path)
        elif damage == "over 16 MB":  # valid JSON, but no run writes one this large: not read
            path.write_text('{"pretrained": true, "train_seconds": 600}' + " " * 16 * 2**20)
        else:
            path.write_text("[" * 200_000)
    [small] = compare_runs([run], image_size=64, repeats=1)
    assert (small.init, small.train_minutes) == ("unknown", pytest.approx(0.5))  # 3 epochs of 10 s in history.json


def _measuring_fails(monkeypatch):
    import petseg.compare as compare

    def measured(*args, **kwargs):
        raise AssertionError("the --out folder must be checked before the runs are measured")

    monkeypatch.setattr(compare, "summarize_run", measured)


def test_an_out_folder_that_cannot_be_written_is_refused_before_the_runs_are_measured(two_runs, tmp_path,
                                                                                         monkeypatch):
    _measuring_fails(monkeypatch)
    a_file = tmp_path / "photo.jpg"
    a_file.write_text("not a folder")
    with pytest.raises(PetsegError) as raised:
        compare_runs(two_runs, a_file / "sub")
    assert str(raised.value) == f"{a_file}: exists and is not a folder; the outputs need a folder"
    if Path("/proc/self").is_dir():  # a place no file can be created in, even by root
        with pytest.raises(PetsegError) as raised:
            compare_runs(two_runs, "/proc/petseg-comparison")
        assert str(raised.value) == "/proc/petseg-comparison: cannot write there (No such file or directory)"


def test_a_failed_write_is_one_line_naming_the_folder(two_runs, tmp_path, monkeypatch):
    import petseg.compare as compare

    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compare, "write_text_atomic", disk_full)
    with pytest.raises(PetsegError) as raised:
        compare_runs(two_runs, tmp_path / "cmp", image_size=64, repeats=1)
    assert str(raised.value) == f"{tmp_path / 'cmp'}: cannot write the comparison (No space left on device)"


def test_a_comparison_removes_the_temporaries_a_killed_one_left(two_runs, tmp_path):
    from tests.test_atomic import dead_pid

    out = tmp_path / "cmp"
    out.mkdir()
    stale = out / f".comparison.png.petseg-tmp-{dead_pid()}-deadbeef"
    stale.write_bytes(b"half a chart")
    compare_runs(two_runs, out, image_size=64, repeats=1)
    assert sorted(path.name for path in out.iterdir()) == ["comparison.csv", "comparison.md", "comparison.png"]


@pytest.fixture
def good_and_bad_runs(tmp_path):
    """A good run, one whose history holds a word for a number, one whose model file is garbage."""
    good = make_run(tmp_path / "good", 4, rows(0.5), 30.0)
    bad_history = make_run(tmp_path / "bad_history", 4, rows(0.5), 30.0)
    (bad_history / "history.json").write_text('[{"val_miou": "x"}]')
    bad_model = make_run(tmp_path / "bad_model", 4, rows(0.5), 30.0)
    (bad_model / "best.safetensors").write_bytes(b"not a model file" * 8)
    return good, bad_history, bad_model


def test_bad_runs_are_listed_and_the_good_ones_still_compared(good_and_bad_runs, tmp_path):
    good, bad_history, bad_model = good_and_bad_runs
    out = tmp_path / "cmp"
    comparison = compare_runs([bad_history, good, bad_model], out, image_size=64, repeats=1)
    [summary] = comparison  # still a list of the summaries
    assert (summary.name, summary.miou) == ("good", 0.5) and summary.latency_ms > 0
    assert [run for run, _ in comparison.failures] == [str(bad_history), str(bad_model)]
    history_problem, model_problem = (message for _, message in comparison.failures)
    assert history_problem == f"{bad_history / 'history.json'}: row 1 is not a mapping of names to numbers"
    assert str(bad_model / "best.safetensors") in model_problem and "\n" not in model_problem
    with open(out / "comparison.csv") as handle:
        assert [record["name"] for record in csv.DictReader(handle)] == ["good"]
    assert (out / "comparison.md").read_text().count("| good |") == 1 and (out / "comparison.png").is_file()
    assert compare_runs([good], image_size=64, repeats=1).failures == []


def test_when_no_run_can_be_compared_the_error_holds_each(good_and_bad_runs, tmp_path):
    from petseg.compare import NothingToCompare

    _, bad_history, bad_model = good_and_bad_runs
    with pytest.raises(NothingToCompare) as raised:
        compare_runs([bad_history, bad_model], tmp_path / "cmp", image_size=64, repeats=1)
    assert str(raised.value) == f"{bad_history / 'history.json'}: row 1 is not a mapping of names to numbers"
    [(first, history_problem), (second, model_problem)] = raised.value.failures
    assert (first, second, history_problem) == (str(bad_history), str(bad_model), str(raised.value))
    assert str(bad_model / "best.safetensors") in model_problem
    assert not (tmp_path / "cmp" / "comparison.csv").exists()


def _run_cli(arguments, capsys, monkeypatch) -> tuple[int, str, str]:
    from petseg.cli import main

    monkeypatch.setattr(sys, "argv", ["petseg", "compare", *map(str, arguments), "--image-size", "64", "--repeats", "1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    printed = capsys.readouterr()
    return exit_info.value.code, printed.out, printed.err


def test_cli_compares_the_good_run_names_each_bad_one_and_exits_1(good_and_bad_runs, tmp_path, capsys, monkeypatch):
    good, bad_history, bad_model = good_and_bad_runs
    out = tmp_path / "cmp"
    code, printed, errors = _run_cli([good, bad_history, bad_model, "--out", out], capsys, monkeypatch)
    assert code == 1
    assert "good" in printed and "mIoU" in printed and "bad_" not in printed
    assert f"wrote {out / 'comparison.md'}" in printed
    lines = errors.splitlines()
    assert lines[0] == f"error: {bad_history / 'history.json'}: row 1 is not a mapping of names to numbers"
    assert lines[1].startswith("error: ") and str(bad_model / "best.safetensors") in lines[1]
    assert lines[2:] == ["compared 1 run(s), 2 failed"]
    with open(out / "comparison.csv") as handle:
        assert [record["name"] for record in csv.DictReader(handle)] == ["good"]


def test_cli_fails_with_a_line_per_run_when_no_run_can_be_compared(good_and_bad_runs, tmp_path, capsys, monkeypatch):
    _, bad_history, bad_model = good_and_bad_runs
    code, printed, errors = _run_cli([bad_history, bad_model, "--out", tmp_path / "cmp"], capsys, monkeypatch)
    assert (code, printed) == (2, "")
    history_line, model_line = errors.splitlines()
    assert history_line == f"error: {bad_history / 'history.json'}: row 1 is not a mapping of names to numbers"
    assert model_line.startswith(f"error: model file {bad_model / 'best.safetensors'} ")
    code, printed, errors = _run_cli([bad_model], capsys, monkeypatch)  # one run: its own error, as before
    assert (code, printed) == (2, "")
    [line] = errors.splitlines()
    assert line.startswith(f"error: model file {bad_model / 'best.safetensors'} ")


def test_a_run_file_the_system_refuses_is_that_runs_failure(two_runs, monkeypatch):
    import petseg.models

    small, wide = two_runs
    load_model = petseg.models.load_model

    def refused(path, *args, **kwargs):
        if Path(path).parent == small:
            raise PermissionError(13, "Permission denied", str(path))
        return load_model(path, *args, **kwargs)

    monkeypatch.setattr(petseg.models, "load_model", refused)
    comparison = compare_runs(two_runs, image_size=64, repeats=1)
    assert [summary.name for summary in comparison] == ["wide"]
    assert comparison.failures == [(str(small), f"{small / 'best.safetensors'}: Permission denied")]
