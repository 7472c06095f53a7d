"""A small multimodal attention model for root-cause ranking, pretrained on twin incidents
and adapted few-shot to Nezha: measured against the project's RCA methods, kept only if it
beats them (it does not; see the README's incident-memory section).

Tokens: one per (service, modality) present: metrics (the service's own signals' rise and
fall per signal kind), traces (own-operation, database and call-edge latency shifts), logs
(ERROR/WARN templates appearing, INFO templates vanishing). Each modality has its own input
projection and a learned modality embedding; a two-layer transformer encoder attends
across all tokens of the incident (every service, every modality); a service's score is
the mean of its tokens' outputs, and the loss is the cross-entropy of the softmax over
services against the root. Seeded (torch's generator forked, no global state leaks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from detectors.ingest.kinds import KINDS
from detectors.memory.signature import LOG_SLACK_S, metric_shifts
from detectors.rca.base import IncidentTelemetry
from detectors.rca.log_events import EventSettings, shifts, span_events
from detectors.rca.multimodal import MultimodalRca
from detectors.rca.trace_latency import family_scores

MODALITY_DIMS = {"metrics": 2 * len(KINDS), "traces": 3, "logs": 2}


@dataclass
class Tokens:
    """One incident: services, per-modality feature rows, and the root's index (or -1)."""

    services: list[str]
    rows: dict[str, np.ndarray]  # modality → services × dims (NaN rows: absent)
    root: int = -1


def _log1p(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(np.nan_to_num(x), 0.0, None))


def incident_tokens(
    table: pd.DataFrame | None,
    at: float,
    telemetry: IncidentTelemetry | None = None,
    root: str | None = None,
    before_s: float = 600.0,
    after_s: float = 180.0,
) -> Tokens:
    """The (service, modality) features of one incident, from telemetry only."""
    t = telemetry or IncidentTelemetry()
    per: dict[str, pd.DataFrame] = {}
    if table is not None and len(table):
        sh = metric_shifts(table, at, before_s, after_s)
        sh = sh[~sh["host"]]
        if len(sh):
            up = sh.pivot_table(index="service", columns="kind", values="up", aggfunc="max")
            down = sh.pivot_table(index="service", columns="kind", values="down", aggfunc="max")
            up, down = up.reindex(columns=KINDS), down.reindex(columns=KINDS)
            per["metrics"] = pd.concat([up.add_prefix("up_"), down.add_prefix("down_")], axis=1)
    rca = MultimodalRca(before_s, after_s, log_slack_s=LOG_SLACK_S)
    win, base = rca._spans(t, at)
    if win is not None:
        per["traces"] = family_scores(win, base)[["own", "db", "edge"]]
        if t.logs is not None and len(t.logs):
            logs_in, base_logs = rca._logs(t, at)
            d = shifts(
                span_events(win, logs_in),
                span_events(base, base_logs),
                EventSettings(new_info_weight=1.0),
            )
            if len(d):
                bad = d["event"].astype(str).str.startswith(("ERROR", "WARN", "FATAL"))
                up = d["direction"] == "+"
                d = d.assign(err=np.where(bad & up, d["score"], 0.0))
                d = d.assign(info=np.where(~bad & ~up, d["score"], 0.0))
                per["logs"] = d.groupby("service")[["err", "info"]].max() / 2.0
    services = sorted(set().union(*(set(map(str, f.index)) for f in per.values())) if per else [])
    rows = {}
    for m, frame in per.items():
        x = frame.reindex(services).to_numpy(float)
        present = ~np.isnan(x).all(axis=1)
        vals = _log1p(x) if m != "logs" else np.nan_to_num(x)
        rows[m] = np.where(present[:, None], vals, np.nan)
    idx = services.index(root) if root is not None and root in services else -1
    return Tokens(services, rows, idx)


class RootAttention(nn.Module):
    """Attention across every (service, modality) token; a score per service."""

    def __init__(self, d: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.inputs = nn.ModuleDict({m: nn.Linear(k, d) for m, k in MODALITY_DIMS.items()})
        self.modality = nn.Embedding(len(MODALITY_DIMS), d)
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, 1)

    def service_scores(self, inc: Tokens) -> torch.Tensor:
        """Scores of the incident's services (−inf for a service with no token)."""
        embs, owners = [], []
        for m, x in inc.rows.items():
            keep = ~np.isnan(x).any(axis=1)
            if not keep.any():
                continue
            j = list(MODALITY_DIMS).index(m)
            h = self.inputs[m](torch.as_tensor(x[keep], dtype=torch.float32))
            embs.append(h + self.modality.weight[j])
            owners.append(torch.as_tensor(np.flatnonzero(keep)))
        n = len(inc.services)
        if not embs:
            return torch.full((n,), float("-inf"))
        h = self.encoder(torch.cat(embs)[None])[0]
        tok = self.out(h).squeeze(-1)
        owner = torch.cat(owners)
        total = torch.zeros(n).index_add(0, owner, tok)
        count = torch.zeros(n).index_add(0, owner, torch.ones_like(tok))
        return torch.where(count > 0, total / count.clamp(min=1), torch.tensor(float("-inf")))


def train(
    model: RootAttention, incidents: Sequence[Tokens], steps: int, seed: int, lr: float = 3e-3
) -> RootAttention:
    """Cross-entropy of the root over services, one incident per step in seeded order."""
    usable = [i for i in incidents if i.root >= 0]
    if not usable:
        return model
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        inc = usable[int(rng.integers(len(usable)))]
        scores = model.service_scores(inc)
        loss = nn.functional.cross_entropy(scores[None], torch.tensor([inc.root]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def make_model(seed: int) -> RootAttention:
    """A freshly initialised model; the global torch generator is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RootAttention()


def ac1(model: RootAttention, incidents: Sequence[Tokens]) -> float:
    """Share of incidents whose root the model ranks first (ties: first by name)."""
    model.eval()
    hits = []
    with torch.no_grad():
        for inc in incidents:
            s = model.service_scores(inc).numpy()
            hits.append(inc.root >= 0 and int(np.argmax(s)) == inc.root)
    return float(np.mean(hits)) if hits else float("nan")
