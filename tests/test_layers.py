"""The package's folders are its layers, and its imports say so: each module imports only its own layer and the ones
below it, and no modules import each other, even through imports made inside a function (those are dependencies all
the same; only `TYPE_CHECKING` imports, which never run, are left out).

    entry/, agents/      the entry points: the app and its routes, the server, the CLI; each agent's hook and set-up
    core/                the broker and what it builds on
    channels/            each way of reaching people (its own webhooks call the broker through `Decisions`)
    policy/, store/      the rules, and the database (neither imports the other)
    approval_server/*.py the shared vocabulary and utilities (models, errors, config, grants, decisions, rendering)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGE = REPO / "src" / "approval_server"
RANKS = {"shared": 0, "store": 1, "policy": 1, "channels": 2, "core": 3, "agents": 4, "entry": 4}
# Public doors at the package's top, documented by these names: each is an entry point all the same.
DOORS = {"approval_server.sdk": "entry", "approval_server.__main__": "entry"}
# The two entry layers serve each other: a hook command parses its agent's payload, an agent's set-up writes the CLI.
PEERS = {("agents", "entry"), ("entry", "agents")}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def layer(module: str) -> str:
    if module in DOORS:
        return DOORS[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS) else "shared"


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree`, except what is under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _type_checking_only(child):
            yield from (node for each in child.orelse for node in [each, *_nodes(each)])
            continue
        yield child
        yield from _nodes(child)


def imports(module: str) -> set[str]:
    """The package's modules that `module` imports, where it runs: at its top or inside a function."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and name != "approval_server":
                found.add(name)
    return found


GRAPH = {module: imports(module) for module in MODULES}


def test_every_module_is_in_a_layer() -> None:
    assert {layer(module) for module in MODULES} <= set(RANKS)
    assert {layer(module) for module in MODULES} == set(RANKS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_own_layer_and_those_below(module: str) -> None:
    mine = layer(module)
    upward = sorted(
        target
        for target in GRAPH[module]
        if (theirs := layer(target)) != mine and (mine, theirs) not in PEERS and RANKS[theirs] >= RANKS[mine]
    )
    assert not upward, f"{module} ({mine}) imports {upward}"


def _cycles() -> list[list[str]]:
    """The groups of modules that import each other (Tarjan's strongly connected components, of more than one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return groups


def test_no_modules_import_each_other() -> None:
    assert _cycles() == []


def test_the_walk_sees_imports_made_inside_functions_and_skips_type_checking_ones() -> None:
    """The checks above could pass by seeing nothing: the walk finds what it must."""
    assert "approval_server.core.broker" in GRAPH["approval_server.entry.server"]
    assert "approval_server.entry.server" in GRAPH["approval_server.entry.cli"]  # imported inside `serve`
    assert "approval_server.store" not in GRAPH["approval_server.channels.plugin"]  # TYPE_CHECKING only


def test_no_module_is_over_400_lines() -> None:
    """A module longer than that holds more than one concern: split it by concern rather than let it grow."""
    long = {name: lines for name, path in MODULES.items() if (lines := len(path.read_text().splitlines())) > 400}
    assert long == {}
