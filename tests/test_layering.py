"""The layering rule, over every module: models/ (shared by the app and the builder) imports neither
the ML stack nor the layers above it; desktop/ (the app, shipped without torch) and server/ (the
REST server) import no builder, and neither imports the other.

The AST walk sees every import statement, at module level and inside functions, plus
importlib.import_module("...") and __import__("...") with a literal name; the subprocess tests
import every module and check what actually ended up in sys.modules.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "models": ("torch", "transformers", "builder", "desktop", "PySide6"),
    "desktop": ("builder", "server", "torch", "transformers"),
    "server": ("builder", "desktop", "torch", "transformers", "PySide6"),
}
# The one sanctioned exception: the transformers runtime imports torch and transformers inside its
# methods, only when the user opens a Hugging Face model folder (the builder's merged model); the
# app ships without them and says so (RuntimeUnavailable). Nothing else may import them lazily.
ALLOWED = {
    ("models/runtimes/transformers_runtime.py", "torch"),
    ("models/runtimes/transformers_runtime.py", "transformers"),
}


def _package(path: Path) -> list[str]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1]  # a module's package; for __init__.py, the package itself


def imported_modules(path: Path, package: list[str] | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, relative ones resolved."""
    package = _package(path) if package is None else package
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                if not base:
                    found.append((node.lineno, "." * node.level + (node.module or "")))
                    continue
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from models import codeset` imports models.codeset: check the names too.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names
                      if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(layer: str) -> list[str]:
    """'file:line: what' for each forbidden import under layer/ (one per line of code)."""
    out: dict[tuple[str, int], str] = {}
    for path in sorted((ROOT / layer).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if module.startswith("."):
                out.setdefault((rel, line), f"{rel}:{line}: relative import {module} reaches above "
                                            "the package")
            elif top in FORBIDDEN[layer] and (rel, top) not in ALLOWED:
                out.setdefault((rel, line), f"{rel}:{line}: imports {module} ({layer}/ must not "
                                            f"import {top})")
    return [out[key] for key in sorted(out)]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_imports_across_the_layers(layer):
    assert list((ROOT / layer).rglob("*.py")), f"no modules found under {layer}/"
    found = violations(layer)
    assert not found, "layering violations:\n" + "\n".join(found)


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The checker itself: a lazy import, a relative one and an import_module call are all seen."""
    probe = tmp_path / "probe.py"  # as if it were models/runtimes/probe.py
    probe.write_text("from .. import pipeline\n"
                     "def f():\n    import torch.nn\n    from builder.serve import x\n"
                     "    importlib.import_module('desktop.review')\n")
    modules = {m for _, m in imported_modules(probe, package=["models", "runtimes"])}
    assert {"models.pipeline", "torch.nn", "builder.serve", "desktop.review"} <= modules


def _import_everything(layer: str) -> list[str]:
    """Import every module of `layer` in a fresh interpreter; the forbidden ones it loaded."""
    code = f"""
import importlib, json, pkgutil, sys
import {layer}
for info in pkgutil.walk_packages({layer}.__path__, "{layer}."):
    importlib.import_module(info.name)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN[layer]!r}))))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_every_model_module_loads_no_torch_nor_the_layers_above():
    assert _import_everything("models") == []


def test_importing_every_desktop_module_loads_no_builder_nor_torch():
    assert _import_everything("desktop") == []


def test_importing_every_server_module_loads_no_builder_nor_torch():
    assert _import_everything("server") == []
