"""The house rules of DESIGN.md "Layers", checked from the source with the standard library's ast.

- No import circles anywhere in l2mesh/ (type-checking-only imports count too:
  a circle there is still a circle a reader has to follow).
- Sans-IO layers (wire, crypto, rules, switch, node, controller, portmap and the root modules)
  import neither the I/O edge nor the CLI, nor any module that reaches for
  sockets, threads, trio, files or processes.
- Nothing but the CLI imports the CLI, and only the edge and the CLI import the edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "l2mesh"
SANS_IO_PACKAGES = ("l2mesh.wire", "l2mesh.crypto", "l2mesh.rules", "l2mesh.switch", "l2mesh.node", "l2mesh.controller", "l2mesh.root", "l2mesh.portmap")
SANS_IO_ROOT_MODULES = (
    "l2mesh.dns_names",
    "l2mesh.errors",
    "l2mesh.fragments",
    "l2mesh.identity",
    "l2mesh.ids",
    "l2mesh.managed_routes",
    "l2mesh.netconf",
    "l2mesh.ports",
    "l2mesh.ratelimit",
    "l2mesh.session",
    "l2mesh.session_server",
    "l2mesh.relaying",
)
# What a sans-IO module must never import: the world's doors.
IO_MODULES = ("socket", "select", "selectors", "threading", "trio", "asyncio", "subprocess", "sqlite3", "fcntl", "pytun", "pyroute2", "httpx", "hypercorn", "starlette")
# The lab (namespace harness for tests, benchmarks and the demo) sits beside the edge.
EDGE_PACKAGES = ("l2mesh.edge", "l2mesh.lab")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every module name this file imports (absolute, resolved from relative forms)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def internal_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: {m for m in imports_of(name, path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for target in sorted(graph[node]):
            if colour[target] == grey:
                return stack[stack.index(target) :] + [target]
            if colour[target] == white:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = black
        return None

    for start in sorted(graph):
        if colour[start] == white:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def in_any(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def is_sans_io(name: str) -> bool:
    return in_any(name, SANS_IO_PACKAGES) or name in SANS_IO_ROOT_MODULES


def test_find_cycle_sees_a_circle_and_a_clean_graph() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_of_resolves_relative_imports(tmp_path: Path) -> None:
    path = tmp_path / "x.py"
    path.write_text("from . import y\nfrom ..z import w\nimport os\n")
    assert imports_of("l2mesh.pkg.x", path) >= {"l2mesh.pkg.y", "l2mesh.z.w", "os"}


def test_no_import_circle_in_l2mesh() -> None:
    cycle = find_cycle(internal_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(n for n in all_modules() if is_sans_io(n)))
def test_sans_io_module_touches_no_io(name: str) -> None:
    imported = imports_of(name, all_modules()[name])
    reaching_out = sorted(m for m in imported if in_any(m, EDGE_PACKAGES) or in_any(m, ("l2mesh.cli",)) or in_any(m, IO_MODULES))
    assert not reaching_out, f"{name} is sans-IO but imports {reaching_out}"


def test_only_the_cli_imports_the_cli_and_only_edge_and_cli_import_the_edge() -> None:
    for name, targets in internal_graph().items():
        if not in_any(name, ("l2mesh.cli",)):
            assert not any(in_any(t, ("l2mesh.cli",)) for t in targets), f"{name} imports the CLI"
        if not in_any(name, EDGE_PACKAGES + ("l2mesh.cli",)):
            assert not any(in_any(t, EDGE_PACKAGES) for t in targets), f"{name} imports the edge"
