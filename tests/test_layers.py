"""The package's layers (docs/architecture.md), checked on the source.

* engine knows nothing of spreadsheets; sheet builds on engine only; workbook on sheet
  and engine; bridges on all of them; ``numfmt`` and ``files`` are shared by all and
  import nothing of the package;
* no import cycles between modules (imports at module level; an import inside a
  function is a deliberate late binding, and allowed);
* no private name (``_x``) crosses a module boundary, by ``from m import _x`` or by
  ``m._x`` on an imported module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "xlglmm"

#: layer -> the layers it may import (besides itself)
ALLOWED = {
    "engine": {"numfmt"},
    "sheet": {"engine", "numfmt"},
    "workbook": {"sheet", "engine", "numfmt", "files"},
    "bridges": {"workbook", "sheet", "engine", "numfmt", "files", "xlglmm"},
    "numfmt": set(),
    "files": set(),
}


def module_files() -> dict:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = ("xlglmm",) + p.relative_to(PKG).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = module_files()


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "xlglmm"


def source(module: str) -> str:
    return MODULES[module].read_text(encoding="utf-8")


def imports(module: str, top_level_only: bool = False, text: str | None = None):
    """(target module, imported name or None, node) for each import of a package
    module (or of ``text`` as if it were that module); ``top_level_only``: statements
    at module level (not in functions)."""
    tree = ast.parse(source(module) if text is None else text)
    is_pkg = MODULES[module].name == "__init__.py"
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("xlglmm"):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:
                    yield sub, None, node
                else:
                    yield target, a.name, node
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("xlglmm"):
                    yield a.name, None, node


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module):
    own = layer(module)
    if own not in ALLOWED:          # cli, demo, __main__, the package: may use anything
        return
    bad = sorted({t for t, _, _ in imports(module)
                  if layer(t) != own and layer(t) not in ALLOWED[own]})
    assert bad == [], f"{module} ({own}) imports {bad}"


def find_cycles(graph: dict) -> list:
    """The cycles a depth-first walk of ``graph`` (module -> modules it imports) meets."""
    state: dict = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycles_at_module_level():
    graph = {m: {t for t, _, _ in imports(m, top_level_only=True) if t in MODULES and t != m}
             for m in MODULES}
    assert len(graph["xlglmm.engine.fit"]) >= 3        # the walk sees the imports
    assert find_cycles(graph) == []


def test_the_cycle_check_sees_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def private_crossings(module: str, text: str | None = None) -> list:
    out = []
    tree = ast.parse(source(module) if text is None else text)
    aliases = {}
    for target, name, node in imports(module, text=text):
        if name is not None and name.startswith("_") and not name.startswith("__"):
            out.append(f"from {target} import {name}")
        if name is None and node is not None:
            for a in node.names:
                local = a.asname or a.name.split(".")[-1]
                if target.endswith("." + a.name) or target == a.name:
                    aliases[local] = target
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            out.append(f"{node.value.id}.{node.attr}")
    return sorted(set(out))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_a_module(module):
    assert private_crossings(module) == []


def test_the_private_check_sees_both_kinds():
    text = ("from . import pirls\nfrom .design import _model_matrix, build_design\n"
            "x = pirls._penalty\ny = pirls.pirls\n")
    assert private_crossings("xlglmm.engine.fit", text) == [
        "from xlglmm.engine.design import _model_matrix", "pirls._penalty"]
