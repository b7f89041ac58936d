"""The package's layers: a module imports only its own layer and those below it.

Bottom to top: 0 foundations (the modules at the package root), 1 runtime, 2 data, 3 backbones,
4 methods, 5 engine, 6 evaluation, 7 audit, 8 workflows and study, 9 report, 10 cli. ``ktmu/__init__.py``
(the lazy public API) and ``ktmu/__main__.py`` sit outside the layers. Every import counts: at the
top of a file, inside a function, under ``if TYPE_CHECKING:``, and the lazy ``"module:attr"``
targets of the registries (``METHODS.register("ga", "ktmu.methods.ga:GradientAscent")``), which
import when a name is chosen.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import ktmu

SRC = Path(ktmu.__file__).resolve().parent
FOUNDATIONS = ("errors", "registry", "settings", "concepts", "prompts", "outputs")
LAYERS = {**{name: 0 for name in FOUNDATIONS}, "runtime": 1, "data": 2, "backbones": 3, "methods": 4, "engine": 5,
          "evaluation": 6, "audit": 7, "workflows": 8, "study": 8, "report": 9, "cli": 10}
OUTSIDE = {"ktmu", "ktmu.__main__"}  # the package's own __init__ and python -m ktmu
MAX_ROOT_MODULES = 6
LAZY_TARGET = re.compile(r"ktmu(?:\.[A-Za-z_]\w*)+:[A-Za-z_]\w*")  # a registry's "module:attr"


def module_name(path: Path) -> str:
    """``ktmu.engine.trainer`` for ``.../ktmu/engine/trainer.py``; a package is its ``__init__``'s folder."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    """The layer of a ktmu module (None outside the layers or for a name no layer claims)."""
    if module in OUTSIDE:
        return None
    return LAYERS.get(module.split(".")[1])


def _from_package_root(name: str) -> str:
    """What ``from ktmu import name`` imports: a module or package of the root, else a name of the lazy public API."""
    if (SRC / f"{name}.py").is_file() or (SRC / name / "__init__.py").is_file():
        return f"ktmu.{name}"
    return getattr(ktmu, "_PUBLIC", {}).get(name, "ktmu")


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every ktmu module that ``source`` (the text of ``module``) imports, at any depth of its syntax tree."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, is_package)
            if target == "ktmu":
                found.update(_from_package_root(a.name) for a in node.names)
            else:
                found.add(target)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY_TARGET.fullmatch(node.value):
            found.add(node.value.partition(":")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return {m for m in found if m == "ktmu" or m.startswith("ktmu.")}


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """``"module -> imported (layer a -> layer b)"`` for each import of a layer above ``module``'s own."""
    own = layer_of(module)
    if own is None:
        return []
    out = []
    for target in sorted(imports_of(source, module, is_package)):
        theirs = layer_of(target)
        if theirs is not None and theirs > own:
            out.append(f"{module} -> {target} (layer {own} -> {theirs})")
    return out


def _modules() -> list[tuple[str, Path]]:
    return sorted((module_name(p), p) for p in SRC.rglob("*.py"))


# ---- the checker finds what it must (so that the real check below can fail) ----------------------
def test_the_checker_sees_every_kind_of_import():
    source = '''
from __future__ import annotations
from typing import TYPE_CHECKING
import torch
from ktmu.settings import in_range
from ktmu.methods.base import Batch
if TYPE_CHECKING:
    from ktmu.cli import main
def late():
    import ktmu.report.tables
    from ktmu import open_session
REGISTRY = {"x": "ktmu.audit.run:Auditor"}
WORDS = "see ktmu.workflows.tune for the rule"
'''
    assert imports_of(source, "ktmu.engine.new") == {"ktmu.settings", "ktmu.methods.base", "ktmu.cli", "ktmu.report.tables",
                                                      "ktmu.workflows.session", "ktmu.audit.run"}
    assert upward_imports(source, "ktmu.engine.new") == [
        "ktmu.engine.new -> ktmu.audit.run (layer 5 -> 7)",
        "ktmu.engine.new -> ktmu.cli (layer 5 -> 10)",
        "ktmu.engine.new -> ktmu.report.tables (layer 5 -> 9)",
        "ktmu.engine.new -> ktmu.workflows.session (layer 5 -> 8)",
    ]
    assert upward_imports(source, "ktmu.cli.app") == []  # the top layer may import anything
    assert upward_imports("from ktmu.study.recipes import Recipe\n", "ktmu.workflows.x") == []  # workflows and study share a layer


def test_relative_imports_resolve_against_the_module():
    assert imports_of("from .base import Batch\nfrom ..engine import trainer\n", "ktmu.methods.ga") == {"ktmu.methods.base", "ktmu.engine"}
    assert imports_of("from .base import Batch\n", "ktmu.methods", is_package=True) == {"ktmu.methods.base"}


# ---- the package as it is -----------------------------------------------------------------------
def test_every_module_belongs_to_a_layer():
    unplaced = [m for m, _ in _modules() if m not in OUTSIDE and layer_of(m) is None]
    assert not unplaced, f"modules outside every layer (add their package to LAYERS in {__file__}): {unplaced}"


def test_no_module_imports_a_layer_above_its_own():
    violations = []
    for module, path in _modules():
        violations += upward_imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    assert not violations, "imports of a higher layer:\n" + "\n".join(violations)


def test_imports_are_absolute():
    relative = [f"{m}: from {'.' * n.level}{n.module or ''} import ..." for m, p in _modules()
                for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))) if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative, "write imports as `from ktmu.x.y import z`:\n" + "\n".join(relative)


def test_at_most_six_modules_at_the_package_root():
    root = sorted(p.stem for p in SRC.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the root of ktmu ({', '.join(root)}); move one into a layer's package"
    assert set(root) <= set(FOUNDATIONS), f"root modules that are no foundation: {sorted(set(root) - set(FOUNDATIONS))}"
