"""The architecture as the code has it: the real import graph, its layers and its rooms.

Why from the code and not by hand: a picture drawn once drifts. ARCHITECTURE.md's picture is
rebuilt from this graph (`python -m firebreak.architecture`), and the suite checks the two
rules it shows: imports point down the layers only, and no modules import each other,
directly or round a circle (lazy imports inside functions included).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
# top to bottom: a package may import only from packages below it
LAYERS = ("firebreak", "experiments", "agents", "detectors", "twin")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            found[_module_name(path, root)] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imported(tree: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> set[str]:
    """Project modules a module imports when it runs, anywhere in its body (lazy imports
    inside functions too; imports for type checkers only are not edges)."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            # the longest known module the name starts with
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    """Modules as nodes (with their layer and room), `a -> b` when a imports b."""
    known = _modules(root)
    graph = nx.DiGraph()
    for name in known:
        graph.add_node(name, layer=name.split(".")[0], room=room_of(name, known))
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target in _imported(tree, name, path.name == "__init__.py", known):
            # a package's own __init__ is not an edge worth drawing
            if not name.startswith(target + "."):
                graph.add_edge(name, target)
    return graph


def room_of(module: str, known: Iterable[str]) -> str:
    """The room a module lives in: its subpackage (twin.flow), else its layer's root."""
    parts = module.split(".")
    if (
        len(parts) >= 2
        and ".".join(parts[:2]) in known
        and any(k.startswith(".".join(parts[:2]) + ".") for k in known)
    ):
        return ".".join(parts[:2])
    return parts[0]


def layering_violations(graph: nx.DiGraph) -> list[tuple[str, str]]:
    """Imports that point up (or sideways into a higher layer)."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return [
        (a, b)
        for a, b in graph.edges
        if rank[graph.nodes[b]["layer"]] < rank[graph.nodes[a]["layer"]]
    ]


def import_cycles(graph: nx.DiGraph) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a circle."""
    return [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]


def room_graph(graph: nx.DiGraph) -> tuple[Counter, Counter]:
    """Modules per room, and imports between rooms (counted by module pairs)."""
    sizes = Counter(graph.nodes[n]["room"] for n in graph.nodes)
    edges: Counter = Counter()
    for a, b in graph.edges:
        ra, rb = graph.nodes[a]["room"], graph.nodes[b]["room"]
        if ra != rb:
            edges[(ra, rb)] += 1
    return sizes, edges
