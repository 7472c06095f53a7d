"""A stop (Ctrl-C, SIGTERM) that lands while a chunk is being handed over waits for every
sink to have it: the run-directory writer never loses the chunk the summary counts."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from twin.telemetry.frame import Chunk
from twin.telemetry.handover import hand_over, interrupts_held


def _chunk() -> Chunk:
    return Chunk(
        times=np.zeros(1),
        values=np.zeros((1, 1, 1)),
        edge_values=np.zeros((1, 0, 1)),
        dist=np.zeros((1, 1, 3)),
        events=[],
    )


class _Recorder:
    def __init__(self, stop_with: int | None = None) -> None:
        self.chunks = 0
        self.stop_with = stop_with

    def on_chunk(self, chunk: Chunk) -> None:
        if self.stop_with is not None:
            os.kill(os.getpid(), self.stop_with)  # lands mid-hand-over
        self.chunks += 1

    def close(self) -> None:
        pass


def test_ctrl_c_during_a_hand_over_reaches_every_sink_then_interrupts() -> None:
    first, second = _Recorder(stop_with=signal.SIGINT), _Recorder()
    with pytest.raises(KeyboardInterrupt):
        hand_over(_chunk(), [first, second])
    assert (first.chunks, second.chunks) == (1, 1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sigterm_goes_to_its_own_handler_after_the_hand_over() -> None:
    seen: list[int] = []

    def handler(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        sinks = [_Recorder(stop_with=signal.SIGTERM), _Recorder()]
        hand_over(_chunk(), sinks)
        assert [s.chunks for s in sinks] == [1, 1]
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_error_in_a_sink_still_propagates_and_restores_the_handlers() -> None:
    class Broken(_Recorder):
        def on_chunk(self, chunk: Chunk) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        hand_over(_chunk(), [Broken()])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nothing_held_when_nothing_arrives() -> None:
    with interrupts_held():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
