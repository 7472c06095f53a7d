"""Guardrail configuration: defaults, YAML, and an error naming every bad field."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from agents.safety.guardrail_config import (
    GuardrailConfig,
    GuardrailError,
    load_guardrail_config,
)
from twin.errors import FirebreakError


# ------------------------------------------------------------------------------ config
def test_config_defaults() -> None:
    cfg = GuardrailConfig()
    assert cfg.max_restart_share == 0.5
    assert (cfg.max_services, cfg.window_s) == (3, 600.0)
    assert (cfg.max_actions_per_service, cfg.service_window_s) == (2, 300.0)
    assert cfg.min_replicas_after == 1
    assert cfg.breaker_failures == 3 and cfg.breaker_window_s is None
    assert GuardrailConfig.from_mapping(None) == cfg
    assert GuardrailConfig.from_mapping(cfg.to_dict()) == cfg
    json.dumps(cfg.to_dict())


def test_config_from_mapping() -> None:
    cfg = GuardrailConfig.from_mapping(
        {"max_restart_share": 0.25, "breaker_window_s": 900, "allow_kinds": ["drain_node"]}
    )
    assert cfg.max_restart_share == 0.25
    assert cfg.breaker_window_s == 900
    assert cfg.allow_kinds == ("drain_node",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_restart_share": 1.5}, "guardrails.max_restart_share: must be a number in (0, 1]"),
        ({"max_restart_share": 0}, "guardrails.max_restart_share: must be a number in (0, 1]"),
        ({"max_services": 0}, "guardrails.max_services: must be an integer >= 1, got 0"),
        ({"max_services": 2.5}, "guardrails.max_services: must be an integer >= 1, got 2.5"),
        ({"max_services": True}, "guardrails.max_services: must be an integer >= 1, got True"),
        ({"window_s": -1}, "guardrails.window_s: must be a number > 0, got -1"),
        ({"window_s": math.inf}, "guardrails.window_s: must be a number > 0, got inf"),
        ({"breaker_window_s": 0}, "guardrails.breaker_window_s: must be a number > 0 or null"),
        ({"clamp": "yes"}, "guardrails.clamp: must be true or false, got 'yes'"),
        ({"allow_kinds": [1]}, "guardrails.allow_kinds: must be a list of action kind names"),
        ({"max_shed_share": -0.1}, "guardrails.max_shed_share: must be a number in [0, 1]"),
        ({"health_tolerance": 2}, "guardrails.health_tolerance: must be a number in [0, 1]"),
        ({"breaker_failures": 0}, "guardrails.breaker_failures: must be an integer >= 1"),
        ({"max_restrat_share": 0.3}, "guardrails.max_restrat_share: unknown field (fields: "),
        (
            {"min_replicas_after": 5, "max_replicas": 4},
            "guardrails.min_replicas_after: 5 is above max_replicas 4",
        ),
        ([1, 2], "guardrails: expected a mapping of fields, got [1, 2]"),
    ],
)
def test_config_errors_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(GuardrailError) as err:
        GuardrailConfig.from_mapping(data)
    assert str(err.value).startswith(message)
    assert isinstance(err.value, FirebreakError)


def test_config_constructor_validates_too() -> None:
    with pytest.raises(GuardrailError, match=r"guardrails\.max_scale_step: must be an integer"):
        GuardrailConfig(max_scale_step=0)
    assert GuardrailConfig(allow_kinds=["x"]).allow_kinds == ("x",)  # type: ignore[arg-type]


def test_load_guardrail_config(tmp_path) -> None:
    plain = tmp_path / "g.yaml"
    plain.write_text("max_services: 2\nwindow_s: 120\n")
    assert load_guardrail_config(plain).max_services == 2
    nested = tmp_path / "n.yaml"
    nested.write_text("guardrails:\n  max_actions: 9\n")
    assert load_guardrail_config(nested).max_actions == 9
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_services: -3\n")
    with pytest.raises(GuardrailError, match=r"bad\.yaml: guardrails\.max_services: must be"):
        load_guardrail_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("max_services: [\n")
    with pytest.raises(GuardrailError, match="malformed YAML"):
        load_guardrail_config(broken)
    with pytest.raises(GuardrailError, match="file not found"):
        load_guardrail_config(tmp_path / "missing.yaml")
