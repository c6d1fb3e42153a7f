"""Packaging: environment.yml names every runtime dependency of pyproject.toml; entry points exist."""
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, the declared floor
    import tomli as tomllib

import pytest
import yaml

from conftest import ROOT

# conda names that differ from the PyPI names
CONDA_NAMES = {"torch": "pytorch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_every_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names.update(_name(d) for d in dep.get("pip", []) if not d.startswith("-"))
        else:
            names.add(_name(dep))
    wanted = {CONDA_NAMES.get(_name(r), _name(r)) for r in project["dependencies"]}
    assert wanted - names == set(), f"environment.yml lacks {sorted(wanted - names)}"
    assert "jupyterlab" in names and "nbval" in names


def test_console_scripts_point_at_functions():
    import importlib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"scorelib-train", "scorelib-eval", "scorelib-score", "scorelib-cv", "scorelib-report",
                            "scorelib-probe", "scorelib-export"}
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_torch_requirement_is_a_range_an_existing_install_meets():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_req,) = [d for d in deps if _name(d) == "torch"]
    from packaging.requirements import Requirement

    import torch

    spec = Requirement(torch_req).specifier
    assert all(s.operator == ">=" for s in spec), f"{torch_req}: a floor only, so that pip keeps Colab's torch"
    assert spec.contains(torch.__version__.split("+")[0]), f"the installed torch {torch.__version__} misses {torch_req}"


def test_wheel_builds_without_setuptools_warnings_and_carries_the_demo_bank(tmp_path):
    """``pip install -e .`` warned "Package 'scorelib.resources' is absent from the packages configuration"."""
    import shutil
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("src", "scorelib"):  # the package's folder, in either layout
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", ".",
                           "-w", str(tmp_path / "dist")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "absent from the" not in proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("scorelib-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "scorelib/data/demo_bank.json" in names
    for folder in ("tasks", "data", "models", "criterions", "optim", "logging", "cli", "hub", "report", "explain"):
        assert f"scorelib/{folder}/__init__.py" in names, folder


@pytest.mark.slow
def test_readme_snippet_runs_from_the_folder_that_holds_the_clone(tmp_path, trained_dir):
    """A clone is a folder named ``scorelib``; Python started beside it must still import the installed package
    (with the flat layout the checkout was imported as a namespace package without ``load``)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "scorelib").symlink_to(root, target_is_directory=True)  # the clone, as `git clone` names it
    snippet = ("import scorelib\n"
               f"scorer = scorelib.load({str(trained_dir)!r})\n"
               "print(scorelib.__file__)\n"
               "print(sorted(scorer.prompts))\n"
               "print(float(scorer.score(['an answer', 'another'], prompt='q1')[0]))\n")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, prompts, score = proc.stdout.strip().splitlines()[-3:]
    assert Path(where).resolve() == root / "src" / "scorelib" / "__init__.py"
    assert prompts == "['q1', 'q2', 'q3']" and 0.0 <= float(score) <= 3.0


def test_every_comment_naming_the_torch_floor_agrees_with_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_req,) = [d.replace(" ", "") for d in deps if _name(d) == "torch"]
    for name in ("Makefile", "README.md", "environment.yml", "docs/development.md"):
        path = ROOT / name
        if path.exists():
            for floor in re.findall(r"torch\s*>=\s*[\d.]+", path.read_text()):
                assert floor.replace(" ", "") == torch_req, f"{name} names {floor}, pyproject.toml {torch_req}"


def test_the_docs_example_folders_are_git_ignored():
    import subprocess

    docs = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    folders = set(re.findall(r"scorelib-\w+ (mydata|mine)\b", docs)) | set(re.findall(r"write_demo\('(\w+)'\)", docs))
    folders |= set(re.findall(r"scorelib-export \S+ (\w+)/", docs))  # where the export examples write
    assert {"mydata", "exports"} <= folders
    for folder in folders:
        got = subprocess.run(["git", "check-ignore", "-q", f"{folder}/ranges.csv"], cwd=ROOT)
        assert got.returncode == 0, f"{folder}/, the docs' example data folder, is not git-ignored"
