"""Atomic writes: a failure mid-write leaves the old file (or none) and no temporaries."""

import os
import subprocess
import sys

import pytest

from petseg.atomic import atomic_path, remove_stale_temporaries, write_atomic, write_bytes_atomic, write_text_atomic


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


# --- temporaries a killed process leaves ----------------------------------------------


def dead_pid() -> int:
    """The id of a process that has exited (ids are not reused this quickly)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_temporaries_are_named_so_users_recognise_them(tmp_path):
    with atomic_path(tmp_path / "photo.png") as temporary:
        assert temporary.parent == tmp_path
        assert temporary.name.startswith(".photo.png.petseg-tmp-") and str(os.getpid()) in temporary.name


def test_a_killed_writer_leaves_a_temporary_the_next_run_removes(tmp_path):
    writer = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from petseg.atomic import atomic_path\n"
            f"with atomic_path({str(tmp_path / 'cutout.png')!r}) as temporary:\n"
            "    temporary.write_bytes(b'x' * 100_000); print('written', flush=True); time.sleep(60)"
        )], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout.readline().strip() == "written"
    [left] = tmp_path.iterdir()
    assert remove_stale_temporaries(tmp_path) == [], "the writer is alive: its temporary stays"
    writer.kill()  # SIGKILL: no finally block runs
    writer.wait()
    writer.stdout.close()
    assert left.exists() and not (tmp_path / "cutout.png").exists()
    (tmp_path / ".notes.txt").write_text("a user's hidden file")
    (tmp_path / ".photo.png.petseg-tmp-notapid-0123abcd").write_text("not ours by its name")
    assert remove_stale_temporaries(tmp_path) == [left]
    assert sorted(path.name for path in tmp_path.iterdir()) == [".notes.txt", ".photo.png.petseg-tmp-notapid-0123abcd"]


def test_stale_temporary_folders_are_removed_and_live_ones_kept(tmp_path):
    stale = tmp_path / f".images.tar.gz.petseg-tmp-{dead_pid()}-0123abcd"
    (stale / "images").mkdir(parents=True)
    (stale / "images" / "a.jpg").write_bytes(b"half")
    mine = tmp_path / f".model.safetensors.petseg-tmp-{os.getpid()}-0123abcd"
    mine.write_bytes(b"being written by this process")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and mine.exists()
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_a_name_near_the_file_system_limit_is_written(tmp_path):
    """The temporary name adds a tag; for a long name it shortens the name, not the file's."""
    for name in ("x" * 251 + ".png", "é" * 125 + ".png"):  # 255 bytes each, the most a name can hold
        target = tmp_path / name
        write_bytes_atomic(target, b"data")
        assert target.read_bytes() == b"data"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["x" * 251 + ".png", "é" * 125 + ".png"])
