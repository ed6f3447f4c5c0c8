"""Atomic writes: a failure mid-write leaves the old file (or none) and no temporaries."""

import os

import pytest

from petseg.atomic import atomic_path, write_atomic, write_text_atomic


def test_failed_write_keeps_the_old_file_and_no_temporaries(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_a_failed_write_leaves_no_file(tmp_path):
    def broken(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(tmp_path / "out.png", broken)
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_umask_permissions(tmp_path):
    """Also when the writer (here safetensors) would create a private file itself."""
    import torch
    from safetensors.torch import save_file

    previous = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "sub" / "report.md", "hello")
        with atomic_path(tmp_path / "weights.safetensors") as temporary:
            save_file({"weight": torch.zeros(2)}, str(temporary))
    finally:
        os.umask(previous)
    assert (tmp_path / "sub" / "report.md").read_text() == "hello"
    for path in (tmp_path / "sub" / "report.md", tmp_path / "weights.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o644, path
