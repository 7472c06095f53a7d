"""The guardrails' limits: a validated, frozen configuration read from YAML (safe_load).

A bad field fails with its path and value (`guardrails.max_replicas: must be an integer >= 1,
got 0`), so a typo in a policy file never silently loosens a limit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.errors import FirebreakError
from twin.strict import StrictFormatError, load_yaml, read_text


class GuardrailError(FirebreakError):
    """A guardrail configuration is invalid, or the guardrails were used out of order."""


def _int(lo: int) -> tuple[str, Callable[[Any], bool]]:
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo

    return f"an integer >= {lo}", ok


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _share(zero_ok: bool) -> tuple[str, Callable[[Any], bool]]:
    def ok(v: Any) -> bool:
        return _number(v) and (v >= 0 if zero_ok else v > 0) and v <= 1

    return ("a number in [0, 1]" if zero_ok else "a number in (0, 1]"), ok


_POSITIVE = ("a number > 0", lambda v: _number(v) and v > 0)

_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "max_restart_share": _share(zero_ok=False),
    "min_replicas_after": _int(0),
    "max_scale_step": _int(1),
    "max_replicas": _int(1),
    "max_shed_share": _share(zero_ok=True),
    "max_failover_share": _share(zero_ok=True),
    "max_drains": _int(0),
    "max_services": _int(1),
    "max_actions": _int(1),
    "window_s": _POSITIVE,
    "max_actions_per_service": _int(1),
    "service_window_s": _POSITIVE,
    "health_tolerance": _share(zero_ok=True),
    "load_tolerance": _share(zero_ok=True),
    "breaker_failures": _int(1),
    "breaker_window_s": ("a number > 0 or null", lambda v: v is None or _POSITIVE[1](v)),
    "clamp": ("true or false", lambda v: isinstance(v, bool)),
    "allow_kinds": (
        "a list of action kind names",
        lambda v: isinstance(v, tuple) and all(isinstance(k, str) and k for k in v),
    ),
}


def _validate(values: Mapping[str, Any], where: str) -> None:
    for name, (text, ok) in _RULES.items():
        if name in values and not ok(values[name]):
            raise GuardrailError(f"{where}.{name}: must be {text}, got {values[name]!r}")
    lo, hi = values.get("min_replicas_after"), values.get("max_replicas")
    if lo is not None and hi is not None and lo > hi:
        raise GuardrailError(f"{where}.min_replicas_after: {lo} is above max_replicas {hi}")


@dataclass(frozen=True)
class GuardrailConfig:
    """The limits, validated on construction (a bad field names itself and its value).

    `breaker_window_s` None: the breaker opens after `breaker_failures` consecutive failed
    actions (a success resets the count). A number: it opens after that many failures
    within the window, successes in between notwithstanding.
    """

    max_restart_share: float = 0.5
    min_replicas_after: int = 1
    max_scale_step: int = 4
    max_replicas: int = 50
    max_shed_share: float = 0.5
    max_failover_share: float = 1.0
    max_drains: int = 1
    max_services: int = 3
    max_actions: int = 6
    window_s: float = 600.0
    max_actions_per_service: int = 2
    service_window_s: float = 300.0
    health_tolerance: float = 0.05
    # load at the entries this much above its level before a scale-out explains a fall in
    # health (the HPA's own tolerance: within it, load counts as unchanged)
    load_tolerance: float = 0.1
    breaker_failures: int = 3
    breaker_window_s: float | None = None
    clamp: bool = True
    allow_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.allow_kinds, list):
            object.__setattr__(self, "allow_kinds", tuple(self.allow_kinds))
        _validate(dataclasses.asdict(self), "guardrails")

    @classmethod
    def from_mapping(cls, data: Any, where: str = "guardrails") -> GuardrailConfig:
        """Build from plain data (a YAML mapping); errors read `guardrails.field: ...`."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise GuardrailError(f"{where}: expected a mapping of fields, got {data!r}")
        names = [fld.name for fld in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise GuardrailError(f"{where}.{key}: unknown field (fields: {', '.join(names)})")
        values = dict(data)
        if isinstance(values.get("allow_kinds"), list):
            values["allow_kinds"] = tuple(values["allow_kinds"])
        _validate(values, where)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["allow_kinds"] = list(self.allow_kinds)
        return out


def load_guardrail_config(path: str | Path) -> GuardrailConfig:
    """Read a YAML file (safe_load) holding the fields, or a `guardrails:` key holding them."""
    path = Path(path)
    try:
        data = load_yaml(read_text(path, "file"), path)
    except StrictFormatError as exc:
        raise GuardrailError(str(exc)) from None
    if isinstance(data, Mapping) and set(data) == {"guardrails"}:
        data = data["guardrails"]
    return GuardrailConfig.from_mapping(data, where=f"{path}: guardrails")
