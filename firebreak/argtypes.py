"""Argument types shared by the commands: a bad value is refused by argparse, naming the flag
and the value (exit 2), before any work starts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_int(text: str) -> int:
    """An argument that counts something: a whole number of at least 1."""
    return int_at_least(1)(text)


def int_at_least(low: int) -> Callable[[str], int]:
    """A whole number of at least `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}: {text!r}")
        return value

    return parse


def positive_float(text: str) -> float:
    """A finite number above zero (nan and inf are refused, never compared)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number: {text!r}")
    return value


def int_between(low: int, high: int) -> Callable[[str], int]:
    """A whole number in [low, high]: an upper bound keeps a typo (1e9 steps) from
    exhausting memory before any check could name it."""

    def parse(text: str) -> int:
        value = int_at_least(low)(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}: {text!r}")
        return value

    return parse


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1 (an interval level, a share)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:  # nan fails both comparisons
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1: {text!r}")
    return value
