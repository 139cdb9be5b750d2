"""The checks import their targets statically, so that mypy and grep can follow them."""

from __future__ import annotations

import ast
from pathlib import Path

import iclkit.checks

CHECKS_DIR = Path(iclkit.checks.__file__).parent


def _string_imports(tree: ast.AST) -> list[str]:
    """Uses of importlib, __import__ or a require(...) call anywhere in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "importlib"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("importlib"):
            found.append(node.module or "")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in ("__import__", "require", "import_module"):
                found.append(f"{name}() at line {node.lineno}")
    return found


def _function_imports(tree: ast.AST) -> list[str]:
    """Import statements inside functions (every import belongs at module top)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.append(f"line {inner.lineno} in {node.name}()")
    return found


def test_no_string_based_imports_in_checks() -> None:
    files = sorted(CHECKS_DIR.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        assert _string_imports(tree) == [], path.name
        assert _function_imports(tree) == [], path.name


def test_detector_finds_string_imports() -> None:
    bad = ast.parse(
        "import importlib\n"
        "def f():\n"
        "    import torch\n"
        "    require('iclkit.x', 'y')\n"
        "    return __import__('os')\n"
    )
    assert len(_string_imports(bad)) == 3
    assert _function_imports(bad) == ["line 3 in f()"]
