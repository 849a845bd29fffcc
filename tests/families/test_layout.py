"""The package layout keeps its promises: code outside the family packages names no family (issue 19:
"a grep for family names outside the family packages finds none"), and no module-level import circle."""

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


def module_imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The gr00t_trt modules ``module`` imports when it is imported (module level, not in functions nor
    under ``if TYPE_CHECKING``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    pending = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body]
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target, *(f"{target}.{a.name}" for a in node.names)}
    return (found & known) - {module}


def import_graph() -> dict[str, set[str]]:
    paths = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {module: module_imports(path, module, set(paths)) for module, path in paths.items()}


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
    graph = import_graph()
    assert {"gr00t_trt.families.n16.model", "gr00t_trt.model.action_head", "gr00t_trt.runtime.policy"} <= set(graph)
    assert circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert circles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
