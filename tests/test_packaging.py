"""Packaging: environment.yml names every runtime dependency of pyproject.toml; entry points exist."""
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, the declared floor
    import tomli as tomllib

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
                            "scorelib-probe"}
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_torch_requirement_is_a_range_an_existing_install_meets():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = [d for d in deps if _name(d) == "torch"]
    assert torch_req == ["torch>=2.6"]  # transformers 5 switches PyTorch off below 2.6
