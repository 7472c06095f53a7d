"""The house rules, checked on the real tree: the card's top level, imports that point down
the layers only, no import circles, rooms of a readable size, and the picture that shows it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firebreak.architecture import draw
from firebreak.import_graph import LAYERS, import_cycles, import_graph, layering_violations

ROOT = Path(__file__).resolve().parents[1]
LONG = 500  # above this a module says why at its top
MAX_LINES = 600


def test_top_level_is_the_design_cards() -> None:
    for folder in (*LAYERS, "scenarios", "tests", "benchmarks", "runbooks"):
        assert (ROOT / folder).is_dir(), folder
    assert not (ROOT / "src").exists()


def test_imports_point_down_and_never_round_a_circle() -> None:
    graph = import_graph(ROOT)
    assert graph.number_of_nodes() > 100
    assert layering_violations(graph) == []
    assert import_cycles(graph) == []


def _plant(root: Path, files: dict[str, str]) -> None:
    for layer in LAYERS:
        (root / layer).mkdir(parents=True, exist_ok=True)
        (root / layer / "__init__.py").write_text("")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_an_upward_import_and_a_lazy_cycle(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "twin/engine.py": "from agents.policy import act\n",
            "agents/policy.py": "def act():\n    from agents.helper import x\n",
            "agents/helper.py": "from agents.policy import act\nx = 1\n",
            "detectors/typed.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from agents import policy\n"
            ),
        },
    )
    graph = import_graph(tmp_path)
    assert ("twin.engine", "agents.policy") in layering_violations(graph)
    assert import_cycles(graph) == [["agents.helper", "agents.policy"]]
    # an import for type checkers only is not an upward edge
    assert not graph.has_edge("detectors.typed", "agents.policy")


def _sources() -> list[Path]:
    found = []
    for folder in (*LAYERS, "tests", "benchmarks"):
        found += sorted((ROOT / folder).rglob("*.py"))
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_room_is_too_long_without_a_reason(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_LINES, f"{path.name}: {lines} lines (at most {MAX_LINES})"
    if lines > LONG:
        head = text[: text.find('"""', 3) + 3] if text.startswith('"""') else ""
        assert "Over 500 lines because" in head, f"{path.name}: {lines} lines and no reason"


def test_the_picture_is_drawn_from_the_graph(tmp_path: Path) -> None:
    out = tmp_path / "architecture.png"
    draw(import_graph(ROOT), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 50_000
