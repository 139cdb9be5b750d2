"""The shape of the CLI package: one thin module per subcommand."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import iclkit.cli

CLI_DIR = Path(iclkit.cli.__file__).parent
#: Modules of the package that are not subcommands.
NOT_SUBCOMMANDS = {"__init__", "__main__", "main", "options"}
#: A subcommand module turns arguments into a config, calls the library and formats the result.
MAX_LINES = 200
SUBCOMMANDS = sorted(p.stem for p in CLI_DIR.glob("*.py") if p.stem not in NOT_SUBCOMMANDS)


def _imports_inside_functions(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines += [
                n.lineno for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)
            ]
    return lines


def test_there_are_subcommand_modules() -> None:
    assert {"sample", "run_algo", "demo", "construct", "reproduce", "plot"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_module_is_thin(name: str) -> None:
    module = importlib.import_module(f"iclkit.cli.{name}")
    assert callable(getattr(module, "add", None)) and callable(getattr(module, "run", None))
    source = (CLI_DIR / f"{name}.py").read_text()
    assert len(source.splitlines()) < MAX_LINES
    assert _imports_inside_functions(ast.parse(source)) == [], "imports inside functions"


@pytest.mark.parametrize("name", sorted(NOT_SUBCOMMANDS - {"__main__"}))
def test_shared_modules_import_at_the_top(name: str) -> None:
    source = (CLI_DIR / f"{name}.py").read_text()
    assert _imports_inside_functions(ast.parse(source)) == []
