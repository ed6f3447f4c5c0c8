"""The training code's shape, as issue 14 asks it to stay: no import cycles, arrows pointing
down, small files and functions, and the run folder's file names spelled in one module."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "petseg"
MAX_FILE_LINES = 250
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """petseg modules that `name` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from petseg.train import reporting` imports the submodule petseg.train.reporting.
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                         for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


def find_cycle(names: set[str]) -> list[str] | None:
    graph = {name: imports_of(name) & names for name in names}
    visiting, done = [], set()

    def visit(name):
        if name in visiting:
            return visiting[visiting.index(name):] + [name]
        if name in done:
            return None
        visiting.append(name)
        for target in sorted(graph[name]):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in sorted(names):
        cycle = visit(name)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "imports_of", lambda name: {"a": {"b"}, "b": {"a"}}[name])
    assert find_cycle({"a", "b"}) == ["a", "b", "a"]


def test_no_import_cycle_in_train():
    assert find_cycle({name for name in MODULES if name.startswith("petseg.train")}) is None


@pytest.mark.parametrize("layer", ["petseg.run_dir", "petseg.models", "petseg.inference"])
def test_lower_layers_never_import_train(layer):
    for name in MODULES:
        if name == layer or name.startswith(layer + "."):
            assert not {m for m in imports_of(name) if m.startswith("petseg.train")}, name


def test_train_files_and_functions_are_small():
    for name, path in MODULES.items():
        if not (name.startswith("petseg.train") or name in ("petseg.run_dir", "petseg.cli.training")):
            continue
        assert len(path.read_text().splitlines()) <= MAX_FILE_LINES, name
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # From the body's first line: a CLI command's signature is its table of flags.
                assert node.end_lineno - node.body[0].lineno + 1 <= MAX_FUNCTION_LINES, f"{name}.{node.name}"


RUN_FILE_NAMES = re.compile(r"""["'/ (](best\.safetensors|last\.pt|config\.json|summary\.json|history\.(csv|json)|"""
                            r"""curves\.png)\b""")


def test_run_folder_file_names_are_spelled_in_one_module():
    spelled = []
    for folder in ("src", "scripts", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == PACKAGE / "run_dir.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if RUN_FILE_NAMES.search(line):
                    spelled.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not spelled, "\n".join(spelled)
