"""The README's "Gate your library's CI on streamspec" recipe, run for real.

Its tox environment is copied as written into a temporary project whose library is the README's
adapter example; only where streamspec comes from is overridden on the tox command line (this
checkout, instead of a release), and the search is cut to a small profile through the recipe's own
``{posargs}``. The baseline is recorded as the README says, then the gate runs, and the junit.xml the
CI job publishes must be where the job looks for it.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.recipe, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parent.parent
RECIPE_HEADING = "## Gate your library's CI on streamspec"
ADAPTER_HEADING = "## Validate your own implementation"
SMALL = ("--profile", "dev", "--clauses", "S1")
"""Seconds instead of the ci profile's minutes; S1 is the seed's clause."""


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", section, flags=re.S | re.M)


@dataclass(frozen=True)
class Recipe:
    ini: str
    env: str
    sut_module: str
    baseline: str
    workflow: str
    junit: str
    adapter: str


def read_recipe(readme: str) -> Recipe:
    """The recipe's pieces, as a user would copy them from the README."""
    section = _section(readme, RECIPE_HEADING)
    (ini,) = _blocks(section, "ini")
    (workflow,) = _blocks(section, "yaml")
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(ini)
    (env_section,) = [s for s in config.sections() if s.startswith("testenv:")]
    commands = config[env_section]["commands"]
    sut = re.search(r"--sut (\S+)", commands)
    baseline = re.search(r"--baseline (\S+)", commands)
    junit = re.search(r"^\s*path: (\S*junit\.xml)\s*$", workflow, flags=re.M)
    assert sut and baseline and junit, (commands, workflow)
    adapter = _blocks(_section(readme, ADAPTER_HEADING), "python")[0]
    return Recipe(
        ini=ini, env=env_section.removeprefix("testenv:"), sut_module=sut.group(1).partition(":")[0],
        baseline=baseline.group(1), workflow=workflow, junit=junit.group(1), adapter=adapter,
    )


def _project(root: Path, recipe: Recipe) -> Path:
    """A library's repository: a package holding the adapter, and the recipe in its tox.ini."""
    *packages, module = recipe.sut_module.split(".")
    folder = root
    for package in packages:
        folder = folder / package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text("")
    (folder / f"{module}.py").write_text(recipe.adapter, encoding="utf-8")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=69"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "yourlib"\nversion = "1.0"\n\n'
        f'[tool.setuptools]\npackages = {json.dumps([packages[0]] if packages else [])}\n',
        encoding="utf-8",
    )
    tox_ini = f"[tox]\nskip_missing_interpreters = false\n\n{recipe.ini}"
    (root / "tox.ini").write_text(tox_ini, encoding="utf-8")
    return root


def _tox(project: Path, recipe: Recipe, *posargs: str) -> subprocess.CompletedProcess[str]:
    # The outer session's tox, coverage and streamspec settings must not leak into the library's run.
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("TOX_", "COVERAGE_", "STREAMSPEC_", "PYTEST_")) and k not in {"VIRTUAL_ENV"}
    }
    return subprocess.run(
        [sys.executable, "-m", "tox", "-c", str(project / "tox.ini"), "-e", recipe.env,
         "-x", f"testenv:{recipe.env}.deps=-e {ROOT}", "--", *posargs],
        cwd=project, env=env, capture_output=True, text=True, timeout=900, check=False,
    )


def test_the_readme_recipe_records_a_baseline_then_gates_and_writes_the_junit_the_ci_job_publishes(tmp_path):
    recipe = read_recipe((ROOT / "README.md").read_text(encoding="utf-8"))
    assert f"tox -e {recipe.env}" in recipe.workflow, recipe.workflow
    project = _project(tmp_path / "yourlib", recipe)

    record = _tox(project, recipe, *SMALL, "--update-baseline")
    assert record.returncode == 0, record.stdout[-6000:] + record.stderr[-3000:]
    baseline = json.loads((project / recipe.baseline).read_text(encoding="utf-8"))
    assert baseline["expected_failures"] == {}, baseline

    gate = _tox(project, recipe, *SMALL)
    assert gate.returncode == 0, gate.stdout[-6000:] + gate.stderr[-3000:]
    assert "OK against the baseline" in gate.stdout, gate.stdout[-3000:]
    junit = project / recipe.junit
    assert junit.is_file(), sorted(str(p.relative_to(project)) for p in (project / "reports").rglob("*"))
    cases = ET.parse(junit).getroot().iter("testcase")
    verdicts = {c.get("name", ""): [child.tag for child in c] for c in cases}
    s1 = [name for name in verdicts if name.startswith("S1 ")]
    assert len(s1) == 1 and verdicts[s1[0]] == [], verdicts
