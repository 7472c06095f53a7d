"""The synthetic capacity families on Online Boutique: daily cycles, calendar sales, surges.

Why the scenarios look the way they do (chosen so the study tests what predictive scaling is
for, not tuned to a verdict; the figures are whatever they come out as):

- Topology patch (`study_topology`): the shipped topology gives redis-cart and
  recommendationservice no autoscaler, so any violation they cause is one no policy can
  fix, and it dilutes every comparison. An operator running a sale would add one: both get
  an HPA like the others' (target 0.7 of the CPU request, autoscaling/v2 defaults):
  recommendationservice min 2 / max 10, redis-cart min 1 / max 5. (Scaling redis out
  assumes reads spread over replicas; a real operator might scale it up instead. The twin
  has no vertical scaling, so horizontal is the closest model.) adservice, shipping,
  checkout, payment and email stay unscaled, as shipped. Replica-hours count every
  HPA-managed service, so these two now count for every policy alike.
- Diurnal swing: `daily_amplitude` 0.8 in every family (trough 20 rps, peak 180 rps at
  20:00; an online shop's night is a small fraction of its evening). With the old 0.5 the
  peak (150 rps) kept every HPA at its minimum, so the daily family tested nothing; at 180
  rps frontend and the busiest backends need more than their minimums at the peak and can
  shed replicas at night, which is what predictive vs static is about.
- Calendar sales: one sale a day at the same hour (drawn per seed in 17:00-20:00, the
  evening when shoppers are online), so the forecaster sees the previous day's occurrence
  and learns its lift. Lift 3 for an hour, on an evening base of 1.5-1.8x: 4.5-5.4x base
  load, more than the ~2.9x headroom the HPA keeps (it targets 70% of the request, which
  is half the limit, i.e. 35% of the limit). Ramp 10 s: a sale opens at a set time with a
  push notification, so traffic arrives faster than the HPA can react (metrics averaged
  over ~15 s + a 15 s sync + 3-35 s pod start-up, and scale-up capped at +100%/+4 pods per
  sync). A reactive policy is therefore late by construction; a predictive one need not be.
- Surges: two unannounced flash crowds a day (2.5x for 30 min, 60 s ramp) at random hours;
  nothing declares them, so they test the predictive scaler's reactive path, not its
  forecasts.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from twin.errors import FirebreakError
from twin.scenario.schema import Scenario

FAMILIES = ("daily", "calendar", "surge")
DAY_S = 86_400.0
BASE_RATE = 100.0
"""Online Boutique's nominal load (its topology file's base load, requests/s at frontend)."""

# HPAs added by the study's topology patch (see the module docstring)
EXTRA_HPA = {
    "recommendationservice": {"min_replicas": 2, "max_replicas": 10, "target_cpu": 0.7},
    "redis-cart": {"min_replicas": 1, "max_replicas": 5, "target_cpu": 0.7},
}
DAILY_AMPLITUDE = 0.8
SALE_LIFT = 3.0
SALE_RAMP_S = 10.0
SALE_HOURS = (17.0, 20.0)
SLOS = [{"availability": 0.999, "latency_ms": 500, "percentile": 99}]
TELEMETRY = {"traces": False, "logs": False, "plot": False}


def _topology() -> dict:
    from experiments.detection.suite import load_topology_dict

    return load_topology_dict("online-boutique")


def study_topology() -> dict:
    """Online Boutique with an HPA on redis-cart and recommendationservice (a patch)."""
    topo = copy.deepcopy(_topology())
    for name, hpa in EXTRA_HPA.items():
        svc = topo["services"][name]
        if svc.get("hpa") is None:
            svc["hpa"] = dict(hpa)
            svc["replicas"] = max(int(svc.get("replicas", 1)), hpa["min_replicas"])
    return topo


def build_scenario(family: str, seed: int, days: float = 2.0, tick: float = 10.0) -> Scenario:
    """One scenario of a family; the seed varies noise and (for surges) when crowds strike."""
    if family not in FAMILIES:
        raise FirebreakError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    rng = np.random.default_rng(seed)
    workload: dict = {
        "classes": [{"name": "shop", "entry": "frontend", "rate": BASE_RATE}],
        "daily_amplitude": DAILY_AMPLITUDE,
        "peak_hour": 20.0,
        "noise": 0.05,
    }
    n_days = int(math.ceil(days))
    if family == "calendar":
        hour = float(rng.uniform(*SALE_HOURS))
        workload["calendar"] = [
            {
                "name": f"flash-sale-{d}",
                "kind": "campaign",
                "start": d * DAY_S + hour * 3600.0,
                "duration": 3600.0,
                "lift": SALE_LIFT,
                "ramp_s": SALE_RAMP_S,
            }
            for d in range(n_days)
            if d * DAY_S + hour * 3600.0 + 3600.0 <= days * DAY_S
        ]
    elif family == "surge":
        crowds = []
        for d in range(1, n_days):
            for start_h in (float(rng.uniform(8, 13)), float(rng.uniform(15, 21))):
                start = d * DAY_S + start_h * 3600.0
                crowds.append(
                    {"start": start, "duration": 1800.0, "multiplier": 2.5, "ramp_s": 60.0}
                )
        workload["flash_crowds"] = [c for c in crowds if c["start"] + 1800.0 <= days * DAY_S]
    return Scenario.model_validate(
        {
            "name": f"capacity-{family}",
            "topology": study_topology(),
            "duration": days * DAY_S,
            "tick": tick,
            "seed": seed,
            "workload": workload,
            "slos": SLOS,
            "telemetry": TELEMETRY,
        }
    )
