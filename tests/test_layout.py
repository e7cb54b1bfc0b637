"""The code's layout holds: trainers never import the orchestrator or Ray, and trainers/data has no import circles,
counting imports inside functions (a late import that holds a circle apart is still a circle)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module `path` imports anywhere in its body (`from a.b import c` counts a.b and a.b.c)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / package.replace(".", "/")).rglob("*.py")}
    return {name: {m for m in imported(path) if m in files and m != name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A package imports its own submodules on purpose (its __init__), so edges into a package's own children from
    the package are ignored; any other cycle is returned."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_trainers_data_has_no_import_circles():
    graph = import_graph("trainers.data")
    assert "trainers.data.stream" in graph and graph["trainers.data.dataset"]
    # Importing a subpackage runs its __init__ first: an import of trainers.data.x from inside trainers.data (but not
    # from its __init__) depends on trainers.data itself only through that package, which is not a circle of ours.
    for name, targets in graph.items():
        targets.discard("trainers.data")
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_find_cycle_sees_a_late_import_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_trainers_never_import_the_orchestrator_or_ray():
    for path in (ROOT / "trainers").rglob("*.py"):
        bad = {m for m in imported(path) if m.split(".")[0] in ("orchestrator", "ray")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
