"""What the impact study checks: each published claim, how its figure is computed from the
paired runs, and the context figures reported beside them. Data only, so the estimator
(claims.py) and the plain-language statements (explain.py) both read it without importing
each other."""

from __future__ import annotations

from dataclasses import dataclass

# Prices for the operating-cost context row (assumptions, not measurements): an on-demand
# pod of ~0.25-0.5 vCPU and 0.5-1 GB; an on-call engineer at ~$90/h fully loaded.
REPLICA_HOUR_USD = 0.05
ENGINEER_MIN_USD = 1.50


@dataclass(frozen=True)
class Claim:
    """One row of the claims table: how its figure is computed and what was claimed."""

    key: str
    label: str
    claimed: str  # as published
    definition: str
    kind: str  # "change": relative change AI vs traditional; "level": the AI's level; "diff"
    lo: float | None = None  # claimed range in the estimate's units (None: context only)
    hi: float | None = None
    better: str = "lower"  # "lower" or "higher"
    role: str = "claim"  # "claim" (with a verdict) or "context"


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "mttr",
        "MTTR",
        "-40 to -60%",
        "restore time per fault that breached an SLO in either mode (0 where a mode kept "
        "the SLO); ratio of pooled sums",
        "change",
        -0.60,
        -0.40,
    ),
    Claim(
        "incident_frequency",
        "incident frequency",
        "-30 to -50%",
        "SLO-violation episodes per run (customer-facing incidents; violating windows "
        "less than 5 min apart are one episode); ratio of pooled sums",
        "change",
        -0.50,
        -0.30,
    ),
    Claim(
        "alert_fatigue",
        "alerts per incident",
        "-60%",
        "alerts / correlated incidents, pooled per mode, as the stacks report them",
        "change",
        -0.60,
        -0.60,
    ),
    Claim(
        "pages_per_incident",
        "pages per incident",
        "-60%",
        "pages to the on-call engineer (full pages and approval requests) / SLO-violation "
        "episodes, pooled per mode: the alert-fatigue claim on what reaches a person",
        "change",
        -0.60,
        -0.60,
    ),
    Claim(
        "efficiency",
        "infrastructure efficiency",
        "+15 to +25%",
        "served (completed) requests per replica-hour, pooled per mode "
        "(replica-hours include failover standbys)",
        "change",
        0.15,
        0.25,
        "higher",
    ),
    Claim(
        "slo_adherence",
        "SLO adherence (AI operations)",
        "92%",
        "share of SLO windows met, mean over the AI runs",
        "level",
        0.92,
        0.92,
        "higher",
    ),
    Claim(
        "cost",
        "cost (infrastructure)",
        "-35%",
        "replica-hours (pods held, standbys included), ratio of pooled sums",
        "change",
        -0.35,
        -0.35,
    ),
    Claim(
        "right_remedy_first",
        "right remedy first (goal)",
        ">= 80%",
        "of the remediable faults a stack acted on, the share whose first action was one that "
        "ends it, aimed where the mitigation oracle (labels.json) says; pooled per mode",
        "level",
        0.80,
        1.0,
        "higher",
    ),
    # context: other readings of the same questions, without verdicts
    Claim(
        "time_to_right_remedy",
        "time to the right remedy",
        "",
        "fault start to the first action that ends it, over the faults where both modes took "
        "one (mean per run, pooled)",
        "change",
        role="context",
    ),
    Claim(
        "right_remedy_ever",
        "remediable faults given their right remedy",
        "",
        "share of the remediable faults that got an ending action at all, AI level",
        "level",
        better="higher",
        role="context",
    ),
    Claim(
        "mttr_stack",
        "MTTR as each stack reports it",
        "",
        "each run's mean over its faults with SLO impact; pairs where both modes have one",
        "change",
        role="context",
    ),
    Claim(
        "detector_incidents",
        "incidents opened by the stack",
        "",
        "correlated alert groups per run (depends on each stack's detectors)",
        "change",
        role="context",
    ),
    Claim(
        "faults_with_slo_impact",
        "faults that breached an SLO",
        "",
        "faults during which an SLO window was violated",
        "change",
        role="context",
    ),
    Claim("slo_violating_min", "SLO-violating minutes", "", "per run", "change", role="context"),
    Claim("alerts", "alerts per run", "", "every alert the stack raised", "change", role="context"),
    Claim(
        "pages",
        "pages to the on-call engineer",
        "",
        "human-facing notifications per run (full pages and approval requests)",
        "change",
        role="context",
    ),
    Claim(
        "alerts_per_fault",
        "alerts per fault",
        "",
        "alerts / faults in runs with faults",
        "change",
        role="context",
    ),
    Claim("mttd", "MTTD", "", "runs where both modes detected a fault", "change", role="context"),
    Claim("mtti", "MTTI", "", "runs where both modes identified a root", "change", role="context"),
    Claim(
        "engineer_min",
        "on-call engineer minutes",
        "",
        "expected minutes of diagnosis and approval work",
        "change",
        role="context",
    ),
    Claim(
        "operating_cost",
        "operating cost (pods + people)",
        "",
        f"replica-hours at ${REPLICA_HOUR_USD}/h + engineer minutes at "
        f"${ENGINEER_MIN_USD}/min (assumed prices)",
        "change",
        role="context",
    ),
    Claim(
        "slo_adherence_diff",
        "SLO adherence, AI - traditional",
        "",
        "difference of mean adherence, in points of share",
        "diff",
        better="higher",
        role="context",
    ),
    Claim(
        "features_lost",
        "features lost to rollbacks of good versions",
        "",
        "per run",
        "change",
        role="context",
    ),
)
CLAIM_KEYS = tuple(c.key for c in CLAIMS if c.role == "claim")
CLAIMS_COLUMNS = (
    "key",
    "role",
    "claim",
    "claimed",
    "definition",
    "traditional",
    "ai",
    "estimate",
    "ci_low",
    "ci_high",
    "pairs",
    "verdict",
    "statement",
)
