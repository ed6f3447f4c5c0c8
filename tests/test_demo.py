"""`petseg demo`: its checks on --out (the full run trains a model and is exercised by hand)."""

from __future__ import annotations

import pytest

from petseg.errors import PetsegError


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
    with pytest.raises(PetsegError, match="--force"):
        run_demo(tmp_path, log=lambda line: None)
