"""Log anomalies from the text alone: mined templates, their novelty and their bursts.

A real log line carries a time, a service, a level and a message; the template it was
printed from is unknown. `TemplateMiner` recovers templates Drain-style (He et al., ICWS
2017): variable-looking tokens are masked, lines are routed through a fixed-depth tree by
level, length and leading tokens, and joined to the most similar template in the leaf (the
positions where they differ become wildcards), or start a new one.

`LogDetector` learns per service which templates occur and at what rate (`fit` on a normal
stretch of records), then streams records in time order and emits
- `logs.novelty`: a WARN/ERROR template the service never printed in training (once per
  service and template; INFO templates are learned silently, a new INFO line is weak evidence);
- `logs.burst`: at the close of each window, a count of a service's WARN/ERROR lines or of one
  template far above its learned rate (Poisson tail below `alpha`, at least `min_count`
  lines and `min_ratio` times the expected count, so traffic growth alone does not page).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detectors.anomaly.windows import TumblingWindows
from detectors.base import Alert

WILDCARD = "<*>"
ALERT_LEVELS = ("WARN", "ERROR")
_LEVEL_ALIASES = {"WARNING": "WARN", "FATAL": "ERROR", "CRITICAL": "ERROR"}
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_WORD = re.compile(r"[A-Za-z0-9_]+")
_DIGIT = re.compile(r"\d")


def _mask_run(match: re.Match[str]) -> str:
    return WILDCARD if _DIGIT.search(match.group()) else match.group()


def tokenize(message: str) -> list[str]:
    """Whitespace tokens with numbers, hex and digit-bearing ids masked as wildcards."""
    out = []
    for token in message.split():
        token = _WORD.sub(_mask_run, _HEX.sub(WILDCARD, token))
        out.append(WILDCARD if token.strip("<*>") == "" else token)
    return out


@dataclass
class Template:
    """One mined template: its tokens (wildcards where lines differ) and how often it matched."""

    id: int
    tokens: list[str]
    count: int = 0

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    templates: list[Template] = field(default_factory=list)


class TemplateMiner:
    """Drain-style online template miner (fixed-depth tree, similarity threshold)."""

    def __init__(self, depth: int = 4, similarity: float = 0.5, max_children: int = 100) -> None:
        self.depth = depth
        self.similarity = similarity
        self.max_children = max_children
        self.root = _Node()
        self.templates: list[Template] = []

    def _leaf(self, level: str, tokens: list[str]) -> _Node:
        node = self.root.children.setdefault(f"{level}/{len(tokens)}", _Node())
        for token in tokens[: max(0, self.depth - 2)]:
            key = WILDCARD if WILDCARD in token else token
            if key not in node.children and len(node.children) >= self.max_children:
                key = WILDCARD
            node = node.children.setdefault(key, _Node())
        return node

    @staticmethod
    def _score(template: list[str], tokens: list[str]) -> float:
        same = sum(a == b for a, b in zip(template, tokens, strict=True) if a != WILDCARD)
        return same / len(tokens) if tokens else 1.0

    def add(self, message: str, level: str = "") -> Template:
        """The template of a line, creating or generalising one as needed."""
        tokens = tokenize(message)
        leaf = self._leaf(level, tokens)
        best, best_score = None, -1.0
        for template in leaf.templates:
            score = self._score(template.tokens, tokens)
            if score > best_score:
                best, best_score = template, score
        if best is None or best_score < self.similarity:
            best = Template(len(self.templates), tokens)
            leaf.templates.append(best)
            self.templates.append(best)
        else:
            best.tokens = [
                a if a == b else WILDCARD for a, b in zip(best.tokens, tokens, strict=True)
            ]
        best.count += 1
        return best


def poisson_tail(k: int, lam: float) -> float:
    """P(N ≥ k) for N ~ Poisson(lam), summed in log space (exact enough for tiny tails)."""
    if k <= 0:
        return 1.0
    if lam <= 0.0:
        return 0.0
    if k <= lam:  # at least about a half: never a burst, and the sum below would overflow
        return 1.0
    log_term = -lam + k * math.log(lam) - math.lgamma(k + 1)
    total, term, j = 0.0, 1.0, k
    while term > 1e-12 * total or total == 0.0:  # terms shrink once j > lam
        total += term
        j += 1
        term *= lam / j
        if j > k + 10_000:
            break
    return min(1.0, math.exp(log_term) * total)


def record_time(record: Mapping[str, Any]) -> float:
    """Seconds: the record's `t` when present, else its ISO 8601 `time` as unix seconds."""
    if "t" in record:
        return float(record["t"])
    return datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()


def _level(record: Mapping[str, Any]) -> str:
    level = str(record.get("level", "INFO")).upper()
    return _LEVEL_ALIASES.get(level, level)


class LogDetector(TumblingWindows):
    """Template novelty and Poisson bursts per service over a time-ordered log stream."""

    def __init__(
        self,
        window_s: float = 60.0,
        alpha: float = 1e-6,
        min_count: int = 5,
        min_ratio: float = 3.0,
        adapt: float = 0.02,
        similarity: float = 0.5,
    ) -> None:
        self.window_s = window_s
        self.alpha = alpha
        self.min_count = min_count
        self.min_ratio = min_ratio
        self.adapt = adapt
        self.similarity = similarity
        self.miner = TemplateMiner(similarity=similarity)
        self.known: set[tuple[str, int]] = set()
        self.rates: dict[tuple[str, str], float] = {}  # expected count per window
        self.floor_rate = 0.0
        self.window_start: float | None = None
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.names: dict[str, tuple[str, str]] = {}  # burst key → (signal, level)

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("window_s", "alpha", "min_count", "min_ratio",
                                              "adapt", "similarity")}  # fmt: skip

    def _keys(self, service: str, level: str, template: Template) -> list[tuple[str, str]]:
        keys = [(service, f"t{template.id}")]
        self.names.setdefault(keys[0][1], (f"log:{template.text[:60]}", level))
        if level in ALERT_LEVELS:
            keys.append((service, f"level:{level}"))
            self.names.setdefault(keys[1][1], (f"log_level:{level}", level))
        return keys

    def fit(self, records: Iterable[Mapping[str, Any]]) -> LogDetector:
        """Learn templates and per-window rates from normal records (time-ordered)."""
        counts: dict[tuple[str, str], int] = defaultdict(int)
        first = last = None
        for rec in records:
            t = record_time(rec)
            first = t if first is None else first
            last = t
            level, service = _level(rec), str(rec["service"])
            template = self.miner.add(str(rec["message"]), level)
            self.known.add((service, template.id))
            for key in self._keys(service, level, template):
                counts[key] += 1
        if first is None:
            raise ValueError("fit needs at least one log record")
        windows = max(1.0, (last - first) / self.window_s)
        self.rates = {key: n / windows for key, n in counts.items()}
        self.floor_rate = 0.5 / windows  # a key never seen: at most half a line per stretch
        return self

    def update(self, record: Mapping[str, Any]) -> list[Alert]:
        """Process one record; returns novelty alerts and bursts of windows it closes."""
        t = record_time(record)
        alerts = self._advance(t)
        level, service = _level(record), str(record["service"])
        template = self.miner.add(str(record["message"]), level)
        if (service, template.id) not in self.known:
            self.known.add((service, template.id))
            if level in ALERT_LEVELS:
                sev = "critical" if level == "ERROR" else "warning"
                alerts.append(
                    Alert(t, service, f"log:{template.text[:60]}", 1.0, sev, "logs.novelty")
                )
        for key in self._keys(service, level, template):
            self.counts[key] += 1
        return alerts

    def _close(self) -> list[Alert]:
        """Test every key counted in the window; adapt the rates of quiet keys."""
        assert self.window_start is not None
        end = self.window_start + self.window_s
        alerts = []
        log_alpha = -math.log10(self.alpha)
        for key, k in sorted(self.counts.items()):
            lam = max(self.rates.get(key, 0.0), self.floor_rate)
            p = poisson_tail(k, lam)
            burst = p < self.alpha and k >= self.min_count and k >= self.min_ratio * lam
            if burst:
                score = -math.log10(max(p, 1e-300)) / log_alpha
                signal, level = self.names[key[1]]
                sev = "critical" if level == "ERROR" else "warning"
                alerts.append(Alert(end, key[0], signal, score, sev, "logs.burst"))
            elif self.adapt > 0.0:
                self.rates[key] = lam + self.adapt * (k - lam)
        if self.adapt > 0.0:  # keys silent in this window decay towards zero too
            for key in self.rates.keys() - self.counts.keys():
                self.rates[key] *= 1.0 - self.adapt
        self.counts.clear()
        self.window_start = end
        return alerts

    def flush(self, until: float | None = None) -> list[Alert]:
        """Close the open window (and any empty ones up to `until`)."""
        if self.window_start is None:
            return []
        alerts = self._advance(until) if until is not None else []
        return alerts + (self._close() if self.counts else [])

    def process(self, records: Iterable[Mapping[str, Any]]) -> list[Alert]:
        """All alerts of a time-ordered stream, the last window flushed."""
        alerts: list[Alert] = []
        for rec in records:
            alerts.extend(self.update(rec))
        return alerts + self.flush()
