"""The layering of vae_core/__init__.py's docstring, checked: no import circles among vae_core, ui,
app_pages, app.py and router.py (every import counts, at the top of a file or inside a function),
vae_core never imports Streamlit or the app, and no import goes up the floors the docstring lists.

The graph is read from the source (ast), never by importing it: `from . import x` inside a package
is an arrow to the package itself, as `from .x import y` is one to the module x."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vae_core", "ui", "app_pages")
SCRIPTS = ("app", "router")
APP_ONLY = ("streamlit", "ui", "app_pages")  # what the engine must never import


def our_modules() -> dict[str, Path]:
    """Module name -> file, for the packages and the app's scripts."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    for script in SCRIPTS:
        if (ROOT / f"{script}.py").exists():
            modules[script] = ROOT / f"{script}.py"
    return modules


def imported_names(name: str, path: Path) -> set[str]:
    """Every name module `name` imports, absolute: `from .b import c` in a.x gives a.b and a.b.c."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (a name is taken to the nearest module that holds it)."""
    modules = our_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(name, path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_the_circle_finder_finds_a_circle_and_only_it():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]


def test_a_submodule_importing_its_package_is_an_arrow_to_the_package(tmp_path):
    module = tmp_path / "part.py"
    module.write_text("from . import sibling\nfrom .other import thing\n")
    assert imported_names("pkg.part", module) == {"pkg", "pkg.sibling", "pkg.other", "pkg.other.thing"}


def test_no_module_of_ours_is_in_an_import_circle():
    graph = import_graph()
    assert {"vae_core", "vae_core.models", "ui.session", "app_pages.train", "app"} <= set(graph)
    assert circles(graph) == []


def test_the_engine_imports_neither_streamlit_nor_the_app():
    modules = our_modules()
    reaching_up = {
        name: sorted(imported for imported in imported_names(name, path) if imported.split(".")[0] in APP_ONLY)
        for name, path in modules.items()
        if name.split(".")[0] == "vae_core"
    }
    assert {name: found for name, found in reaching_up.items() if found} == {}


FLOOR_LINE = re.compile(r"^  (\d) [^:]+: +(.+)$")


def engine_floors() -> dict[str, int]:
    """vae_core module -> its floor, as vae_core/__init__.py's docstring lists them (a listed
    name's continuation lines, indented further, belong to the same floor)."""
    docstring = ast.get_docstring(ast.parse((ROOT / "vae_core" / "__init__.py").read_text()))
    floors, floor = {}, None
    for line in docstring.splitlines():
        match = FLOOR_LINE.match(line)
        if match:
            floor, names = int(match.group(1)), match.group(2)
        elif floor is not None and line.startswith(" " * 10) and line.strip():
            names = line
        else:
            floor = None
            continue
        for name in names.split():
            floors["vae_core" if name == "__init__" else f"vae_core.{name}"] = floor
    return floors


def floor_of(module: str, floors: dict[str, int]) -> int | None:
    """The floor of `module`, or of the listed package it belongs to (vae_core.data.idx: data's);
    None for a module not listed (the floor of `vae_core`, this file, is its own alone)."""
    package = module
    while package.count(".") >= 1 and package not in floors:
        package = package.rpartition(".")[0]
    return floors.get(package) if package != "vae_core" or module == "vae_core" else None


def test_the_floors_are_read_from_the_docstring():
    floors = engine_floors()
    assert (floors["vae_core"], floors["vae_core.errors"], floors["vae_core.models"], floors["vae_core.loop"]) == (
        1,
        1,
        2,
        3,
    )
    assert (floors["vae_core.runs"], floors["vae_core.worker"], floors["vae_core.sweep"], floors["vae_core.cli"]) == (
        4,
        5,
        6,
        7,
    )
    assert floors["vae_core.byte_cache"] == 1 and floors["vae_core.stored_runs"] == 5  # continuation lines
    assert floor_of("vae_core.data.idx", floors) == 2 and floor_of("vae_core.unlisted", floors) is None


def test_every_module_the_docstring_names_exists():
    modules = our_modules()
    assert sorted(name for name in engine_floors() if name not in modules) == []


def test_every_engine_module_stands_on_a_floor():
    floors = engine_floors()
    modules = our_modules()
    assert sorted(name for name in modules if name.startswith("vae_core.") and floor_of(name, floors) is None) == []


def test_no_import_goes_up_a_floor():
    floors = engine_floors()
    upward = []
    for module, targets in import_graph().items():
        here = floor_of(module, floors)
        if here is None:
            continue
        for target in sorted(targets):
            there = floor_of(target, floors)
            if there is not None and there > here:
                upward.append(f"{module} (floor {here}) -> {target} (floor {there})")
    assert upward == []
