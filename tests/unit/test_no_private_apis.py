"""No private attribute of another library: our code reads `x._name` only where `_name` is ours.

The rule, read from the source (ast) of vae_core, ui and app_pages: an access `x._name` (one leading
underscore, not a dunder) on anything but `self` or `cls` must name something our own code defines:
a function or class, an attribute it assigns (`self._x = ...`), a class field, or (read through a
name imported from our own packages, `session._lock`) a name bound at the top of one of our modules.
Anything else is another library's private attribute, which may change or vanish in any release.
namedtuple's documented methods (`_replace`, `_asdict`...) are public despite their underscore."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vae_core", "ui", "app_pages")
NAMEDTUPLE_API = {"_asdict", "_field_defaults", "_fields", "_make", "_replace"}


def our_sources() -> dict[Path, ast.Module]:
    return {
        path: ast.parse(path.read_text(), str(path))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def bound_names(statements) -> set[str]:
    """The names that assignments among `statements` bind (`_x = ...`, `_x: int = ...`)."""
    names = set()
    for statement in statements:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        for target in targets:
            names.update(node.id for node in ast.walk(target) if isinstance(node, ast.Name))
    return names


def attributes_we_define(trees) -> set[str]:
    """Functions, classes, assigned attributes and class fields of our code: what `obj._x` may name."""
    defined = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            if isinstance(node, ast.ClassDef):
                defined |= bound_names(node.body)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
    return defined


def names_of_our_imports(tree: ast.Module) -> set[str]:
    """The names a module binds by importing from our own packages (a module, a class, a function)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in PACKAGES):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                alias.asname or alias.name.split(".")[0] for alias in node.names if alias.name.split(".")[0] in PACKAGES
            )
    return names


def root_name(node: ast.expr) -> str | None:
    """`a` of `a`, `a.b` or `a.b.c`; None for anything else (a call, a subscript)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def foreign_private_reads(sources: dict[Path, ast.Module]) -> list[str]:
    """'file:line x._name' for each access to a private name that is not ours."""
    attributes = attributes_we_define(sources.values()) | NAMEDTUPLE_API
    module_names = set().union(*(bound_names(tree.body) for tree in sources.values()))
    found = []
    for path, tree in sources.items():
        our_imports = names_of_our_imports(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not is_private(node.attr) or node.attr in attributes:
                continue
            owner = root_name(node.value)
            if owner in ("self", "cls") or (owner in our_imports and node.attr in module_names):
                continue
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    return sorted(found)


def test_the_rule_flags_foreign_private_reads_and_passes_our_own():
    source = ast.parse(
        "from . import store\n"
        "_cache = {}\n"
        "class Cache:\n"
        "    _limit = 3\n"
        "    def __init__(self):\n"
        "        self._entries = {}\n"
        "def size(cache, parser, kernel, row):\n"
        "    ours = len(cache._entries) + cache._limit + len(store._cache) + len(row._replace(a=1))\n"
        "    return ours + len(parser._actions) + len(kernel._cache) + cache.__len__()\n"
    )
    assert foreign_private_reads({ROOT / "example.py": source}) == [
        "example.py:9 kernel._cache",
        "example.py:9 parser._actions",
    ]


def test_our_code_reads_no_private_attribute_of_another_library():
    assert foreign_private_reads(our_sources()) == []
