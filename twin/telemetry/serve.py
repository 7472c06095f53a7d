"""Run a scenario in scaled real time and serve its metrics for a real Prometheus to scrape.

The simulation streams frames on the calling thread, paced so that `speed` simulated
seconds pass per wall-clock second; an HTTP server on a background thread answers
`/metrics` from a consistent snapshot of the accumulated state at each scrape. The
listener binds 127.0.0.1 unless told otherwise: a twin's metrics are nobody else's business.
"""

from __future__ import annotations

import errno
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client.registry import CollectorRegistry

from twin.errors import FirebreakError
from twin.flow.engine import Simulation
from twin.scenario.schema import Scenario
from twin.telemetry.exposition import MetricsState, registry_for, render_for, tick_dist

LINGER_POLL_S = 0.5
_INDEX = b"Firebreak digital twin: metrics at /metrics\n"


@dataclass
class ServeResult:
    """How a served run ended."""

    url: str
    sim_seconds: float
    wall_seconds: float
    interrupted: bool


def _handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        """`/metrics` negotiated by Accept (OpenMetrics or classic text); 404 elsewhere."""

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                body, content_type = render_for(registry, self.headers.get("Accept"))
                self._reply(200, body, content_type)
            elif path == "/":
                self._reply(200, _INDEX, "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: metrics are at /metrics\n", "text/plain")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the console

    return MetricsHandler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """A background HTTP server of one registry's exposition."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0):
        if not 0 <= port <= 65535:
            raise FirebreakError(f"--port: must be between 0 and 65535, got {port}")
        cls = _Server6 if ":" in host else _Server
        try:
            self.httpd = cls((host, port), _handler(registry))
        except OSError as exc:
            raise FirebreakError(f"cannot listen on {host}:{port}: {_why(exc)}") from None
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="firebreak-metrics", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another process holds the port; try --port 0)"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return "no such local address"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)


def serve_scenario(
    scenario: Scenario,
    *,
    speed: float,
    host: str = "127.0.0.1",
    port: int = 0,
    linger: bool = False,
    stop: threading.Event | None = None,
    announce: Callable[[str], None] = print,
) -> ServeResult:
    """Simulate at `speed`× real time while serving /metrics; returns when the run ends.

    With `linger`, the final state stays served until `stop` is set or Ctrl-C. Ctrl-C
    (KeyboardInterrupt) ends the run cleanly and reports it as interrupted.
    """
    if not (math.isfinite(speed) and speed > 0):
        raise FirebreakError(f"--speed: must be a positive number, got {speed:g}")
    if not 0 <= port <= 65535:
        raise FirebreakError(f"--port: must be between 0 and 65535, got {port}")
    stop = stop or threading.Event()
    sim = Simulation(scenario)
    state = MetricsState(sim.topo.names, sim.topo.edges, sim.dt)
    server = MetricsServer(registry_for(state), host, port)
    server.start()
    end = sim.n_ticks * sim.dt
    announce(
        f"serving {server.url}: {scenario.name} seed {scenario.seed}, {end:g} simulated "
        f"seconds at {speed:g}x real time (about {end / speed:.0f} s)"
    )
    wall0 = time.monotonic()
    interrupted = False
    try:
        _pace(sim, state, speed, stop, wall0)
        if linger and not stop.is_set():
            announce(f"scenario ended at t={state.time:g}s; serving the final state (Ctrl-C)")
            while not stop.wait(LINGER_POLL_S):
                pass
    except KeyboardInterrupt:
        interrupted = True
    finally:
        server.stop()
    return ServeResult(
        url=server.url,
        sim_seconds=state.time,
        wall_seconds=time.monotonic() - wall0,
        interrupted=interrupted or (stop.is_set() and state.time < end - 1e-9),
    )


def _pace(
    sim: Simulation, state: MetricsState, speed: float, stop: threading.Event, wall0: float
) -> None:
    """Stream the run, publishing each tick once its end is due on the scaled clock."""
    frames = sim.frames()
    try:
        for frame in frames:
            dist = tick_dist(sim)  # before the next tick overwrites it
            delay = wall0 + (frame.time + sim.dt) / speed - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
            state.update_frame(frame, dist)
            if stop.is_set():
                return
    finally:
        frames.close()
