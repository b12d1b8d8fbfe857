"""The package's layers and their one-way arrows, read from the source with ``ast``.

Every import of every module counts, also the ones inside functions: a lower layer never imports
a higher one, no module imports another's private name, and no import cycle exists anywhere.
docs/DESIGN.md draws the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "lucid_widgets"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# Lowest first. A module may import its own layer and the layers listed before it.
LAYERS: tuple[str, ...] = (
    "optvis",
    "expression",
    "display",
    "zoo",
    "dataset",
    "blocks",
    "atlas",
    "widget",
    "api",
    "cli",
    "__main__",
    "__init__",
)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    """``lucid_widgets.optvis.render`` -> ``optvis``; the root package is ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in the file."""
    module = module_name(path, root)
    is_package = path.name == "__init__.py"
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found += [(base, alias.name, node.lineno) for alias in node.names]
    return [item for item in found if item[0].split(".")[0] == root.name]


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def targets(imported: str, name: str | None, known: dict[str, Path]) -> str:
    """The package module an import really reaches (``from pkg import submodule`` included)."""
    if name is not None and f"{imported}.{name}" in known:
        return f"{imported}.{name}"
    return imported


def arrow_violations(root: Path = ROOT) -> list[str]:
    known = modules(root)
    problems = []
    for module, path in known.items():
        own = layer_of(module)
        for imported, name, line in imports_of(path, root):
            target = targets(imported, name, known)
            other = layer_of(target)
            if own not in LAYERS or other not in LAYERS:
                problems.append(f"{module}:{line} is in no layer ({own} -> {other})")
            elif LAYERS.index(other) > LAYERS.index(own):
                problems.append(f"{module}:{line} imports {target}: {own} may not import {other}")
    return problems


def private_imports(root: Path = ROOT) -> list[str]:
    known = modules(root)
    problems = []
    for module, path in known.items():
        for imported, name, line in imports_of(path, root):
            if name and name.startswith("_") and not name.startswith("__"):
                problems.append(f"{module}:{line} imports the private {imported}.{name}")
    return problems


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Cycles of the module graph (a package's ``__init__`` counts as its own module)."""
    known = modules(root)
    graph = {
        module: {
            targets(imported, name, known)
            for imported, name, _ in imports_of(path, root)
            if targets(imported, name, known) in known and targets(imported, name, known) != module
        }
        for module, path in known.items()
    }
    # A package's __init__ re-exporting its own submodules is not a cycle with them.
    for module in graph:
        graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def name_clashes(root: Path = ROOT) -> list[str]:
    """A package attribute that is a function or class hiding a submodule of the same name."""
    problems = []
    for path in root.rglob("__init__.py"):
        package = path.parent
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    bound = alias.asname or alias.name
                    source = node.module.rsplit(".", 1)[-1]
                    is_submodule = (package / f"{bound}.py").exists() or (package / bound).is_dir()
                    if is_submodule and source != package.name and bound != source:
                        problems.append(f"{path}: {bound} hides the submodule {bound}")
    return problems


def test_every_module_is_in_a_layer_and_imports_point_down() -> None:
    assert arrow_violations() == []


def test_no_import_cycle() -> None:
    assert import_cycles() == []


def test_no_private_name_crosses_modules() -> None:
    assert private_imports() == []


def test_no_name_hides_its_module() -> None:
    assert name_clashes() == []


def test_the_engine_imports_nothing_above_it() -> None:
    for module, path in modules().items():
        if layer_of(module) == "optvis":
            reached = {layer_of(imported) for imported, _, _ in imports_of(path)}
            assert reached <= {"optvis"}, module


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fake_package(tmp_path: Path) -> Path:
    root = tmp_path / PACKAGE
    _write(root, "__init__.py", "from lucid_widgets.optvis import render\n")
    _write(root, "optvis/__init__.py", "")
    _write(root, "optvis/render.py", "import torch\n\ndef f():\n    return 1\n")
    _write(root, "widget/__init__.py", "")
    _write(root, "widget/preview.py", "from lucid_widgets.optvis.render import f\n")
    return root


def test_the_guard_passes_a_clean_tree(fake_package: Path) -> None:
    assert arrow_violations(fake_package) == []
    assert import_cycles(fake_package) == []


def test_the_guard_fails_on_an_upward_import_inside_a_function(fake_package: Path) -> None:
    _write(
        fake_package,
        "optvis/render.py",
        "def f(live=False):\n    from lucid_widgets.widget import preview\n    return preview\n",
    )
    problems = arrow_violations(fake_package)
    assert problems and "optvis may not import widget" in problems[0]


def test_the_guard_fails_on_a_relative_upward_import(fake_package: Path) -> None:
    _write(fake_package, "optvis/render.py", "from ..widget import preview\n")
    assert "optvis may not import widget" in arrow_violations(fake_package)[0]


def test_the_guard_finds_a_cycle_within_a_layer(fake_package: Path) -> None:
    _write(fake_package, "widget/a.py", "from lucid_widgets.widget import b\n")
    _write(fake_package, "widget/b.py", "def g():\n    from lucid_widgets.widget.a import x\n")
    cycles = import_cycles(fake_package)
    assert cycles == [
        ["lucid_widgets.widget.a", "lucid_widgets.widget.b", "lucid_widgets.widget.a"]
    ]


def test_the_guard_finds_private_imports_and_clashes(fake_package: Path) -> None:
    _write(fake_package, "widget/c.py", "from lucid_widgets.optvis.render import _hidden\n")
    _write(fake_package, "optvis/__init__.py", "from lucid_widgets.optvis.other import render\n")
    assert private_imports(fake_package) == [
        "lucid_widgets.widget.c:1 imports the private lucid_widgets.optvis.render._hidden"
    ]
    assert len(name_clashes(fake_package)) == 1
