"""Import direction (docs/ARCHITECTURE.md): nothing imports the CLI, the engine imports only torch, the library
packages do not import envs/agents where the table forbids it, and every package imports without cycles."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import noether_rl

ROOT = Path(noether_rl.__file__).parent
STDLIB = set(sys.stdlib_module_names)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_nothing_outside_the_cli_imports_the_cli():
    bad = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if "cli" not in p.relative_to(ROOT).parts
           and any(m == "noether_rl.cli" or m.startswith("noether_rl.cli.") for m in _imports(p))]
    assert not bad, bad


def test_the_engine_imports_only_torch_and_the_standard_library():
    for p in _files("tailoring"):
        for m in _imports(p):
            top = m.split(".")[0]
            assert top in STDLIB or top == "torch" or m.startswith("noether_rl.tailoring") or top == "__future__", (p, m)


def test_core_packages_do_not_import_envs_agents_or_symbolic():
    forbidden = ("noether_rl.envs", "noether_rl.agents", "noether_rl.cli", "noether_rl.symbolic", "gymnasium", "pygame")
    for pkg in ("tailoring", "noether", "models", "training"):
        for p in _files(pkg):
            bad = [m for m in _imports(p) if m.startswith(forbidden)]
            assert not bad, (str(p.relative_to(ROOT)), bad)


def test_every_module_imports():
    for mod in pkgutil.walk_packages(noether_rl.__path__, "noether_rl."):
        if not mod.name.endswith("__main__"):  # (that one runs the CLI)
            importlib.import_module(mod.name)
