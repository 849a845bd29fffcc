"""Check the stand-in against the real modules, and collect what gr00t_trt reaches through ``trt``/``cudart``.

* pybind11 (tensorrt) and Cython (cuda.bindings) put signatures on the first line(s) of ``__doc__``;
  every method the stand-in offers must exist on the real class and take the same parameters (names,
  order, which have defaults), so any call the stand-in accepts the real module accepts too.
* Every stand-in enum member and constant exists on the real module with the same value.
* ``collect_chains`` walks gr00t_trt's source (AST) for attribute chains on the names ``trt`` and
  ``cudart``: each must resolve on every real module.
"""

from __future__ import annotations

import ast
import inspect
import re
from enum import IntEnum
from pathlib import Path


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts]


def doc_signatures(name: str, doc: str | None) -> list[list[tuple[str, bool]]]:
    """Every overload of ``name`` in a docstring as [(param, has_default)], ``self`` dropped."""
    out = []
    for line in (doc or "").splitlines():
        line = re.sub(r"^\d+\.\s*", "", line.strip())
        if not line.startswith(f"{name}(") or line.startswith(f"{name}(*args, **kwargs)"):
            continue
        body, depth = "", 0
        for ch in line[len(name) + 1:]:
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    break
                depth -= 1
            body += ch
        params = []
        for part in _split_top(body):
            head = part.split("=")[0].split(":")[0].strip()
            param = head.split()[-1] if head else head  # Cython: "size_t count" -> count
            if param not in ("self", "/", "*"):
                params.append((param, "=" in part))
        out.append(params)
    return out


def standin_params(function) -> list[tuple[str, bool]]:
    sig = inspect.signature(function)
    return [(p.name, p.default is not inspect.Parameter.empty) for p in sig.parameters.values() if p.name != "self"]


def _accepts(stand: list[tuple[str, bool]], real: list[tuple[str, bool]]) -> bool:
    """Same names in order; a stand-in default only where the real one has a default."""
    return [n for n, _ in stand] == [n for n, _ in real] and all(rd or not sd for (_, sd), (_, rd) in zip(stand, real, strict=True))


def _public_members(cls) -> dict[str, object]:
    return {k: v for k, v in vars(cls).items() if not k.startswith("_") or k == "__init__"}


def check_class(fake_cls, real_cls) -> list[str]:
    problems = []
    for name, member in _public_members(fake_cls).items():
        if isinstance(member, type) and issubclass(member, IntEnum):
            problems += check_enum(member, getattr(real_cls, name, None), f"{real_cls.__name__}.{name}")
            continue
        if not hasattr(real_cls, name):
            if isinstance(member, (int, IntEnum)) and not callable(member):
                pass
            problems.append(f"{real_cls.__name__}.{name} does not exist")
            continue
        real = getattr(real_cls, name)
        if isinstance(member, property):
            if not isinstance(real, property):
                problems.append(f"{real_cls.__name__}.{name} is a property in the stand-in only")
            continue
        if callable(member) and not isinstance(member, IntEnum):
            overloads = doc_signatures(name, getattr(real, "__doc__", None))
            if name == "__init__" and not overloads:
                continue  # made only by factories: the stand-in's constructor is not API
            if not overloads:
                problems.append(f"{real_cls.__name__}.{name}: no signature in the real __doc__")
            elif not any(_accepts(standin_params(member), o) for o in overloads):
                problems.append(f"{real_cls.__name__}.{name}{standin_params(member)} matches no real overload {overloads}")
        elif isinstance(member, IntEnum) and int(member) != int(real):
            problems.append(f"{real_cls.__name__}.{name} = {int(member)}, real {int(real)}")
    return problems


def check_enum(fake, real, label: str) -> list[str]:
    if real is None:
        return [f"{label} does not exist"]
    problems = []
    for member in fake:
        if not hasattr(real, member.name):
            problems.append(f"{label}.{member.name} does not exist")
        elif int(getattr(real, member.name)) != int(member):
            problems.append(f"{label}.{member.name} = {int(member)}, real {int(getattr(real, member.name))}")
    return problems


def _module_members(fake) -> dict[str, object]:
    return {k: v for k, v in vars(fake).items() if not k.startswith("_") and getattr(v, "__module__", fake.__name__) == fake.__name__}


def check_trt_standin(fake, real) -> list[str]:
    problems = []
    offered = 0
    for name, member in _module_members(fake).items():
        if not isinstance(member, type) and not callable(member):
            continue
        offered += 1
        if not hasattr(real, name):
            problems.append(f"tensorrt.{name} does not exist")
        elif isinstance(member, type) and issubclass(member, IntEnum):
            problems += check_enum(member, getattr(real, name), f"tensorrt.{name}")
        elif isinstance(member, type):
            problems += check_class(member, getattr(real, name))
        elif callable(member):
            if not any(_accepts(standin_params(member), o) for o in doc_signatures(name, getattr(real, name).__doc__)):
                problems.append(f"tensorrt.{name} signature differs")
    for name in getattr(fake, "VERSIONED", ()):
        problems += check_enum(getattr(fake, name), getattr(real, name, None), f"tensorrt.{name}")
    return problems if offered else ["the stand-in offers nothing"]


def check_cudart_standin(fake, real) -> list[str]:
    problems = []
    for name, member in _module_members(fake).items():
        if name in getattr(fake, "STANDIN_HELPERS", ()):  # stand-in helpers, not CUDA API
            continue
        if isinstance(member, type) and issubclass(member, IntEnum):
            problems += check_enum(member, getattr(real, name, None), f"cudart.{name}")
        elif isinstance(member, int):
            if not hasattr(real, name) or int(getattr(real, name)) != member:
                problems.append(f"cudart.{name} = {member}, real {getattr(real, name, 'missing')}")
        elif callable(member):
            if not hasattr(real, name):
                problems.append(f"cudart.{name} does not exist")
                continue
            overloads = doc_signatures(name, getattr(real, name).__doc__)
            if not any(_accepts(standin_params(member), o) for o in overloads):
                problems.append(f"cudart.{name}{standin_params(member)} matches no real signature {overloads}")
    _err, props = fake.cudaGetDeviceProperties(0)
    for field in vars(props):  # what gr00t_trt reads from the device properties
        if not hasattr(real.cudaDeviceProp(), field):
            problems.append(f"cudart.cudaDeviceProp has no field {field}")
    return problems


#: how gr00t_trt's source spells the tensorrt and cuda.bindings.runtime modules (a name, or self.<attr>)
ROOTS = {"trt": "trt", "self._trt": "trt", "cudart": "cudart", "self.rt": "cudart"}


def _root(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return ROOTS.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return ROOTS.get(f"self.{node.attr}")
    return None


def collect_chains(package: Path) -> dict[str, set[tuple[str, ...]]]:
    """Attribute chains ``trt.A.B`` / ``cudart.X`` written in gr00t_trt's source (longest chain per use)."""
    found: dict[str, set[tuple[str, ...]]] = {r: set() for r in set(ROOTS.values())}
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        inner: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                inner.add(id(node.value))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            chain, current = [], node
            while isinstance(current, ast.Attribute) and _root(current) is None:
                chain.append(current.attr)
                current = current.value
            root = _root(current)
            if root is not None and chain:
                found[root].add(tuple(reversed(chain)))
    return found
