"""Hand a chunk to every sink as one step that a Ctrl-C or SIGTERM cannot split.

The engines advance their chunk bookkeeping before the sinks write; an interrupt that landed
inside one sink's write lost that chunk for it (the run-directory writer, say) while the
summary still counted the simulated time. The signal is held until every sink has the chunk,
then given to the handler it was meant for (Ctrl-C's raises KeyboardInterrupt, and so does
the CLI's SIGTERM handler).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterable, Iterator

from twin.telemetry.frame import Chunk, Sink

_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block; one that came goes to its handler at the end.

    Only Python-level handlers can be held; an ignored or default disposition is left as it
    is, and off the main thread (embedded use) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[tuple[int, object]] = []

    def hold(signum, frame):
        arrived.append((signum, frame))

    previous = {}
    for signum in _HELD_SIGNALS:
        if callable(signal.getsignal(signum)):
            previous[signum] = signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum, frame in arrived[:1]:  # one stop is enough; a second would cut the first
        previous[signum](signum, frame)


def hand_over(chunk: Chunk, sinks: Iterable[Sink]) -> None:
    """Every sink gets the chunk, or (an error in one) the error propagates as before."""
    with interrupts_held():
        for sink in sinks:
            sink.on_chunk(chunk)
