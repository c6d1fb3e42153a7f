"""Registries for tasks, models and criteria, and ``--user-dir`` plugin import.

Mirrors fairseq's ``register_task`` (fairseq/tasks/__init__.py), ``register_model``
(fairseq/models/__init__.py), ``register_criterion`` (fairseq/criterions/__init__.py)
and ``import_user_module`` (fairseq/utils.py).
"""
from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from scorelib.errors import MissingFileError, OptionError, PluginError

TASK_REGISTRY: dict[str, type] = {}
MODEL_REGISTRY: dict[str, type] = {}
CRITERION_REGISTRY: dict[str, type] = {}

PLUGIN_SUBFOLDERS = ("tasks", "models", "criterions", "data")


def _registrar(registry: dict, kind: str):
    def register(name: str):
        def wrap(cls):
            old = registry.get(name)
            if old is not None and old is not cls:
                same = (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__)
                if not same:
                    raise ValueError(
                        f"cannot register {kind} {name!r} as {cls.__module__}.{cls.__qualname__}: "
                        f"the name is taken by {old.__module__}.{old.__qualname__}"
                    )
            # The same class re-defined (a re-run notebook cell, a reloaded plugin) replaces the old one.
            registry[name] = cls
            cls.registry_name = name
            return cls

        return wrap

    register.__doc__ = f"Decorator: ``@register_{kind}(name)`` adds a class to the {kind} registry."
    return register


register_task = _registrar(TASK_REGISTRY, "task")
register_model = _registrar(MODEL_REGISTRY, "model")
register_criterion = _registrar(CRITERION_REGISTRY, "criterion")


def lookup(registry: dict, kind: str, name: str):
    """Return ``registry[name]`` or raise an :class:`~scorelib.errors.OptionError` that names the flag and lists
    the known names."""
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry)) or "(none)"
        flag = {"model": "--arch"}.get(kind, f"--{kind}")
        raise OptionError(f"unknown {kind} {name!r} ({flag}); registered {kind}s: {known} (a --user-dir may "
                          f"add more)") from None


def _import_file(module_name: str, path: Path, package_dir: Path | None = None, user_dir=None):
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=[str(package_dir)] if package_dir else None
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's own code failed: say where first, keep its traceback as the cause
        sys.modules.pop(module_name, None)
        raise PluginError(f"--user-dir {user_dir}: importing your file {path} raised {type(e).__name__} (its "
                          f"traceback follows)") from e
    except SystemExit as e:  # sys.exit() in a plugin would end the run, silently, with the plugin's status
        sys.modules.pop(module_name, None)
        raise PluginError(f"--user-dir {user_dir}: the plugin exited (sys.exit({e.code!r}) while scorelib imported "
                          f"{path}); a plugin may only define and register its classes") from None
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def import_user_dir(path) -> str:
    """Import a user's plugin folder, as ``fairseq-train --user-dir`` does.

    The folder is imported as a package named after it (its ``__init__.py`` runs if present),
    then every ``*.py`` file in its ``tasks/``, ``models/``, ``criterions/`` and ``data/``
    subfolders, so that their ``@register_*`` decorators run. Importing the same folder again
    re-executes it, so edited classes replace the registered ones. This runs the code in
    that folder: only point it at code you trust.

    Args:
        path (str | Path): the plugin folder.

    Returns:
        str: the package name the folder was imported under.
    """
    folder = Path(path).expanduser().resolve()
    if not folder.exists():
        raise MissingFileError(f"--user-dir {path}: not a folder (nothing exists at that path)")
    if not folder.is_dir():
        raise MissingFileError(f"--user-dir {path}: not a folder but a file; --user-dir takes the plugin folder "
                               f"(with its __init__.py, or tasks/, models/, criterions/)")
    name = folder.name
    if not name.isidentifier():
        raise OptionError(f"--user-dir {path}: the folder name {name!r} must be a valid Python identifier")
    existing = sys.modules.get(name)
    if existing is not None:
        origin = Path(getattr(existing, "__file__", "") or "").resolve().parent
        if origin != folder:
            raise OptionError(
                f"--user-dir {path}: the module name {name!r} is already taken by {existing!r}; rename the folder"
            )
    init = folder / "__init__.py"
    if init.is_file():
        _import_file(name, init, folder, user_dir=path)
    else:
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None, is_package=True))
        module.__path__ = [str(folder)]
        module.__file__ = str(init)
        sys.modules[name] = module
        for file in sorted(folder.glob("*.py")):
            _import_file(f"{name}.{file.stem}", file, user_dir=path)
    for sub in PLUGIN_SUBFOLDERS:
        subdir = folder / sub
        if not subdir.is_dir():
            continue
        for file in sorted(subdir.glob("*.py")):
            if file.name == "__init__.py":
                continue
            _import_file(f"{name}.{sub}.{file.stem}", file, user_dir=path)
    return name


def plugin_traceback(error: BaseException) -> str:
    """The traceback of an error raised by a ``--user-dir`` file, without scorelib's and importlib's frames."""
    tb = error.__traceback__
    package = Path(__file__).resolve().parent  # scorelib/ and its folders
    while tb is not None and (tb.tb_frame.f_code.co_filename.startswith("<frozen")
                              or package in Path(tb.tb_frame.f_code.co_filename).resolve().parents):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))
