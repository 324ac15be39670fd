"""Imports run one way: no module imports a layer above its own (ARCHITECTURE.md).

Read from the source (AST), so a lazy import inside a function counts as much as one at the top;
imports under ``if TYPE_CHECKING:`` are for type hints only and do not count. A new top-level
module or package must be given a layer here, which is the point: where it sits is a decision.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "onshi"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {"onshi", "onshi.errors", "onshi.dates", "onshi.cardmap", "onshi.tlv", "onshi.clock"}
    ),
    frozenset({"onshi.apdu"}),
    frozenset({"onshi.pki"}),
    frozenset({"onshi.profiles"}),
    frozenset({"onshi.card"}),
    frozenset({"onshi.trace"}),
    frozenset({"onshi.transport", "onshi.exchange"}),
    # The reader and the reference backend are peers: both speak the contract's code tables.
    frozenset({"onshi.backend", "onshi.reader", "onshi.mqtt"}),
    frozenset({"onshi.quickstart"}),
    frozenset({"onshi.report"}),
    frozenset({"onshi.commands"}),
    frozenset({"onshi.cli", "onshi.__main__"}),
)
"""From the bottom up; a module may import its own layer and the layers below it."""

CLI_MODULES = ("onshi.commands", "onshi.report", "onshi.cli", "onshi.__main__")
"""Where click and rich may be imported at module level."""

KNOWN_CLICK_OUTSIDE_CLI = {
    "onshi.backend.cli": "the `onshi backend` click group, still inside the backend package",
}
"""Exceptions that are still to move; the test fails once one is no longer needed."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> list[tuple[str, Path]]:
    return sorted((_module_name(p), p) for p in ROOT.rglob("*.py"))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    module: str, tree: ast.AST, *, is_package: bool = False
) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import outside TYPE_CHECKING."""
    here = module if is_package else module.rpartition(".")[0]

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    yield from walk(sub, top)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, top
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    package = here.rsplit(".", child.level - 1)[0]
                    base = f"{package}.{child.module}" if child.module else package
                else:
                    base = child.module or ""
                yield base, child.lineno, top
                for alias in child.names:  # `from onshi import pki` imports onshi.pki
                    yield f"{base}.{alias.name}", child.lineno, top
            else:
                nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                yield from walk(child, top and not nested)

    yield from walk(tree, True)


def _layer(module: str) -> int | None:
    """The layer of ``module``: that of its longest listed prefix."""
    best: tuple[int, int] | None = None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > best[0]
            ):
                best = (len(name), index)
    return None if best is None else best[1]


def _known_module(imported: str, modules: set[str]) -> str | None:
    """The onshi module an import names (``from onshi.pki import TestPKI`` -> onshi.pki)."""
    while imported:
        if imported in modules:
            return imported
        imported = imported.rpartition(".")[0]
    return None


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"))


MODULES = _modules()
NAMES = {name for name, _ in MODULES}


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_every_module_has_a_layer(module: str, path: Path) -> None:
    assert _layer(module) is not None, f"give {module} a layer in tests/test_layers.py LAYERS"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_module_imports_a_layer_above_its_own(module: str, path: Path) -> None:
    own = _layer(module)
    assert own is not None
    upward = []
    for imported, line, _ in _imports(module, _tree(path), is_package=path.name == "__init__.py"):
        target = _known_module(imported, NAMES)
        if target is None:
            continue
        layer = _layer(target)
        if layer is not None and layer > own:
            upward.append(f"{path.name}:{line} imports {target}")
    assert not upward, f"{module} (layer {own}) imports upward: {upward}"


def test_report_never_imports_commands() -> None:
    found = [
        f"{module}:{line} imports {imported}"
        for module, path in MODULES
        if module.startswith("onshi.report")
        for imported, line, _ in _imports(
            module, _tree(path), is_package=path.name == "__init__.py"
        )
        if imported == "onshi.commands" or imported.startswith("onshi.commands.")
    ]
    assert not found


def test_only_the_cli_imports_click_or_rich_at_module_level() -> None:
    offenders = {}
    for module, path in MODULES:
        if module.startswith(CLI_MODULES):
            continue
        lines = [
            line
            for imported, line, top in _imports(
                module, _tree(path), is_package=path.name == "__init__.py"
            )
            if top and imported.split(".")[0] in ("click", "rich")
        ]
        if lines:
            offenders[module] = lines
    assert set(offenders) == set(KNOWN_CLICK_OUTSIDE_CLI), (
        f"click/rich at module level outside the CLI: {offenders} "
        f"(known and still to move: {sorted(KNOWN_CLICK_OUTSIDE_CLI)})"
    )


def test_the_checker_sees_lazy_relative_and_type_checking_imports() -> None:
    """The walker itself: lazy imports count, TYPE_CHECKING ones do not, relative ones resolve."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from onshi.cli import main\n"
        "def f():\n"
        "    import rich\n"
        "    from onshi.commands import card\n"
    )
    found = {(name, top) for name, _, top in _imports("onshi.card.engine", ast.parse(source))}
    assert ("onshi.card.sibling", True) in found
    assert ("rich", False) in found and ("onshi.commands", False) in found
    assert not any(name.startswith("onshi.cli") for name, _ in found)
    in_package = _imports("onshi.card", ast.parse("from . import engine"), is_package=True)
    assert ("onshi.card.engine", True) in {(name, top) for name, _, top in in_package}
    assert _layer("onshi.card.engine") == 4 and _layer("onshi.cardmap") == 0
