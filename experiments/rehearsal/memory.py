"""The rehearsal report's "similar past incidents" section: for every incident the
operations opened, the nearest incidents of a library and what fixed them.

The signature is taken from the run directory's telemetry at the time the incident was
opened (what the operator knew then, not the labels), so the section shows what incident
memory would have offered the on-call engineer at that moment.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from detectors.memory.fewshot import FewShotKinds, nearest
from detectors.memory.library import Incident, IncidentLibrary
from detectors.memory.run_dir import read_run
from detectors.memory.signature import signature


def similar_past(run_dir: Path, library: Path, top: int = 3) -> list[dict]:
    """Per opened incident: its id, time, recognised kind and the `top` nearest past ones."""
    with IncidentLibrary.open(library) as lib:
        past = lib.incidents()
    ops_path = Path(run_dir) / "operations.json"
    opened = json.loads(ops_path.read_text()).get("incidents", []) if ops_path.is_file() else []
    if not past or not opened:
        return []
    sigs, kinds = [p.signature for p in past], [p.kind for p in past]
    model = FewShotKinds().fit(sigs, kinds)
    out = []
    for inc in opened:
        table, at, tel, _ = read_run(Path(run_dir), float(inc["opened"]))
        sig = signature(table, at, tel)
        hits = nearest(sig, sigs, model.scale_, top=top)
        out.append(
            {
                "id": inc.get("id", "?"),
                "opened": float(inc["opened"]),
                "kind": model.predict([sig])[0] if sig.blocks else "unknown",
                "nearest": [_entry(past[i], d) for i, d in hits],
            }
        )
    return out


def _entry(p: Incident, distance: float) -> dict:
    return {
        "name": p.name,
        "distance": round(distance, 3),
        "kind": p.kind,
        "root": p.root,
        "fixed_by": p.fixed_by(),
        "failed": [a.action for a in p.actions if not a.worked],
    }


def section_html(rows: list[dict], library: Path) -> str:
    """The HTML section (empty when the library or the run had no incident)."""
    if not rows:
        return ""
    parts = [
        "<h2>Similar past incidents</h2>",
        f'<p class="note">From the incident library <code>{html.escape(str(library))}</code>: '
        "each incident the operations opened, signed from the telemetry at the time it was "
        "opened, with the nearest past incidents and what fixed them.</p>",
    ]
    for r in rows:
        parts.append(
            f"<h3>{html.escape(r['id'])} (opened at {r['opened']:.0f} s): "
            f"looks like {html.escape(r['kind'])}</h3><table><tr><th>past incident</th>"
            "<th>distance</th><th>kind</th><th>root</th><th>fixed by</th><th>tried</th></tr>"
        )
        for n in r["nearest"]:
            cells = [
                n["name"],
                f"{n['distance']:.3f}",
                n["kind"],
                n["root"],
                ", ".join(n["fixed_by"]) or "nothing recorded",
                ", ".join(n["failed"]) or "-",
            ]
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    return "\n".join(parts)
