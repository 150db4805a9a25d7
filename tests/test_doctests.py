"""Every ``>>>`` example in ray_rec runs and prints what its docstring says.

The modules are found by walking the package, so a new module's examples are tested without being
listed here. Importing them all happens at collection time and must not start Ray: modules import
Ray lazily, inside the functions that launch work.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
import sys
from pathlib import Path

import pytest

import ray_rec


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def module_names() -> list[str]:
    """Dotted names of every module and package under ray_rec, sorted."""
    names = ["ray_rec"]
    for info in pkgutil.walk_packages(ray_rec.__path__, prefix="ray_rec."):
        # __main__ runs the CLI when imported; it holds no examples
        if not info.name.endswith(".__main__"):
            names.append(info.name)
    return sorted(names)


def import_all(names: list[str]) -> tuple[list, dict[str, str]]:
    """(modules that import, {name: error} of those that do not): one broken module must not hide the
    examples of all the others behind a collection error."""
    modules, errors = [], {}
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:  # reported by test_every_module_imports
            errors[name] = f"{type(exc).__name__}: {exc}"
    return modules, errors


RAY_BEFORE = _ray_running()
MODULES, IMPORT_ERRORS = import_all(module_names())
RAY_AFTER = _ray_running()

_finder = doctest.DocTestFinder(exclude_empty=True)
EXAMPLES = sorted((t for m in MODULES for t in _finder.find(m) if t.examples), key=lambda t: t.name)


def test_every_module_imports():
    assert not IMPORT_ERRORS, "\n".join(f"{name}: {err}" for name, err in IMPORT_ERRORS.items())
    assert len(MODULES) > 20, [m.__name__ for m in MODULES]


def test_every_folder_is_a_package():
    # the walk (and setuptools' package finder) skip a folder of modules that lacks __init__.py
    root = Path(ray_rec.__file__).parent
    missing = sorted(str(d.relative_to(root)) for d in root.rglob("*")
                     if d.is_dir() and any(d.glob("*.py")) and not (d / "__init__.py").is_file())
    assert not missing, f"folders under ray_rec/ without __init__.py: {missing}"


def test_importing_every_module_leaves_ray_stopped():
    assert RAY_BEFORE or not RAY_AFTER, "importing a ray_rec module started Ray; call init_ray inside a function"


def test_examples_were_found():
    # a guard against the walk silently finding nothing
    assert len({t.name.rsplit(".", 1)[0] for t in EXAMPLES}) >= 5, [t.name for t in EXAMPLES]


@pytest.mark.parametrize("test", EXAMPLES, ids=[t.name for t in EXAMPLES])
def test_docstring_examples(test: doctest.DocTest):
    out = io.StringIO()
    runner = doctest.DocTestRunner(verbose=False)
    result = runner.run(test, out=out.write)
    assert result.failed == 0, out.getvalue()
