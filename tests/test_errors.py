"""One error, three front ends: advice names a flag on the command line, a keyword
argument in Python, and nothing in the server's answers (its form has no such option)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from petseg.errors import ImageError, PetsegError, command_line_flag

SOURCE = Path(__file__).resolve().parents[1] / "src" / "petseg"


def test_advice_is_worded_by_each_front_end():
    error = ImageError("big.png: 9800x9800 is 96 megapixels, over the limit of 1", advice="raise {max_pixels}")
    assert str(error) == "big.png: 9800x9800 is 96 megapixels, over the limit of 1; raise max_pixels"
    assert error.worded(command_line_flag) == "big.png: 9800x9800 is 96 megapixels, over the limit of 1; raise --max-pixels"
    assert error.worded(None) == "big.png: 9800x9800 is 96 megapixels, over the limit of 1"
    both = PetsegError("x", advice="give {weights} a file, or turn {pretrained} off")
    assert both.worded(command_line_flag) == "x; give --weights a file, or turn --pretrained off"
    assert str(PetsegError("no advice")) == "no advice"
    about = PetsegError("must be at least 1, got 0", option="epochs", advice="see {patience}")
    assert about.worded(command_line_flag) == "--epochs must be at least 1, got 0; see --patience"
    assert str(about) == "epochs must be at least 1, got 0; see patience"
    assert about.worded(None) == "epochs must be at least 1, got 0"


def test_the_cli_names_the_flag_of_a_library_error(tmp_path):
    from typer.testing import CliRunner

    from petseg.cli import app
    from petseg.models import create_model, save_model

    model_file = tmp_path / "tiny.safetensors"
    save_model(create_model("unet_diy", width=4, depth=2, image_size=32), model_file)
    target = tmp_path / "model.onnx"
    target.write_bytes(b"taken")
    result = CliRunner().invoke(app, ["export", str(model_file), "--onnx", str(target)])
    assert isinstance(result.exception, PetsegError)
    assert result.exception.worded(command_line_flag) == f"{target}: already exists; --force overwrites it"


# Where the library builds a user-facing message: everything but the command line's own
# modules is called from Python (and the server from HTTP) as well as from the command line.
LIBRARY_FOLDERS = ("inference", "models", "data", "server", "train", "compare.py", "demo.py", "run_dir.py")
FLAG_IN_MESSAGE = re.compile(r"""(Error|problems\.append)\(\s*f?["']([^"']*\s)?--[a-z]""")


@pytest.mark.parametrize("folder", LIBRARY_FOLDERS)
def test_library_messages_name_no_command_line_flags(folder):
    offenders = [
        f"{path.relative_to(SOURCE)}:{number}"
        for path in ([SOURCE / folder] if folder.endswith(".py") else sorted((SOURCE / folder).rglob("*.py")))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FLAG_IN_MESSAGE.search(line)
    ]
    assert not offenders, f"messages naming a flag (use PetsegError's advice): {offenders}"


def test_a_training_setting_is_named_as_each_front_end_spells_it():
    from petseg.train.recipes import TrainConfig

    with pytest.raises(PetsegError) as caught:
        TrainConfig(model="unet_diy", data="pets", out="run", batch_size=0).validate()
    assert str(caught.value) == "batch_size must be at least 1, got 0"
    assert caught.value.worded(command_line_flag) == "--batch-size must be at least 1, got 0"


def test_echoed_input_is_clipped():
    from petseg.inference.compose import parse_color

    with pytest.raises(PetsegError) as raised:
        parse_color("a" * 1_000_000)
    assert "'" + "a" * 100 + "…'" in str(raised.value) and len(str(raised.value)) < 200


def test_a_warning_is_one_line_on_the_command_line(monkeypatch, capsys):
    """A library's warning reaches the user as "warning: ..." on one line, not as Python's
    file, line number and source line."""
    import sys
    import warnings

    import petseg.models
    from petseg.cli import main

    real_list = petseg.models.list_models

    def list_models_that_warns():
        warnings.warn("a library's advice\nover two lines", UserWarning)
        return real_list()

    monkeypatch.setattr(petseg.models, "list_models", list_models_that_warns)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() replaces it for the process
    monkeypatch.setattr(sys, "argv", ["petseg", "models", "--json"])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as exit_info:
            main()
    assert exit_info.value.code in (0, None)
    error_lines = capsys.readouterr().err.splitlines()
    assert error_lines == ["warning: a library's advice\\nover two lines"]  # the line break shown, escaped


@pytest.mark.parametrize(
    "arguments, message",
    [(["cutout", ""], "an argument is empty (after cutout)"), (["cutout", "cat.jpg", "--out", ""],
     "an argument is empty (after --out)"), (["cutout", "cat.jpg", "--out="], "--out is empty")],
)
def test_an_empty_argument_is_refused_before_it_means_the_current_folder(arguments, message, monkeypatch, tmp_path,
                                                                         capsys):
    import sys

    from petseg.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["petseg", *arguments])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert list(tmp_path.iterdir()) == []  # no output folder was made here


@pytest.mark.parametrize("command", [["cutout", "{long}.jpg"], ["data", "check", "{long}"], ["compare", "{long}", "{long}"],
                                     ["train", "--config", "{long}.json"]])
def test_a_name_too_long_for_the_system_is_one_line(command, monkeypatch, tmp_path, capsys):
    """os.stat raises ENAMETOOLONG (not "no such file") for a name over 255 bytes: it gave tracebacks."""
    import sys

    from petseg.cli import main

    long = str(tmp_path / ("a" * 300))
    monkeypatch.setattr(sys, "argv", ["petseg", *[part.format(long=long) for part in command]])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (1, 2)
    [line] = capsys.readouterr().err.splitlines()[:1]
    assert line.startswith(f"error: {long[:100]}…") and line.endswith("File name too long"), line
    assert len(line) < 200


@pytest.mark.parametrize("arguments, words", [
    (["nosuch"], "No such command 'nosuch'. (see "),
    (["cutout", "--nosuch"], "No such option: --nosuch"),
    (["cutout"], "Missing argument 'inputs'. (see "),
    (["train", "--epochs", "abc"], "Invalid value for '--epochs'"),
    (["serve", "--port", "99999"], "Invalid value for '--port'"),
])
def test_a_usage_mistake_is_one_line(arguments, words, monkeypatch, capsys):
    """Typer's own answer is a box of five lines under the usage."""
    import sys

    from petseg.cli import main

    monkeypatch.setattr(sys, "argv", ["petseg", *arguments])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and words in line and line.endswith(" --help)"), line


def test_petseg_alone_shows_the_help_once(monkeypatch, capsys):
    import sys

    from petseg.cli import main

    monkeypatch.setattr(sys, "argv", ["petseg"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    shown = capsys.readouterr()
    assert shown.out.count("Usage: ") == 1 and "cutout" in shown.out and shown.err == ""


def test_resume_names_a_run_config_that_is_no_regular_file(monkeypatch, tmp_path, capsys):
    """A FIFO where the run's config.json belongs was reported as missing."""
    import os
    import sys

    from petseg.cli import main

    os.mkfifo(tmp_path / "config.json")
    monkeypatch.setattr(sys, "argv", ["petseg", "train", "--out", str(tmp_path), "--resume"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'config.json'}: cannot read the config file "
                                       "(is a FIFO (named pipe), not a regular file)\n")


def test_quoted_shows_any_value_in_a_bounded_line():
    from petseg.errors import quoted

    assert quoted("cat") == "'cat'" and quoted(0.5) == "0.5" and quoted(True) == "True"
    assert quoted("x" * 10**6) == "'" + "x" * 100 + "…'"
    nested: list = ["lol"] * 9
    for _ in range(8):  # what a YAML alias bomb loads: 43 million strings, shared
        nested = [nested] * 9
    assert quoted(nested).startswith("[[[[[[[") and len(quoted(nested)) <= 101
    assert quoted(10**5000) == "<a int>"  # repr() refuses an int of over 4300 digits
    assert quoted("x" * 1000, limit=10) == "'" + "x" * 10 + "…'" and len(quoted(["x" * 1000] * 1000, limit=10)) == 11


@pytest.mark.parametrize("module, function, argument", [
    ("petseg.inference.compose", "check_mode", "x" * 10**6),
    ("petseg.inference.compose", "check_alpha", "x" * 10**6),
    ("petseg.inference.compose", "check_mode", ["x"] * 10**6),  # from Python, anything
    ("petseg.cli.training", "_parse_scale", "x" * 10**6),
    ("petseg.cli.training", "_parse_widths", "x" * 10**6),
    ("petseg.inference.segmenter", "check_flip_tta", [["x" * 1000] * 1000] * 1000),  # repr() would be 1 GB
])  # fmt: skip
def test_options_are_echoed_clipped(module, function, argument):
    import importlib

    with pytest.raises(PetsegError) as raised:
        getattr(importlib.import_module(module), function)(argument)
    assert len(str(raised.value)) < 250


def test_an_unknown_model_name_and_a_resume_conflict_are_echoed_clipped():
    from petseg.models.registry import model_spec
    from petseg.run_dir import ResumeConflict

    with pytest.raises(PetsegError) as raised:
        model_spec("x" * 10**6)
    assert str(raised.value).startswith(f"unknown model '{'x' * 100}…'; valid names: ")
    conflict = str(ResumeConflict("run", "breeds", ["x" * 1000] * 1000, "y" * 10**6))
    assert len(conflict) < 400 and conflict.startswith("run: the run was trained with breeds=[")


def test_remove_background_echoes_a_mode_clipped():
    import numpy as np

    from petseg.inference import remove_background

    with pytest.raises(PetsegError) as raised:
        remove_background(np.zeros((4, 4, 3), np.uint8), mode="x" * 10**6)
    assert str(raised.value) == f"cutout mode '{'x' * 100}…' is not one of rgba, mask, labels, color"


def test_a_resume_conflict_echoes_the_values_clipped(monkeypatch, capsys):
    import sys

    import petseg.train
    from petseg.cli import main
    from petseg.run_dir import ResumeConflict

    def fit(config, **options):
        raise ResumeConflict("run", "breeds", ["x" * 1000] * 1000, ["y"])

    monkeypatch.setattr(petseg.train, "build_config", lambda **settings: None)
    monkeypatch.setattr(petseg.train, "fit", fit)
    monkeypatch.setattr(sys, "argv", ["petseg", "train", "--out", "run", "--resume"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --breeds cannot change on resume (the run has ['xxxxx") and len(line) < 400, line


def test_no_problem_line_is_longer_than_about_a_thousand_characters(monkeypatch, tmp_path, capsys):
    """What messages echo is clipped where they are made, but not paths: 3000 characters of one came back whole."""
    import sys

    from petseg.cli import main
    from petseg.cli.app import LONGEST_LINE, problem_line

    line = problem_line("error", "a" * 600 + "b" * 10**6 + "c\x1b" * 300)
    assert line.startswith("error: " + "a" * 500 + " …[1000200 characters left out]… ") and line.endswith("c\\x1b" * 250)
    assert problem_line("warning", "x" * LONGEST_LINE) == "warning: " + "x" * LONGEST_LINE  # as it was
    long_path = str(tmp_path / ("folder/" * 500) / "cat.jpg")
    monkeypatch.setattr(sys, "argv", ["petseg", "cutout", long_path, "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        main()
    [error, _] = capsys.readouterr().err.splitlines()  # the error and "wrote 0 file(s) ..."
    assert error.startswith(f"error: {tmp_path}/folder/") and error.endswith("cat.jpg: no such file or folder")
    assert len(error) < 1100 and "characters left out" in error


def test_a_json_number_of_thousands_of_digits_is_named_without_pythons_advice(tmp_path):
    from petseg.text_files import parse_json

    with pytest.raises(PetsegError) as raised:
        parse_json('{"image_size": ' + "9" * 5000 + "}", tmp_path / "config.json")
    assert str(raised.value) == f"{tmp_path / 'config.json'}: not valid JSON (a number of over 4300 digits)"

