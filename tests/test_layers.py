"""The layer contracts (pyproject.toml, `[tool.importlinter]`): they hold, and they can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "scenarios", "streamspec", "reference_impl", "tests", "benchmarks")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; "
         "sys.exit(c.main(standalone_mode=False) or 0)", "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=300, check=False,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the source tree and its contracts, to plant imports in."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("harness/_planted.py", "import scenarios.verify\n", "Layers: application above search above engine"),
        ("harness/_planted.py", "def late():\n    from streamspec import cli\n",
         "Layers: application above search above engine"),
        ("scenarios/_planted.py", "import streamspec.corpus\n",
         "Layers: application above search above engine"),
        ("streamspec/_planted.py", "import tests.mutants\n", "The layers never import the test suite"),
        ("reference_impl/streaming/_planted.py", "import harness.spec\n",
         "The reference implementation stands alone"),
    ],
)
def test_a_planted_upward_import_breaks_a_contract(tree: Path, module: str, statement: str, contract: str):
    clean = _lint_imports(tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (tree / module).write_text(statement)
    planted = _lint_imports(tree)
    assert planted.returncode == 1, planted.stdout + planted.stderr
    broken = [line for line in planted.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), planted.stdout


def test_no_module_is_long_without_saying_why():
    """A module past 600 lines says in its docstring why it is one piece ("Long: ...")."""
    long = []
    for name in ("harness", "scenarios", "streamspec", "reference_impl"):
        for path in (ROOT / name).rglob("*.py"):
            text = path.read_text()
            docstring = text.split('"""')[1] if text.startswith('"""') else ""
            if text.count("\n") > 600 and "\nLong: " not in docstring:
                long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not long, "split these modules or say why in their docstring ('Long: ...'): " + ", ".join(long)
