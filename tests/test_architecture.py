"""The package's shape, read from its source: the import arrows of the README, module size,
and that importing iclkit leaves matplotlib's backend alone.

Arrows (README, docs/architecture.md)::

    cli -> checks -> (experiments, constructions, dynamics) -> theory

``iclkit.io`` (file output) and ``iclkit.version`` are leaves every layer above ``theory`` may
use. Each rule below is
checked on the static imports of every module, parsed with :mod:`ast`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "iclkit"

# What each part of the package may import from iclkit (besides itself).
ALLOWED: dict[str, set[str]] = {
    "theory": set(),
    "io": set(),
    "version": set(),
    "constructions": {"theory", "io", "version"},
    "dynamics": {"theory", "io", "version"},
    "experiments": {"theory", "io", "version", "constructions", "dynamics"},
    "checks": {"theory", "io", "version", "constructions", "dynamics", "experiments"},
    "cli": {"theory", "io", "version", "constructions", "dynamics", "experiments", "checks"},
    "__init__": {"theory", "io", "version", "constructions", "dynamics", "experiments", "checks"},
}

MAX_MODULE_LINES = 500


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _iclkit_imports(path: Path) -> list[tuple[str, int]]:
    """Absolute names of the iclkit modules imported by ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "iclkit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "iclkit":
                out.append((name, node.lineno))
    return out


def _target_part(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_arrows(path: Path) -> None:
    part = _part(path)
    bad = [
        f"line {line}: {name}"
        for name, line in _iclkit_imports(path)
        if _target_part(name) != part and _target_part(name) not in ALLOWED[part]
    ]
    assert not bad, f"{part} may import only {sorted(ALLOWED[part])}; found {bad}"


def test_nothing_imports_the_cli() -> None:
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in _modules()
        if _part(p) != "cli" and any(_target_part(n) == "cli" for n, _ in _iclkit_imports(p))
    ]
    assert not offenders


def test_the_rule_table_catches_a_wrong_arrow(tmp_path: Path) -> None:
    """The parser sees relative imports: theory reaching up into constructions is caught."""
    fake = PACKAGE / "theory" / "_probe_for_test.py"
    fake.write_text("from ..constructions import algorithms\n")
    try:
        names = [_target_part(n) for n, _ in _iclkit_imports(fake)]
    finally:
        fake.unlink()
    assert names == ["constructions"]
    assert "constructions" not in ALLOWED["theory"]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines (split it by topic)"


def test_import_leaves_the_matplotlib_backend_alone() -> None:
    code = (
        "import matplotlib; matplotlib.use('svg');"
        "import iclkit, iclkit.dynamics, iclkit.constructions, iclkit.checks, iclkit.experiments;"
        "import iclkit.dynamics.lsa.plots, iclkit.dynamics.softmax.plots;"
        "import iclkit.experiments.figures, iclkit.checks.plots;"
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_top_level_api() -> None:
    import iclkit

    for name in iclkit.__all__:
        assert getattr(iclkit, name) is not None, name


def test_tests_mirror_the_package_tree() -> None:
    """Every test module lives in the folder of the part of iclkit it tests."""
    tests = Path(__file__).resolve().parent
    top_level = {"test_architecture.py", "test_readme.py"}
    stray = [
        str(p.relative_to(tests))
        for p in tests.rglob("test_*.py")
        if (
            p.name not in top_level
            if p.parent == tests
            else not (PACKAGE / p.parent.relative_to(tests)).is_dir()
        )
    ]
    assert not stray, f"test modules outside a folder that mirrors iclkit/: {stray}"
