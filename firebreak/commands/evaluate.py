"""`firebreak evaluate`: a trained remediation policy against the runbook agent, do-nothing
and random, on held-out seeds and on a topology it never saw."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def _fmt(entry: dict, metric: str, digits: int = 0) -> str:
    m, (lo, hi) = entry[metric], entry[f"{metric}_ci"]
    if m != m:  # NaN: no episode to average
        return "n/a"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _check_spaces(policy: str, model, env) -> None:
    """A policy trained on another version of the env (other observation or action sizes)
    is refused by name, not left to fail inside stable-baselines3."""
    from twin.errors import FirebreakError

    for name in ("observation_space", "action_space"):
        mine, theirs = getattr(model, name, None), getattr(env, name)
        differs = mine is not None and mine.shape != theirs.shape
        if name == "action_space":
            differs = differs or getattr(mine, "n", None) != getattr(theirs, "n", None)
        if differs:
            raise FirebreakError(
                f"{policy}: policy.json: {name}: the policy was trained for {mine}, this "
                f"env has {theirs} (retrain it on the current env)"
            )


def _share(entry: dict) -> str:
    """Right remedy first as a percentage with its interval and the episodes behind it."""
    m, (lo, hi) = entry["right_remedy_first"], entry["right_remedy_first_ci"]
    if m != m:
        return "n/a (0)"
    return f"{m:.0%} [{max(lo, 0):.0%}, {min(hi, 1):.0%}] ({entry['responded']})"


def cmd_evaluate(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from tqdm import tqdm

    import agents.rl
    from agents.rl.evaluation import (
        eval_seeds,
        evaluate_policies,
        paired_mttr_difference,
        plot_summary,
        summarise,
    )
    from agents.rl.policies import DoNothingPolicy, RandomPolicy, RunbookPolicy, TriagePolicy
    from agents.rl.policy_files import load_policy
    from twin.envs import TOPOLOGIES, ObservationLayout
    from twin.errors import FirebreakError

    if args.episodes < 2:
        raise FirebreakError(
            f"--episodes: need at least 2 for a confidence interval, got {args.episodes}"
        )
    model, settings = load_policy(args.policy, trust_pickle=args.trust_pickle)
    env_id = settings["env_id"]
    if env_id != agents.rl.REMEDIATION_ID:
        raise FirebreakError(
            f"{args.policy}: evaluate compares remediation policies; this one was trained on "
            f"{env_id}"
        )
    env_settings = settings["env_settings"]
    kwargs = dict(settings.get("env_kwargs") or {})
    layout = ObservationLayout(env_settings["observation"], int(env_settings["top_k"]), None)
    suites: dict[str, dict] = {"held-out seeds": kwargs}
    unseen = args.unseen_topology
    if unseen:
        if unseen not in TOPOLOGIES:
            raise FirebreakError(
                f"--unseen-topology: unknown {unseen!r} (topologies: {', '.join(TOPOLOGIES)})"
            )
        if unseen in env_settings["topologies"]:
            raise FirebreakError(
                f"--unseen-topology: the policy was trained on {unseen}; pick another"
            )
        if env_settings["observation"] != "ranked":
            raise FirebreakError(
                "--unseen-topology: needs a policy trained with observation 'ranked' "
                "(a 'services' policy is tied to its topology)"
            )
        suites[f"unseen {unseen}"] = {**kwargs, "topologies": [unseen]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = eval_seeds(args.episodes, args.seed_base)
    rows_all, summaries = [], {}
    bar = tqdm(
        total=len(suites) * 5 * len(seeds),
        desc="episodes",
        file=sys.stderr,
        disable=not sys.stderr.isatty() or args.quiet,
    )
    masked = settings["algo"] == "maskable-ppo"
    for suite, env_kwargs in suites.items():
        try:
            probe = gym.make(env_id, **env_kwargs)
        except TypeError as exc:  # the settings name an env keyword that does not exist
            raise FirebreakError(f"{args.policy}: settings.json: env_kwargs: {exc}") from None
        if layout.layout == "services":
            layout = ObservationLayout("services", 1, probe.unwrapped.encoder.n_services)
        n_actions = probe.action_space.n
        _check_spaces(args.policy, model, probe)
        probe.close()
        policies = {
            "rl": (model, masked),
            "runbook": (RunbookPolicy(layout, float(env_settings["decision_s"])), True),
            "triage": (TriagePolicy(layout, float(env_settings["decision_s"])), True),
            "do-nothing": (DoNothingPolicy(n_actions), True),
            "random": (RandomPolicy(n_actions, seed=args.seed_base), True),
        }
        rows = evaluate_policies(
            lambda kw=env_kwargs: gym.make(env_id, **kw), policies, seeds, progress=bar.update
        )
        for row in rows:
            row["suite"] = suite
        rows_all += rows
        summaries[suite] = summarise(rows)
    bar.close()
    print(
        f"{settings['algo']} policy {args.policy} vs the runbook agent, the triage rule, "
        f"do-nothing and random (masked); {len(seeds)} episodes per suite, seeds "
        f"{seeds[0]}..{seeds[-1]}; means [95% CI]"
    )
    header = (
        f"{'suite':26s} {'policy':11s} {'MTTR s':>22s} {'impacted':>8s} {'censored':>8s} "
        f"{'SLO-violating min':>20s} {'actions':>16s} {'unsafe':>6s} "
        f"{'right remedy first':>24s} {'to right remedy s':>18s} {'resolved':>8s} "
        f"{'to resolution s':>18s}"
    )
    print(header)
    for suite, entries in summaries.items():
        for e in entries:
            print(
                f"{suite:26s} {e['policy']:11s} {_fmt(e, 'mttr_s'):>22s} "
                f"{e['with_slo_impact']:8d} {e['censored']:8d} "
                f"{_fmt(e, 'slo_violating_min', 1):>20s} {_fmt(e, 'actions', 1):>16s} "
                f"{e['unsafe_actions']:6.1f} {_share(e):>24s} "
                f"{_fmt(e, 'time_to_right_remedy_s'):>18s} {e['resolved']:8d} "
                f"{_fmt(e, 'resolved_after_s'):>18s}"
            )
    for suite in summaries:
        mine = [r for r in rows_all if r["suite"] == suite]
        for other, name in (("runbook", "the runbook agent"), ("triage", "the triage rule")):
            d, lo, hi, n = paired_mttr_difference(mine, "rl", other)
            verdict = "beats" if hi < 0 else ("is worse than" if lo > 0 else "is level with")
            print(
                f"{suite}: rl - {other} MTTR {d:+.0f} s [{lo:+.0f}, {hi:+.0f}] over {n} paired "
                f"episodes: the policy {verdict} {name}"
            )
    columns = [
        "suite",
        "policy",
        "seed",
        "topology",
        "fault",
        "target",
        "fault_start_s",
        "mttr_s",
        "censored",
        "slo_violating_min",
        "actions",
        "unsafe_actions",
        "escalated",
        "remediable",
        "responded",
        "right_remedy_first",
        "time_to_right_remedy_s",
        "resolved_after_s",
        "return",
    ]
    with open(out / "episodes.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows_all)
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["suite", "policy", "metric", "mean", "ci_low", "ci_high"])
        for suite, entries in summaries.items():
            for e in entries:
                for metric in (
                    "mttr_s",
                    "slo_violating_min",
                    "actions",
                    "unsafe_actions",
                    "right_remedy_first",
                    "time_to_right_remedy_s",
                    "resolved_after_s",
                    "return",
                ):
                    lo, hi = e[f"{metric}_ci"]
                    writer.writerow([suite, e["policy"], metric, e[metric], lo, hi])
    _write_by_fault(rows_all, out / "by_fault.csv")
    plot_summary(summaries, out / "evaluation.png")
    print(f"wrote {out / 'episodes.csv'}, summary.csv, by_fault.csv, evaluation.png")
    return 0


def _write_by_fault(rows: list[dict], path: Path) -> None:
    """Per suite, policy and fault kind: episodes, responses, right remedy first, MTTR."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["suite"], r["policy"], r["fault"]), []).append(r)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["suite", "policy", "fault", "episodes", "responded", "right_first", "mean_mttr_s"]
        )
        for (suite, policy, fault), mine in sorted(groups.items()):
            scored = [r for r in mine if r.get("remediable") and r.get("responded")]
            right = sum(bool(r.get("right_remedy_first")) for r in scored)
            mttrs = [float(r["mttr_s"]) for r in mine if r.get("mttr_s") is not None]
            writer.writerow(
                [
                    suite,
                    policy,
                    fault,
                    len(mine),
                    len(scored),
                    f"{right / len(scored):.3f}" if scored else "",
                    f"{sum(mttrs) / len(mttrs):.1f}" if mttrs else "",
                ]
            )


def add_trust_pickle(parser: argparse.ArgumentParser) -> None:
    """`--trust-pickle`, shared by every command that loads a policy."""
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help=(
            "also load a stable-baselines3 zip (policy.zip): this unpickles it, which RUNS ANY "
            "CODE the file holds; use only for a file from someone you trust. Without it only "
            "the safe policy.safetensors + policy.json that `firebreak train` writes are loaded"
        ),
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="an RL remediation policy vs the runbook agent, do-nothing and random",
        description=(
            "Runs the trained policy, the default runbook as a policy, the triage rule, "
            "do-nothing and random "
            "(masked) on the same held-out seeds, and on a topology the policy never saw: "
            "MTTR, SLO-violating minutes, actions, unsafe actions, right remedy first and the "
            "time to the right remedy, with 95% confidence intervals; prints a table, "
            "writes episodes.csv, summary.csv and evaluation.png."
        ),
    )
    p.add_argument("--policy", required=True, help="a `firebreak train` output directory")
    add_trust_pickle(p)
    p.add_argument("--episodes", type=int, default=30, help="episodes per suite (default 30)")
    p.add_argument(
        "--unseen-topology",
        default="train-ticket",
        help="a topology left out of training ('' to skip; default train-ticket)",
    )
    p.add_argument("--seed-base", type=int, default=1_000_000, help="first held-out seed")
    p.add_argument("--out", default="out/rl-evaluation", help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)
