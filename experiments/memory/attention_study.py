"""The attention model's RCA AC@1 on Nezha, next to the project's methods.

Pretraining: twin incidents of all five topologies (`experiments/rca/cases.py`, seed 1,
every kind on every topology twice; metrics only). Adaptation: k = 5 incidents per kind of
Nezha 2023-01-29 (seeded draws), fine-tuned. Compared with the same model trained on those
incidents alone (from scratch), the pretrained model with no adaptation, and the
multimodal RCA (`detectors.rca.multimodal`). Scored on 2023-01-30 (held out) and on the
2023-01-29 incidents not drawn.

    python -m experiments.memory.attention_study --nezha ../shared/data/nezha-trainticket
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.memory.fewshot import draw_support
from detectors.memory.signature import prepare_spans
from detectors.rca.multimodal import MultimodalRca
from experiments.memory.attention import Tokens, ac1, incident_tokens, make_model, train
from experiments.rca.cases import KINDS, TOPOLOGIES, generate_cases
from experiments.realbench.nezha import cases as nezha_cases
from twin.telemetry.spans import EPOCH_UNIX_S

PRETRAIN_STEPS = 1500
ADAPT_STEPS = 200
DRAWS = 3


def twin_tokens(per_pair: int = 2, seed: int = 1) -> list[Tokens]:
    from experiments.rca.suite import simulate_case

    out = []
    for spec in generate_cases(len(TOPOLOGIES) * len(KINDS) * per_pair, seed):
        run = simulate_case(spec)
        out.append(incident_tokens(run.table, EPOCH_UNIX_S + spec.start, root=run.root))
    return out


def nezha_tokens(root: Path, day: str) -> tuple[list[Tokens], list[str], float]:
    """Tokens, kinds, and the multimodal RCA's AC@1 on the same cases."""
    toks, kinds, hits = [], [], []
    mm = MultimodalRca()
    for case in nezha_cases(root, (day,)):
        i = case.inputs
        tel = i.telemetry
        tel.spans, tel.normal_spans = prepare_spans(tel.spans), prepare_spans(tel.normal_spans)
        toks.append(incident_tokens(i.table, i.anomaly_time, tel, root=case.answer.root))
        kinds.append(case.answer.kind)
        ranked = mm.rank(i.table, i.anomaly_time, i.graph, telemetry=tel)
        hits.append(bool(ranked) and ranked[0].service == case.answer.root)
    return toks, kinds, float(np.mean(hits))


def run(root: Path, seed: int = 0) -> dict:
    twin = twin_tokens()
    dev, dev_kinds, mm_dev = nezha_tokens(root, "2023-01-29")
    test, _, mm_test = nezha_tokens(root, "2023-01-30")
    pre = train(make_model(seed), twin, PRETRAIN_STEPS, seed)
    rows: dict[str, list[tuple[float, float]]] = {"pretrained, not adapted": []}
    rows["pretrained + adapted (k=5)"] = []
    rows["from scratch (k=5)"] = []
    for d in range(DRAWS):
        drawn = draw_support(dev_kinds, 5, np.random.default_rng([seed, d]))
        support = [dev[i] for i in drawn]
        rest = [dev[i] for i in range(len(dev)) if i not in set(drawn)]
        adapted = train(copy.deepcopy(pre), support, ADAPT_STEPS, seed + d, lr=1e-3)
        scratch = train(make_model(seed + d), support, ADAPT_STEPS, seed + d)
        rows["pretrained, not adapted"].append((ac1(pre, rest), ac1(pre, test)))
        rows["pretrained + adapted (k=5)"].append((ac1(adapted, rest), ac1(adapted, test)))
        rows["from scratch (k=5)"].append((ac1(scratch, rest), ac1(scratch, test)))
    out = {
        name: {
            "dev_rest": float(np.mean([a for a, _ in v])),
            "test": float(np.mean([b for _, b in v])),
        }
        for name, v in rows.items()
    }
    out["multimodal RCA (T10)"] = {"dev_rest": mm_dev, "test": mm_test, "note": "all 28 / 17"}
    out["twin pretraining AC@1 (train set)"] = {"dev_rest": ac1(pre, twin), "test": float("nan")}
    return out


def markdown(res: dict) -> str:
    lines = [
        "| method | Nezha 2023-01-29, not drawn (dev) | 2023-01-30 (held out) |",
        "|---|---|---|",
    ]
    for name, r in res.items():
        cells = ["—" if np.isnan(r[k]) else f"{r[k]:.3f}" for k in ("dev_rest", "test")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nezha", required=True, help="e.g. ../shared/data/nezha-trainticket")
    args = p.parse_args(argv)
    if not (Path(args.nezha) / "rca_data").is_dir():
        p.error(f"--nezha {args.nezha}: not the Nezha Train Ticket folder (no rca_data in it)")
    import torch

    torch.set_num_threads(1)  # tiny matrices: threads cost more than they give
    print(markdown(run(Path(args.nezha))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
