"""The default RCA: each incident analysed with the most direct evidence it carries.

No single method wins everywhere, and the measurements say why (README, "Root-cause
analysis"): on the twin's metrics the graph walk is best, and on real systems it is not,
because what tells the cause there is not in a metrics table at all (Nezha: only traces
and logs show network, exception and return faults) or needs the symptom to weigh it
(PetShop: the service that can account for the entry's lost seconds). So the default reads
what the incident offers, most direct first:

1. spans or logs → `multimodal` (its metric modality keeps the table's resource signals);
2. a named symptom (`target`, latency or errors) → `impact`, anchored on that symptom;
3. a dependency graph → `randomwalk` over the table's robust deviations;
4. a table alone → `robust`.

Each cause's evidence says which branch ranked it (`by`).
"""

from __future__ import annotations

import networkx as nx
import pandas as pd

from detectors.rca.base import Cause, IncidentTelemetry, RcaMethod, join_normal
from detectors.rca.impact import SYMPTOM_KINDS, ImpactRca
from detectors.rca.multimodal import MultimodalRca
from detectors.rca.randomwalk import RandomWalkRca
from detectors.rca.robust import RobustScoreRca


class AutoRca:
    """The evidence cascade above; window settings pass to whichever branch runs."""

    name = "auto"

    def __init__(self, before_s: float = 1800.0, after_s: float = 300.0) -> None:
        self.before_s = before_s
        self.after_s = after_s

    def branch(self, graph: nx.DiGraph | None, telemetry: IncidentTelemetry | None) -> str:
        """Which method this incident's evidence calls for."""
        t = telemetry or IncidentTelemetry()
        if (t.spans is not None and len(t.spans)) or (t.logs is not None and len(t.logs)):
            return "multimodal"
        if t.target and t.target_kind in SYMPTOM_KINDS:
            return "impact"
        return "randomwalk" if graph is not None else "robust"

    def method(self, branch: str) -> RcaMethod:
        if branch == "multimodal":
            return MultimodalRca()  # its windows were set for its modalities, on real data
        if branch == "impact":
            return ImpactRca(self.before_s, self.after_s)
        if branch == "randomwalk":
            return RandomWalkRca(self.before_s, self.after_s)
        return RobustScoreRca(self.before_s, self.after_s)

    def rank(
        self,
        table: pd.DataFrame,
        anomaly_time: float,
        graph: nx.DiGraph | None = None,
        telemetry: IncidentTelemetry | None = None,
    ) -> list[Cause]:
        branch = self.branch(graph, telemetry)
        method = self.method(branch)
        if branch in ("multimodal", "impact"):
            causes = method.rank(table, anomaly_time, graph, telemetry=telemetry)
        else:
            if telemetry is not None and telemetry.normal is not None:
                table = join_normal(telemetry.normal, table)
            causes = method.rank(table, anomaly_time, graph)
        for cause in causes:
            cause.evidence = {"by": branch, **cause.evidence}
        return causes
