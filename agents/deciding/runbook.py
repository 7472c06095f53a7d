"""Runbooks as YAML policies: conditions on an incident → candidate actions on the twin.

A runbook is what an SRE team already writes down ("memory climbing at one service: restart
half its pods"), made executable and checkable. Rules key on what the remediation layer
can see (the `IncidentView`: signature, signals, detectors, the RCA's top cause and its
confidence), never on ground truth. A rule proposes action *templates*; placeholders name
the target (`$cause`, `$caller`, `$entry`) and `replicas` may be relative (`+2`, `-1`,
`x1.5`), so one rule serves every topology. Which candidate to take, and how much to trust
it, is for `agents.deciding.selection` and `agents.deciding.automation`; an incident no
rule matches gets no candidates, and the caller escalates it.

The file is read with a `yaml.SafeLoader` subclass whose only change is that a signed
integer (`+2`) stays text, so `replicas: +2` means "two more" as written, not "two".
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from agents.contracts import SYMPTOMS, Candidate, IncidentView, Level
from twin.control.actions import ACTIONS, Action, ActionError, action_from_dict
from twin.errors import FirebreakError
from twin.scenario.loader import format_location
from twin.scenario.topology import Frozen
from twin.strict import StrictLoader

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK_DIR = ROOT / "runbooks"
DEFAULT_RUNBOOK = RUNBOOK_DIR / "default.yaml"

PLACEHOLDERS = ("$cause", "$caller", "$entry")
_RELATIVE = re.compile(r"^(?:(?P<delta>[+-]\d+)|x(?P<factor>\d+(?:\.\d+)?))$")
_DUMMY_SERVICE = "<service>"


class RunbookError(FirebreakError):
    """A runbook file is missing or malformed, or a rule cannot be instantiated.

    The message names the file, the rule and the field: `default.yaml: rules[2].actions[0]
    .kind: unknown action 'restat'`.
    """


# --- signatures ---------------------------------------------------------------------------


def symptoms_of(signature: str) -> frozenset[str]:
    """The symptom set of a signature (`"latency+errors"` → {latency, errors}); order-free."""
    return frozenset(part.strip() for part in signature.split("+") if part.strip())


def canonical_signature(signature: str) -> str:
    """One spelling per symptom set (SYMPTOMS order), so statistics pool across spellings."""
    parts = symptoms_of(signature)
    known = [s for s in SYMPTOMS if s in parts]
    unknown = sorted(parts - set(SYMPTOMS))
    return "+".join(known + unknown) or "unknown"


def is_known_signature(signature: str) -> bool:
    """A signature made only of known symptom families; anything else no rule may match."""
    parts = symptoms_of(signature)
    return bool(parts) and parts <= set(SYMPTOMS)


def _check_signature(value: str) -> str:
    if not is_known_signature(value):
        bad = sorted(symptoms_of(value) - set(SYMPTOMS)) or [value]
        raise ValueError(f"unknown symptom {bad[0]!r} (symptoms: {', '.join(SYMPTOMS)})")
    return canonical_signature(value)


def _check_symptom(value: str) -> str:
    if value not in SYMPTOMS:
        raise ValueError(f"unknown symptom {value!r} (symptoms: {', '.join(SYMPTOMS)})")
    return value


def _as_list(value: Any) -> Any:
    """Let a one-item condition be written as a bare string."""
    return [value] if isinstance(value, str) else value


Signature = Annotated[str, AfterValidator(_check_signature)]
Symptom = Annotated[str, AfterValidator(_check_symptom)]
Patterns = Annotated[tuple[str, ...], BeforeValidator(_as_list)]


# --- schema -------------------------------------------------------------------------------


class AnyAll(Frozen):
    """Present-or-not conditions on a set of names; patterns are shell globs (`*p99*`)."""

    any: Patterns = ()
    all: Patterns = ()
    none: Patterns = ()

    def matches(self, present: Iterable[str]) -> bool:
        names = tuple(present)

        def hit(pattern: str) -> bool:
            return any(fnmatchcase(name, pattern) for name in names)

        return (
            (not self.any or any(hit(p) for p in self.any))
            and all(hit(p) for p in self.all)
            and not any(hit(p) for p in self.none)
        )


class SymptomSet(AnyAll):
    """Like AnyAll, over the symptom families of the signature (checked against SYMPTOMS)."""

    any: Annotated[tuple[Symptom, ...], BeforeValidator(_as_list)] = ()
    all: Annotated[tuple[Symptom, ...], BeforeValidator(_as_list)] = ()
    none: Annotated[tuple[Symptom, ...], BeforeValidator(_as_list)] = ()


class When(Frozen):
    """Conditions on the IncidentView; all given ones must hold (an empty `when` matches
    every incident with a known signature)."""

    signature: Annotated[tuple[Signature, ...], BeforeValidator(_as_list)] = Field(
        default=(), description="exact symptom sets, any of them (order-free)"
    )
    symptoms: SymptomSet = SymptomSet()
    signals: AnyAll = AnyAll()
    detectors: AnyAll = AnyAll()
    min_cause_confidence: float = Field(default=0.0, ge=0, le=1, description="inclusive")
    max_cause_confidence: float = Field(default=1.0, ge=0, le=1, description="inclusive")
    cause_in: Patterns = ()
    cause_not_in: Patterns = ()
    cause_kind: Annotated[
        tuple[Literal["service", "node", "zone"], ...], BeforeValidator(_as_list)
    ] = Field(default=(), description="what the top cause is: service, node or zone (any of)")

    @model_validator(mode="after")
    def _confidence_order(self) -> When:
        if self.min_cause_confidence > self.max_cause_confidence:
            raise ValueError(
                f"min_cause_confidence {self.min_cause_confidence:g} is above "
                f"max_cause_confidence {self.max_cause_confidence:g}"
            )
        return self

    def matches(self, view: IncidentView) -> bool:
        """Whether this incident satisfies every condition (unknown signatures never do)."""
        if not is_known_signature(view.signature):
            return False
        if self.signature and canonical_signature(view.signature) not in self.signature:
            return False
        if not self.symptoms.matches(symptoms_of(view.signature)):
            return False
        if not (self.signals.matches(view.signals) and self.detectors.matches(view.detectors)):
            return False
        if not self.min_cause_confidence <= view.cause_confidence <= self.max_cause_confidence:
            return False
        if self.cause_kind and view.cause_kind not in self.cause_kind:
            return False
        if self.cause_in or self.cause_not_in:
            cause = view.top_cause
            if cause is None:
                return False
            if self.cause_in and not any(fnmatchcase(cause, p) for p in self.cause_in):
                return False
            if any(fnmatchcase(cause, p) for p in self.cause_not_in):
                return False
        return True


def _check_param(value: Any) -> Any:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError("expected a single value (text, number, true/false or null)")
    return value


def _non_empty(value: tuple) -> tuple:
    if not value:
        raise ValueError("needs at least one entry")
    return value


Param = Annotated[Any, AfterValidator(_check_param)]


class ActionTemplate(Frozen):
    """An action with placeholders: written flat in YAML (`{kind: rollback, service: $cause}`).

    `prior` (optional, in (0, 1)): the runbook author's belief that this action resolves the
    incidents its rule matches, used as the mean of the Beta prior of its success (two
    pseudo-outcomes) until outcomes are recorded; what a team knows before it has data.
    """

    kind: str
    params: dict[str, Param] = Field(default_factory=dict)
    prior: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "params" not in data:
            rest = {
                k: int(v) if isinstance(v, _Signed) and k != "replicas" else v
                for k, v in data.items()
                if k not in ("kind", "prior")
            }
            out: dict[str, Any] = {"params": rest}
            if "kind" in data:
                out["kind"] = data["kind"]
            if "prior" in data:
                out["prior"] = data["prior"]
            return out
        return data

    def placeholders(self) -> set[str]:
        return {v for v in self.params.values() if isinstance(v, str) and v in PLACEHOLDERS}

    def instantiate(
        self, bindings: Mapping[str, str], replicas: Mapping[str, int]
    ) -> Action | None:
        """The concrete action for these placeholder values; None if one is unbound."""
        params: dict[str, Any] = {}
        for key, value in self.params.items():
            if isinstance(value, str) and value in PLACEHOLDERS:
                if value not in bindings:
                    return None
                value = bindings[value]
            params[key] = value
        if isinstance(params.get("replicas"), str):
            service = params.get("service")
            if not isinstance(service, str) or service not in replicas:
                raise RunbookError(
                    f"{self.kind}: relative replicas {self.params['replicas']!r} need the "
                    f"current replica count of {service!r}, which the caller did not give"
                )
            params["replicas"] = resolve_replicas(str(params["replicas"]), replicas[service])
        return action_from_dict({"action": self.kind, **params})


class Rule(Frozen):
    """One runbook entry: when it applies, what it proposes, how far it may be automated."""

    name: str = Field(min_length=1)
    description: str = ""
    when: When = When()
    actions: Annotated[tuple[ActionTemplate, ...], AfterValidator(_non_empty)]
    dry_run: bool = Field(default=False, description="may selection try it in a what-if fork")
    max_level: Level = Field(
        default="auto", description="automation ceiling: auto, approval or escalate"
    )
    stop: bool = Field(default=False, description="when it matches, consult no later rule")


class Runbook(Frozen):
    """An ordered list of rules; every matching rule contributes candidates, in file order."""

    version: Literal[1] = 1
    description: str = ""
    rules: Annotated[tuple[Rule, ...], AfterValidator(_non_empty)]

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise RunbookError(f"no rule named {name!r} (rules: {', '.join(self.rule_names())})")

    def rule_names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)

    def dry_run_rules(self) -> frozenset[str]:
        """Names of the rules whose candidates may be tried in a what-if fork."""
        return frozenset(rule.name for rule in self.rules if rule.dry_run)

    def match(self, view: IncidentView) -> list[Rule]:
        """The rules that apply, in file order, up to and including the first `stop` one."""
        out = []
        for rule in self.rules:
            if rule.when.matches(view):
                out.append(rule)
                if rule.stop:
                    break
        return out

    def candidates(self, view: IncidentView, replicas: Mapping[str, int]) -> list[Candidate]:
        """Concrete actions from every matching rule; [] means escalate (nothing applies).

        An action whose placeholder cannot be bound (no top cause, no known caller or entry)
        is left out; the same action from a later rule is left out too (first rule wins).
        """
        out: list[Candidate] = []
        seen: set[Action] = set()
        for rule in self.match(view):
            for template in rule.actions:
                for bindings in _bindings(view, template.placeholders()):
                    action = template.instantiate(bindings, replicas)
                    if action is not None and action not in seen:
                        seen.add(action)
                        out.append(Candidate(action=action, rule=rule.name, prior=template.prior))
        return out


# --- placeholders and relative replicas ---------------------------------------------------


def resolve_replicas(spec: str, current: int) -> int:
    """`+2`/`-1` add to the current count, `x1.5` multiplies (rounded up); never below 1.

    A relative rule must not scale a service to zero: that is an outage, not a remedy.
    """
    match = _RELATIVE.match(spec.strip())
    if match is None:
        raise RunbookError(f"replicas: expected an integer, '+N', '-N' or 'xF', got {spec!r}")
    if match["delta"] is not None:
        target = current + int(match["delta"])
    else:
        target = math.ceil(current * float(match["factor"]) - 1e-9)
    return max(1, target)


def callers_of(view: IncidentView, service: str) -> list[str]:
    """Services that call `service`, as the operator recorded them in the view's evidence.

    Read from `evidence["callers"]` (service → callers) or `evidence["edges"]` ([caller,
    callee] pairs). Callers that are themselves part of the incident come first. Absent
    evidence gives no callers: rules needing `$caller` then propose nothing.
    """
    found: list[str] = []
    callers = view.evidence.get("callers")
    if isinstance(callers, Mapping):
        found += [str(c) for c in callers.get(service) or ()]
    edges = view.evidence.get("edges")
    if isinstance(edges, Sequence) and not isinstance(edges, str):
        for edge in edges:
            if isinstance(edge, Sequence) and len(edge) == 2 and edge[1] == service:
                found.append(str(edge[0]))
    unique = list(dict.fromkeys(c for c in found if c != service))
    involved = set(view.services)
    return [c for c in unique if c in involved] + [c for c in unique if c not in involved]


def entries_of(view: IncidentView) -> list[str]:
    """Entry services (where user traffic comes in) from `evidence["entries"]`, if recorded."""
    entries = view.evidence.get("entries")
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, Sequence):
        return list(dict.fromkeys(str(e) for e in entries))
    return []


def _bindings(view: IncidentView, needed: set[str]) -> list[dict[str, str]]:
    """Every combination of placeholder values the template needs (one per caller/entry)."""
    out: list[dict[str, str]] = [{}]
    if "$cause" in needed:
        if view.top_cause is None:
            return []
        out = [{"$cause": view.top_cause}]
    for name, values in (
        ("$caller", callers_of(view, view.top_cause) if view.top_cause else []),
        ("$entry", entries_of(view)),
    ):
        if name in needed:
            out = [{**b, name: v} for b in out for v in values]
    return out


# --- loading ------------------------------------------------------------------------------


class _Loader(StrictLoader):
    """SafeLoader, except that a signed integer (`+2`, `-1`) stays a string.

    Relative replica counts are written `replicas: +2`; plain YAML would read that as 2.
    """


class _Signed(str):
    """A signed integer as written; templates turn it back into an int except for replicas."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | str:
    text = str(loader.construct_scalar(node)).strip()
    if text.startswith(("+", "-")):
        return _Signed(text)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


_NO_VALUE = ("value_error", "missing", "extra_forbidden")


def _message(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if p != "params"]
        msg = str(err["msg"]).removeprefix("Value error, ")
        value = err.get("input")
        scalar = not isinstance(value, Mapping | list | tuple)
        shown = f" (got {value!r})" if scalar and err["type"] not in _NO_VALUE else ""
        lines.append(f"{source}: {format_location(loc)}: {msg}{shown}")
    return "\n".join(lines)


def check_runbook(runbook: Runbook, source: str) -> None:
    """What the schema cannot say: unique names, known action kinds, valid parameters."""
    seen: dict[str, int] = {}
    for i, rule in enumerate(runbook.rules):
        if rule.name in seen:
            raise RunbookError(
                f"{source}: rules[{i}].name: duplicate rule {rule.name!r} "
                f"(also rules[{seen[rule.name]}])"
            )
        seen[rule.name] = i
        for j, template in enumerate(rule.actions):
            _check_template(template, f"{source}: rules[{i}].actions[{j}]")


def _check_template(template: ActionTemplate, where: str) -> None:
    if template.kind not in ACTIONS:
        raise RunbookError(
            f"{where}.kind: unknown action {template.kind!r} "
            f"(actions: {', '.join(sorted(ACTIONS))})"
        )
    known = [f.name for f in dataclasses.fields(ACTIONS[template.kind])]
    for key, value in template.params.items():
        if key not in known:
            raise RunbookError(
                f"{where}.{key}: unknown parameter {key!r} for {template.kind} "
                f"(parameters: {', '.join(known) or 'none'})"
            )
        if isinstance(value, str) and value.startswith("$") and value not in PLACEHOLDERS:
            raise RunbookError(
                f"{where}.{key}: unknown placeholder {value!r} (placeholders: "
                f"{', '.join(PLACEHOLDERS)})"
            )
    replicas = template.params.get("replicas")
    if isinstance(replicas, str):
        if template.params.get("service") is None:
            raise RunbookError(f"{where}.replicas: relative replicas need a 'service' to scale")
        try:
            resolve_replicas(replicas, 1)
        except RunbookError as exc:
            raise RunbookError(f"{where}.{exc}") from None
    # build it once with stand-in targets, so a bad parameter fails at load, not mid-incident
    bindings = dict.fromkeys(PLACEHOLDERS, _DUMMY_SERVICE)
    try:
        template.instantiate(bindings, {_DUMMY_SERVICE: 1})
    except ActionError as exc:
        raise RunbookError(f"{where}: {exc}") from None


def runbook_from_mapping(data: Any, source: str = "<runbook>") -> Runbook:
    """Validate plain data (as read from YAML) into a checked Runbook."""
    if not isinstance(data, Mapping):
        raise RunbookError(
            f"{source}: expected a mapping with 'rules' at the top level, got {type(data).__name__}"
        )
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        raise RunbookError(_message(source, exc)) from None
    check_runbook(runbook, source)
    return runbook


def load_runbook(path: str | Path | None = None) -> Runbook:
    """Read a runbook file: a path, a name in `runbooks/` (`"default"`), or the default."""
    if path is None:
        path = DEFAULT_RUNBOOK
    path = Path(path)
    if not path.exists() and path.parent == Path(".") and not path.suffix:
        path = RUNBOOK_DIR / f"{path}.yaml"
    source = str(path)
    if not path.is_file():
        raise RunbookError(f"{source}: file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RunbookError(f"{source}: malformed YAML{where}: {problem}") from None
    except UnicodeDecodeError as exc:
        raise RunbookError(f"{source}: not a UTF-8 text file ({exc.reason})") from None
    return runbook_from_mapping(data, source)
