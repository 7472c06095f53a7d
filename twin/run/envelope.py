"""Where the flow fidelity is known to be off (stub, filled in below)."""

from __future__ import annotations

from dataclasses import dataclass, field

from twin.scenario.schema import Scenario


@dataclass
class Envelope:
    warnings: list[str] = field(default_factory=list)
    services: set[str] = field(default_factory=set)


def check_envelope(scenario: Scenario) -> Envelope:
    return Envelope()
