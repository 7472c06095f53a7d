"""The rehearsal report: one self-contained `report.html` that compares operations modes.

People open it from a laptop, a CI artefact or an e-mail attachment, so it carries
everything inline (CSS in a <style>, every plot a base64 PNG) and reaches for nothing on
the network. It reads only the run directories a rehearsal wrote (`firebreak rehearse`):
the scored summary, the ground-truth labels, the operations log and the metrics, which it
averages to one-minute bins so a day-long run reports in seconds.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from detectors.anomaly.evaluation import FaultLabel
from experiments.report.data import ReportError, RunData, entry_services, load_run
from experiments.report.plots import graph_png, timeline_png, zoom_windows
from experiments.report.story import clock, span, story

# (summary key, label, formatter, lower is better?)
Row = tuple[str, str, Callable[[Any], str], bool | None]


def _num(v: Any) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}"
    return "-" if v is None else f"{int(v):,}"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}%"


def _dur(v: Any) -> str:
    return "-" if v is None else f"{span(v)} ({float(v):,.0f} s)"


ROWS: tuple[Row, ...] = (
    ("mttd_s", "MTTD (fault start → first alert)", _dur, True),
    ("mtti_s", "MTTI (fault start → root named)", _dur, True),
    ("mttr_s", "MTTR (fault start → SLO restored)", _dur, True),
    ("alerts_per_incident", "alerts per incident", _num, True),
    ("slo_adherence", "SLO adherence", _pct, False),
    ("slo_violating_min", "SLO-violating minutes", _num, True),
    ("replica_hours", "replica-hours", _num, True),
    ("alerts", "alerts", _num, True),
    ("incidents", "incidents", _num, True),
    ("faults_detected", "faults detected", _num, False),
    ("faults_identified", "faults identified", _num, False),
    ("faults_with_slo_impact", "faults that violated the SLO", _num, None),
    ("pages", "pages to the on-call engineer", _num, True),
    ("actions_automated", "actions automated", _num, None),
    ("actions_approved", "actions approved by the engineer", _num, None),
    ("actions_by_human", "actions by the engineer", _num, None),
    ("actions_undone", "actions undone", _num, None),
    ("escalated", "decisions escalated", _num, None),
    ("unsafe_actions", "unsafe actions", _num, True),
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;
max-width:1240px;padding:1.2em 2em;color:#1d1d1f;background:#fff}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.8em;
border-bottom:1px solid #ddd;padding-bottom:.2em}h3{font-size:1.02em;margin:1em 0 .3em}
.meta{color:#555}.note{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0}th,td{padding:.3em .8em;text-align:right;
border-bottom:1px solid #eee}th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #bbb}.better{color:#1a7f37}.worse{color:#b42318}
img{max-width:100%;height:auto;display:block;margin:.6em 0;border:1px solid #eee}
.modes{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:1.5em}
ul{padding-left:1.2em}li{margin:.15em 0}code{background:#f4f4f4;padding:0 .25em}
"""


def _img(data: bytes, alt: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _change(a: Any, b: Any, lower_better: bool | None) -> str:
    """Relative change of mode b against mode a, coloured when there is a better side."""
    if a is None or b is None or not isinstance(a, int | float) or not isinstance(b, int | float):
        return "<td>-</td>"
    if a == 0:
        return "<td>-</td>" if b == 0 else "<td>new</td>"
    rel = (b - a) / abs(a)
    cls = ""
    if lower_better is not None and abs(rel) > 1e-9:
        cls = "better" if (rel < 0) == lower_better else "worse"
    return f'<td class="{cls}">{100 * rel:+.0f}%</td>'


def comparison_table(runs: Mapping[str, RunData]) -> str:
    """Rows of figures, one column per mode; with two modes, the second's relative change."""
    modes = list(runs)
    delta = len(modes) == 2
    head = "".join(f"<th>{html.escape(m)}</th>" for m in modes)
    if delta:
        head += f"<th>{html.escape(modes[1])} vs {html.escape(modes[0])}</th>"
    body = []
    for key, label, fmt, lower in ROWS:
        values = [runs[m].stack.get(key) for m in modes]
        cells = "".join(f"<td>{html.escape(fmt(v))}</td>" for v in values)
        if key in ("faults_detected", "faults_identified"):
            cells = "".join(
                f"<td>{_num(v)} / {_num(runs[m].stack.get('faults'))}</td>"
                for m, v in zip(modes, values, strict=True)
            )
        if delta:
            cells += _change(values[0], values[1], lower)
        body.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    return (
        f'<table id="comparison"><thead><tr><th>figure</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _story_html(run: RunData) -> str:
    parts = story(run)
    out = [f"<h3>{html.escape(run.mode)}</h3>"]
    out.append(f"<p>{html.escape(parts['overview'][0])}</p>")
    if parts["faults"]:
        out.append("<p><b>Faults</b> (ground truth, in time order)</p><ul>")
        out += [f"<li>{html.escape(line)}</li>" for line in parts["faults"]]
        out.append("</ul>")
    if parts["actions"]:
        out.append("<p><b>Actions</b></p><ul>")
        out += [f"<li>{html.escape(line)}</li>" for line in parts["actions"]]
        out.append("</ul>")
    else:
        out.append("<p>No actions were taken.</p>")
    return f'<div class="story">{"".join(out)}</div>'


def _slos(summary: Mapping[str, Any]) -> tuple[list[tuple[str, float]], float | None]:
    """SLO latency lines (class, ms) and the strictest availability target."""
    slos = summary.get("slos") or []
    lines = sorted(
        {
            (str(s.get("class") or s.get("name")), float(s["latency_ms"]))
            for s in slos
            if s.get("latency_ms")
        },
        key=lambda x: x[1],
    )
    targets = [float(s["availability_target"]) for s in slos if s.get("availability_target")]
    return lines, (max(targets) if targets else None)


def _faults(runs: Mapping[str, RunData]) -> list[FaultLabel]:
    """Ground truth: the labels of the first mode (every mode's labels describe the same
    faults, replayed without any operator)."""
    return sorted(next(iter(runs.values())).faults, key=lambda f: (f.start, f.id))


def render(runs: Mapping[str, RunData], extra: str = "") -> str:
    """The whole report as one HTML string (`extra`: sections appended, e.g. similar past
    incidents)."""
    first = next(iter(runs.values()))
    summary = first.summary
    duration = float(summary.get("sim_seconds") or (first.times[-1] + 60.0))
    scenario = str(summary.get("scenario", "?"))
    seed = summary.get("seed", "?")
    faults = _faults(runs)
    entries = entry_services(first)
    slo_lines, availability = _slos(summary)
    modes = " vs ".join(runs)
    title = f"{scenario} (seed {seed}): {modes}"
    figures = [
        "<h2>Timeline</h2>",
        '<p class="note">Every panel shares the time axis. Red shading and the faults lane are '
        "the ground truth from labels.json; the operations lanes show what each stack saw and "
        "did: alerts, incidents (the correlator's groups), the service each identification "
        "named, and actions by who took them.</p>",
        _img(
            timeline_png(runs, faults, entries, slo_lines, availability, (0.0, duration), title),
            "timeline of the whole run",
        ),
    ]
    for k, window in enumerate(zoom_windows(faults, runs, duration)):
        caption = f"{clock(window[0])}–{clock(window[1])}"
        figures.append(f"<h3>Close-up {k + 1}: {caption}</h3>")
        figures.append(
            _img(
                timeline_png(
                    runs,
                    faults,
                    entries,
                    slo_lines,
                    availability,
                    window,
                    f"{title}, {caption}",
                ),
                f"timeline close-up {caption}",
            )
        )
    figures += [
        "<h2>Service graph</h2>",
        '<p class="note">Call edges of the topology (callers above callees). A service counts '
        "as degraded in a minute when its error ratio is at least 1% or its p99 at least three "
        "times its usual (25th percentile over the run). Fault roots (ground truth) are outlined "
        "in red; a broken link between two services is drawn red.</p>",
        _img(graph_png(runs, faults), "service graph coloured by impact"),
    ]
    stories = "".join(_story_html(run) for run in runs.values())
    meta = (
        f"scenario <b>{html.escape(scenario)}</b> · seed <b>{html.escape(str(seed))}</b> · "
        f"duration <b>{html.escape(span(duration))}</b> · fidelity "
        f"{html.escape(str(summary.get('fidelity', '?')))} · {len(faults)} faults · "
        f"operations: {html.escape(modes)}"
    )
    dirs = ", ".join(
        f"{html.escape(m)}: <code>{html.escape(str(r.path))}</code>" for m, r in runs.items()
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>Firebreak rehearsal: {html.escape(title)}</title>",
            f"<style>{CSS}</style></head><body>",
            f"<h1>Firebreak rehearsal: {html.escape(scenario)}</h1>",
            f'<p class="meta">{meta}</p>',
            "<h2>Side by side</h2>",
            comparison_table(runs),
            '<p class="note">MTTD, MTTI and MTTR are means over the faults that were detected, '
            "identified, or that violated the SLO, scored against the ground truth. Actions "
            "count every action taken; unsafe actions are automated ones that broke a "
            f"guardrail limit. Run directories: {dirs}.</p>",
            "<h2>What happened</h2>",
            f'<div class="modes">{stories}</div>',
            *figures,
            extra,
            "</body></html>",
        ]
    )


def write_report(out_dir: Path, runs: Mapping[str, Path], extra: str = "") -> Path:
    """Write `out_dir/report.html` comparing the rehearsal run directories `runs` (mode →
    directory, in the order the columns should appear); returns its path."""
    if not runs:
        raise ReportError("report: no run directories given")
    data = {mode: load_run(mode, Path(path)) for mode, path in runs.items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(render(data, extra), encoding="utf-8")
    return path


def report_modes(out: Path, modes: Sequence[str]) -> dict[str, Path]:
    """The run directories `firebreak rehearse` wrote: DIR/<mode> for several, DIR for one."""
    out = Path(out)
    return {m: out / m for m in modes} if len(modes) > 1 else {modes[0]: out}
