"""Names as real systems write them, mapped to services.

- Pods: a Deployment's pod is `<deployment>-<pod-template-hash>-<suffix>` and both generated
  parts use Kubernetes' "safe" alphabet (no vowels, no 0, 1, 3), so a name part such as
  `service` or `cache` can never be mistaken for one: `ts-contacts-service-866bd68c97-xcqfx`
  → `ts-contacts-service`. A StatefulSet's pod ends in its ordinal (`redis-0` → `redis`).
- Wide-table columns `<service>_<metric>`: the metric may contain `_` (`carts_lat_50`). With
  known services (a topology, `--services`) the longest known prefix wins; without, the
  service is the text before the first `_`, RCAEval's own convention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_DEPLOYMENT_POD = re.compile(rf"^(?P<name>.+?)-{_SAFE}{{5,10}}-{_SAFE}{{5}}$")
_STATEFUL_POD = re.compile(r"^(?P<name>.+?)-\d{1,3}$")


def service_of_pod(pod: str) -> str:
    """The workload a pod belongs to (the pod name itself when it has no generated part)."""
    text = str(pod).strip()
    for pattern in (_DEPLOYMENT_POD, _STATEFUL_POD):
        m = pattern.match(text)
        if m:
            return m.group("name")
    return text


def canonical_metric(metric: str) -> str:
    """A metric name without `_`, so `<service>_<metric>` splits at its last underscore."""
    return str(metric).replace("_", "-")


def split_column(column: str, known: Iterable[str] | None = None) -> tuple[str, str] | None:
    """(service, metric) of a `<service>_<metric>` column, None when it names no service."""
    text = str(column)
    if known:
        matches = [s for s in known if text.startswith(f"{s}_") and len(text) > len(s) + 1]
        if matches:
            service = max(matches, key=len)
            return service, text[len(service) + 1 :]
        normalised = {s.replace("_", "-"): s for s in known}
        head, sep, rest = text.partition("_")
        if sep and head in normalised:
            return head, rest
    head, sep, rest = text.partition("_")
    if sep and head and rest:
        return head, rest
    return None


def match_service(name: str, known: Iterable[str]) -> str | None:
    """A topology's service for a name seen in telemetry (exact, `_`/`-` folded, or a pod)."""
    known = list(known)
    if name in known:
        return name
    folded = {k.replace("_", "-").lower(): k for k in known}
    for candidate in (name, service_of_pod(name)):
        hit = folded.get(candidate.replace("_", "-").lower())
        if hit is not None:
            return hit
    return None
