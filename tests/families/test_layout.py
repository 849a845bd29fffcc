"""The package layout keeps its promises: code outside the family packages names no family (issue 19:
"a grep for family names outside the family packages finds none"), and no import circle, not even one
closed by an import inside a function."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gr00t_trt

PACKAGE = Path(gr00t_trt.__file__).parent
ROOT = PACKAGE.parent
#: what names a family: its name, its config model_type, its package
FAMILY_NAME = re.compile(r"n1\.6|n1\.7|N16|N17|Gr00tN1d|families\.n1[67]")


def family_mentions(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if FAMILY_NAME.search(line)]


def generic_modules() -> dict[str, str]:
    """Every module outside ``gr00t_trt/families/``, by its path relative to the repository."""
    return {str(p.relative_to(ROOT)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))
            if "families" not in p.relative_to(PACKAGE).parts}


def test_no_family_is_named_outside_the_family_packages():
    modules = generic_modules()
    hits = [f"{path}:{n}: {line}" for path, text in modules.items() for n, line in family_mentions(text)]
    assert hits == []


def test_the_pattern_finds_every_way_of_naming_a_family():
    for text in ("from ..families.n16.config import X", "'n1.7'", "Gr00tN1d6", "N17Config", "if family is N16:"):
        assert family_mentions(text), text
    assert not family_mentions("from ..families.registry import DEFAULT_FAMILY")


def module_imports(source: str, module: str, known: set[str], *, is_package: bool = False) -> dict[str, str]:
    """The gr00t_trt modules ``module`` imports, each with when: "module" (on import) or "function" (only
    when a function runs, at its first call). Imports under ``if TYPE_CHECKING`` never run and are left out;
    so are imports by name (``importlib.import_module``), which registries use on purpose."""
    package = module if is_package else module.rpartition(".")[0]
    found: dict[str, str] = {}

    def visit(node: ast.AST, when: str) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        else:
            children = list(ast.iter_child_nodes(node))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            when = "function"
        targets: set[str] = set()
        if isinstance(node, ast.Import):
            targets = {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            targets = {target, *(f"{target}.{a.name}" for a in node.names)}
        for target in (targets & known) - {module}:
            if found.get(target) != "module":
                found[target] = when
        for child in children:
            visit(child, when)

    visit(ast.parse(source), "module")
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(*, lazy: bool) -> dict[str, set[str]]:
    """Who imports whom in gr00t_trt: on import only, or (``lazy``) also inside functions."""
    paths = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in paths.items():
        imports = module_imports(path.read_text(), module, set(paths), is_package=path.name == "__init__.py")
        graph[module] = {target for target, when in imports.items() if lazy or when == "module"}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [module, target])
            elif target not in state:
                visit(target, path + [module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return found


def test_no_module_level_import_circle():
    graph = import_graph(lazy=False)
    assert {"gr00t_trt.families.n16.model", "gr00t_trt.model.action_head", "gr00t_trt.runtime.policy"} <= set(graph)
    assert circles(graph) == []


def test_no_import_circle_even_through_function_level_imports():
    """Every import that can run is an edge, at module level or in a function; the graph has no cycle.

    A function-level import defers a heavy dependency, it must not hide a circle. A cycle closed by one
    breaks the first time that function runs while a module of the cycle is still importing (it sees a
    half-initialised module). A cycle of function-level imports only does not break yet, but its modules
    need each other: what both use moves to a third module both import (as serve/core.py took the signal
    handler that openpi.py and server.py shared). So no cycle is allowed, whatever its kind of import."""
    graph = import_graph(lazy=True)
    assert "gr00t_trt.serve.openpi" in graph["gr00t_trt.serve.server"]  # run_server's lazy import is seen
    assert circles(graph) == []


def test_the_walk_sees_imports_inside_functions_and_skips_type_checking_ones():
    source = ("from . import a\nif TYPE_CHECKING:\n    from . import b\nelse:\n    from . import c\n"
              "def f():\n    from .d import x\n    from . import a\n"
              "class K:\n    from . import e\n    async def m(self):\n        import p.f\n")
    known = {f"p.{name}" for name in "abcdef"}
    assert module_imports(source, "p.m", known) == {
        "p.a": "module", "p.c": "module", "p.d": "function", "p.e": "module", "p.f": "function"}
    assert module_imports("from .b import x\n", "p", known, is_package=True) == {"p.b": "module"}


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert circles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
