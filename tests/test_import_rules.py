"""Which module may import which: contracts that several stages share stay out of the stages.

Every module of the package (but ``__main__``, which runs the command line) is imported once, in a
fresh interpreter so that no other test's Ray cluster counts, and must load without starting Ray. The rules are then read from the source with ``ast``: an
``import`` anywhere in a file counts, at the top or inside a function, so a lazy import cannot hide a
dependency. A failure lists each offending import as ``module -> imported module``.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ray_rec"
STAGES = ("data", "sid", "train", "eval", "rl", "baseline", "toy", "pipeline")
MAX_LINES = 400
# plain torch/numpy math that a CPU test calls directly: no Ray, no command line
PURE = ("ray_rec.sid.quantize", "ray_rec.sid.rqkmeans", "ray_rec.sid.rqkmeans_plus", "ray_rec.sid.rqvae",
        "ray_rec.sid.constrained", "ray_rec.sid.collisions", "ray_rec.sid.trie", "ray_rec.sid.beam",
        "ray_rec.metrics", "ray_rec.rl.rewards", "ray_rec.rl.grpo")
CLI_ENTRIES = ("ray_rec.cli", "ray_rec.__main__")


def module_files() -> dict[str, Path]:
    """Dotted name -> file of every module under ray_rec/ (a package is named by its __init__.py)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = module_files()


def from_imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(source module, imported name) of every ``from ... import`` in the source of ``name``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            source = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            out.extend((source, alias.name) for alias in node.names)
    return out


def imported_names(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports anywhere in its source. ``from a import b`` counts as ``a.b`` when
    that is a module of the package, else as ``a``; relative imports are resolved."""
    out = {alias.name for node in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(node, ast.Import)
           for alias in node.names}
    for source, attr in from_imports(name, path):
        out.add(f"{source}.{attr}" if f"{source}.{attr}" in MODULES else source)
    return out


IMPORTS = {name: imported_names(name, path) for name, path in MODULES.items()}


def within(name: str, prefix: str) -> bool:
    """``name`` is the module ``prefix`` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def is_stage(name: str) -> bool:
    return any(within(name, f"ray_rec.{stage}") for stage in STAGES)


# (rule, which modules it binds, which imports it forbids them)
RULES: list[tuple[str, Callable[[str], bool], Callable[[str], bool]]] = [
    ("evaluation does not import SFT",
     lambda m: within(m, "ray_rec.eval"), lambda i: within(i, "ray_rec.train")),
    ("GRPO does not import evaluation",
     lambda m: within(m, "ray_rec.rl"), lambda i: within(i, "ray_rec.eval")),
    ("GRPO and SASRec take the trainer kit from ray_rec.trainer, not from SFT",
     lambda m: within(m, "ray_rec.rl") or within(m, "ray_rec.baseline"), lambda i: within(i, "ray_rec.train")),
    ("the trainer kit imports no stage",
     lambda m: within(m, "ray_rec.trainer"), is_stage),
    ("artifacts and schema import no stage",
     lambda m: m in ("ray_rec.artifacts", "ray_rec.schema"), is_stage),
    ("pure math imports neither ray nor the CLI",
     lambda m: m in PURE, lambda i: within(i, "ray") or within(i, "ray_rec.cli")),
    ("only the CLI entry points import ray_rec.cli",
     lambda m: m not in CLI_ENTRIES, lambda i: within(i, "ray_rec.cli")),
]


@pytest.mark.parametrize("rule, binds, forbids", RULES, ids=[r[0] for r in RULES])
def test_import_rule(rule, binds, forbids):
    violations = sorted(f"{m} -> {i}" for m, names in IMPORTS.items() if binds(m) for i in names if forbids(i))
    assert not violations, f"{rule}; broken by:\n" + "\n".join(violations)


def test_rules_name_modules_that_exist():
    """A renamed module must not drop out of its rule unnoticed."""
    assert not [m for m in (*PURE, *CLI_ENTRIES, "ray_rec.artifacts", "ray_rec.schema") if m not in MODULES]
    assert not [s for s in STAGES if f"ray_rec.{s}" not in MODULES]


def test_no_module_is_longer_than_the_style_allows():
    lengths = {str(p.relative_to(ROOT.parent)): len(p.read_text().splitlines()) for p in MODULES.values()}
    offenders = sorted(f"{f}: {n} lines" for f, n in lengths.items() if n > MAX_LINES)
    assert not offenders, f"files over {MAX_LINES} lines (split them by concept):\n" + "\n".join(offenders)


def test_every_name_imported_from_the_package_exists():
    """A lazy ``from ray_rec.x import f`` inside a function fails only when that function runs; after a
    move, check them all here instead."""
    missing = []
    for name, path in MODULES.items():
        for source, attr in from_imports(name, path):
            if not within(source, "ray_rec") or f"{source}.{attr}" in MODULES:
                continue
            if source not in MODULES:
                missing.append(f"{name} -> {source} (no such module)")
            elif source != "ray_rec.__main__" and not hasattr(importlib.import_module(source), attr):
                missing.append(f"{name} -> {source}.{attr}")
    assert not missing, "imports of names that do not exist:\n" + "\n".join(sorted(missing))


IMPORT_ALL = """
import importlib, json, pkgutil, sys
import ray_rec

failed = []
names = [m.name for m in pkgutil.walk_packages(ray_rec.__path__, "ray_rec.",
                                               onerror=lambda n: failed.append([n, repr(sys.exc_info()[1])]))]
for name in names:
    if name.endswith(".__main__"):  # runs the command line when imported: it is only ever executed
        continue
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append([name, repr(exc)])
ray = sys.modules.get("ray")
print("RESULT " + json.dumps({"names": names, "failed": failed,
                              "ray_started": bool(ray is not None and ray.is_initialized())}))
"""


def test_every_module_imports_without_starting_ray():
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT.parent, capture_output=True, text=True,
                          timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert not result["failed"], "modules that do not import:\n" + "\n".join(f"{n}: {e}" for n, e in result["failed"])
    assert not result["ray_started"], "importing the package started Ray"
    assert set(result["names"]) == set(MODULES) - {"ray_rec"}, "pkgutil and the file tree disagree on the modules"
