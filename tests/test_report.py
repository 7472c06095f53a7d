"""The rehearsal report: built by `firebreak rehearse`, self-contained, and it renders in a
real browser (Debian's Chromium, headless) with every plot loaded."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiments.report.data import ReportError
from experiments.report.html import write_report
from experiments.report.story import action_lines, clock, span
from firebreak.cli import main

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser")


class _Page(HTMLParser):
    """The tags the checks need: images, links, table headers, headings."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.refs: list[str] = []
        self.headers: list[str] = []
        self.tables: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        for key in ("href", "src"):
            if a.get(key) is not None:
                self.refs.append(a[key] or "")
        if tag == "table":
            self.tables.append(a.get("id") or "")
        self._in_th = tag == "th"

    def handle_data(self, data: str) -> None:
        if self._in_th:
            self.headers.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self._in_th = False


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> tuple[Path, str]:
    """A short bad deploy under both stacks through the command line, as users run it."""
    out = tmp_path_factory.mktemp("rehearsal")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            [
                "rehearse",
                str(ROOT / "scenarios" / "bad-deploy.yaml"),
                "--duration",
                "110m",
                "--ops",
                "both",
                "--out",
                str(out),
            ]
        )
    assert code == 0
    return out, stdout.getvalue()


def test_rehearse_writes_the_report_and_prints_where(rehearsal):
    out, stdout = rehearsal
    assert f"report: {out / 'report.html'}" in stdout
    assert (out / "report.html").is_file()


def test_report_is_self_contained(rehearsal):
    out, _ = rehearsal
    text = (out / "report.html").read_text()
    page = _parse(text)
    assert len(page.images) >= 2  # the timeline and the service graph
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG" and img.width > 100 and img.height > 100
    assert all(r.startswith("data:") for r in page.refs)
    assert not re.search(r"https?://", text)
    assert "<script" not in text and "@import" not in text


def test_report_compares_both_modes(rehearsal):
    out, _ = rehearsal
    text = (out / "report.html").read_text()
    page = _parse(text)
    assert "comparison" in page.tables
    assert {"traditional", "ai", "ai vs traditional"} <= set(page.headers)
    for label in ("MTTD", "MTTI", "MTTR", "alerts per incident", "SLO adherence", "replica-hours"):
        assert label in text
    assert "bad-deploy" in text and "seed <b>3</b>" in text
    assert "bad_deploy on productcatalogservice" in text  # the story names the fault
    assert "ground truth" in text


def test_single_mode_report_has_one_column(rehearsal, tmp_path):
    out, _ = rehearsal
    path = write_report(tmp_path, {"ai": out / "ai"})
    page = _parse(path.read_text())
    assert "ai" in page.headers and "traditional" not in page.headers
    assert not any(" vs " in h for h in page.headers)


def test_report_is_byte_identical_across_processes(rehearsal, tmp_path):
    """Same runs, same report.html, whatever the process's string hashing (PYTHONHASHSEED
    changes set order, which once reordered the service graph)."""
    out, _ = rehearsal
    code = (
        "import sys; from pathlib import Path;"
        "from experiments.report.html import report_modes, write_report;"
        "out = Path(sys.argv[1]); dest = Path(sys.argv[2]); dest.mkdir();"
        "write_report(dest, report_modes(out, ['traditional', 'ai']))"
    )
    pages = []
    for seed in ("1", "2", "3"):
        dest = tmp_path / f"report-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [sys.executable, "-c", code, str(out), str(dest)],
            check=True, env=env, cwd=ROOT, timeout=120,
        )  # fmt: skip
        pages.append((dest / "report.html").read_bytes())
    assert pages[0] == pages[1] == pages[2]


def test_report_errors_name_the_directory(tmp_path):
    with pytest.raises(ReportError, match="no such run directory"):
        write_report(tmp_path, {"ai": tmp_path / "missing"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match=r"empty/summary.json: missing"):
        write_report(tmp_path, {"ai": tmp_path / "empty"})
    with pytest.raises(ReportError, match="no run directories"):
        write_report(tmp_path, {})


def test_story_formats_times_and_collapses_repeats():
    assert clock(68437) == "19:00:37" and clock(86400 + 60) == "d1 00:01:00"
    assert span(37) == "37 s" and span(1182.5) == "19 min 42 s" and span(4830) == "1 h 20 min"
    restart = {"action": "restart_pods", "service": "cartservice"}
    actions = [
        {"time": 100.0, "by": "human", "action": restart},
        {"time": 200.0, "by": "human", "action": restart},
        {
            "time": 300.0,
            "by": "auto",
            "action": {"action": "scale_to", "service": "a", "replicas": 4},
        },
    ]
    assert action_lines(actions) == [
        "00:01:40–00:03:20 restart_pods cartservice ×2 (by the engineer)",
        "00:05:00 scale_to a (4 replicas) (automated)",
    ]


# ----------------------------------------------------------------------- a real browser

LOADED = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.title = "images loaded " + ok + "/" + imgs.length;
});
</script>"""


def _browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip(
        "no chromium on PATH: the headless-browser check needs Debian's chromium package "
        "(apt-get install chromium; .ci/run installs it when it runs as root)"
    )


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(rehearsal, tmp_path):
    browser = _browser()
    out, _ = rehearsal
    text = (out / "report.html").read_text()
    n_images = len(_parse(text).images)
    # a test-only copy reports, once the page has loaded, how many images decoded
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", LOADED + "</body>"))
    dom = _headless(browser, tmp_path / "profile-dom", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f"<title>images loaded {n_images}/{n_images}</title>" in dom.stdout
    assert 'id="comparison"' in dom.stdout and "ai vs traditional" in dom.stdout

    shot = tmp_path / "report.png"
    run = _headless(
        browser,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        (out / "report.html").as_uri(),
    )
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (2400, 1280)
    # not blank: text and plots give many colours and dark ink on the white page
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 200
    assert (pixels.mean(axis=2) < 100).mean() > 0.002
