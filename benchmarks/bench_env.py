"""`python -m benchmarks.bench_env`: env steps per second, against a bare Simulation stepping
the same ticks in the same run.

Target (issue T7): >= 2,000 steps/s on one core for `firebreak/Remediation-v0` on Online
Boutique in flow fidelity (guardrail gate and scorer wired in, as registered). The bare
case builds the same episodes' simulations and advances them decision by decision with no
observation, reward or gate, so the ratio is what the env itself adds. Also measured: a
policy that asks for `action_masks()` every step (as MaskablePPO does) and Autoscale-v0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from agents.rl.envs import make_autoscale, make_remediation
from twin.flow.engine import Simulation

TARGET_STEPS_PER_S = 2000.0
TARGET_VECTOR_STEPS_PER_S = 20_000.0  # issue T18: a vectorised env, on this machine's cores


def _env_rate(env, steps: int, seed: int, masks: bool) -> tuple[float, list]:
    """Steps/s of noop steps (resets included); also the scenarios the episodes drew."""
    scenarios = []
    env.reset(seed=seed)
    scenarios.append(env.scenario)
    noop = np.zeros(env.action_space.shape, np.int64) if env.action_space.shape else 0
    if env.action_space.shape:
        noop += 1  # autoscale: hold everywhere
    start = time.perf_counter()
    for _ in range(steps):
        if masks:
            env.action_masks()
        _, _, _, truncated, _ = env.step(noop)
        if truncated:
            env.reset()
            scenarios.append(env.scenario)
    return steps / (time.perf_counter() - start), scenarios


def _bare_rate(scenarios: list, steps: int, decision_s: float) -> float:
    """Steps/s of the same episodes as bare simulations advanced decision by decision."""
    start = time.perf_counter()
    done = 0
    for scenario in scenarios:
        sim = Simulation(scenario)
        t = 0.0
        while done < steps and t < sim.end:
            t = min(t + decision_s, sim.end)
            sim.advance(t)
            done += 1
        if done >= steps:
            break
    return done / (time.perf_counter() - start)


def mask_times(steps: int = 2_000, seed: int = 0) -> dict:
    """Microseconds a step for the guardrail masks, asked one action at a time (`check`, as
    masks were built before `Guardrails.permits`) and in one batch (`permits`), interleaved
    on the same states of one run (random valid actions, so windows and undos fill)."""
    env = make_remediation(topologies=("online-boutique",))
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    codec, gate = env.codec, env.gate
    one_by_one = batch = 0.0
    for _ in range(steps):
        t = time.perf_counter()
        actions = [codec.build(i)[0] for i in range(1, codec.n_actions)]
        _ = [gate.check(a, codec.view) is not None for a in actions if a is not None]
        one_by_one += time.perf_counter() - t
        t = time.perf_counter()
        mask = env.action_masks()
        batch += time.perf_counter() - t
        _, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        if terminated or truncated:
            env.reset()
    return {
        "steps": steps,
        "check_each_us": round(1e6 * one_by_one / steps, 1),
        "permits_us": round(1e6 * batch / steps, 1),
        "speedup_x": round(one_by_one / batch, 2),
    }


def kernel_times(seed: int = 0, steps: int = 60, reps: int = 7) -> list[dict]:
    """Microseconds a tick of the flow kernel alone (`flow_ticks`, no SimPy), per training
    topology: each twin is taken `steps` random actions into an episode, then the ticks its
    current chunk has inputs for (the episode's, at most) are run `reps` times from that
    same state (best taken).
    What the rest of a step costs is the env rate above less this times ticks a step."""
    from twin.envs.remediation import TRAINING_TOPOLOGIES
    from twin.flow.burst import flow_ticks

    rows = []
    for name in TRAINING_TOPOLOGIES:
        env = make_remediation(topologies=(name,))
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            env.step(int(rng.integers(env.action_space.n)))
        sim, topo = env.sim, env.sim.topo
        ticks, best = min(sim.chunk_size, sim.n_ticks), float("inf")
        for _ in range(reps):
            S, E = sim.S.copy(), sim.E.copy()
            out, eout, dist = (np.zeros_like(a) for a in (sim._out, sim._eout, sim._dist))
            times, events = np.zeros_like(sim._times), np.zeros_like(sim._kernel_events)
            scratch, i = np.zeros_like(sim._scratch), 0
            start = time.perf_counter()
            while i < ticks:
                done, _ = flow_ticks(
                    i, ticks - i, i, sim.dt, S, E, topo.order, topo.src, topo.dst,
                    topo.in_ptr, topo.in_idx, topo.out_ptr, topo.out_idx, sim._ext,
                    sim._ext_int, sim._draws, out, eout, dist, times, events, scratch,
                )  # fmt: skip
                i += done
            best = min(best, time.perf_counter() - start)
        rows.append(
            {
                "topology": name,
                "services": topo.n_services,
                "edges": topo.n_edges,
                "ticks": int(ticks),
                "us_per_tick": round(1e6 * best / ticks, 2),
            }
        )
    return rows


def mix_budget(kernel: list[dict], steps: int = 4_000, seed: int = 0) -> dict:
    """What a step of the registered Remediation-v0 (the training mix: topologies drawn
    uniformly, episodes of equal length) costs in CPU, and how much of it the flow kernel
    alone takes (`kernel`'s mean us a tick times ticks a step; best-of timings, so a lower
    bound). Against it, the CPU a step may cost for `TARGET_VECTOR_STEPS_PER_S` on this
    machine's cores: what is left beside the kernel is what every other part of a step
    (faults, autoscalers, cluster, actions, guardrails, observation, reward) would have to
    fit in, were the whole step one compiled call."""
    from agents.rl.hyperparams import usable_cores
    from agents.rl.train import make_env
    from twin.envs.remediation import TRAINING_TOPOLOGIES

    if sorted(k["topology"] for k in kernel) != sorted(TRAINING_TOPOLOGIES):
        raise ValueError("mix_budget: needs the kernel timed on every training topology")
    env = make_env("firebreak/Remediation-v0")
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n = env.action_space.n
    warm_up = 600  # five episodes: compiled code and topologies loaded before timing
    for i in range(warm_up + steps):
        if i == warm_up:
            cpu = time.process_time()
        _, _, terminated, truncated, _ = env.step(int(rng.integers(n)))
        if terminated or truncated:
            env.reset()
    step_us = 1e6 * (time.process_time() - cpu) / steps
    ticks = int(round(env.unwrapped.decision_s / env.unwrapped.scenario.tick))
    env.close()
    kernel_us = ticks * float(np.mean([k["us_per_tick"] for k in kernel]))
    cores = usable_cores()
    budget_us = 1e6 * cores / TARGET_VECTOR_STEPS_PER_S
    return {
        "steps": steps,
        "ticks_per_step": ticks,
        "step_cpu_us": round(step_us, 1),
        "kernel_us": round(kernel_us, 1),
        "rest_us": round(step_us - kernel_us, 1),
        "cores": cores,
        "budget_us": round(budget_us, 1),
        "left_beside_kernel_us": round(budget_us - kernel_us, 1),
        "kernel_only_ceiling_steps_per_s": round(1e6 * cores / kernel_us, 0),
    }


def bench(steps: int = 20_000, seed: int = 0) -> list[dict]:
    cases = [
        ("Remediation-v0 online-boutique", make_remediation(topologies=("online-boutique",)), 0),
        ("  with action_masks() per step", make_remediation(topologies=("online-boutique",)), 1),
        ("Autoscale-v0 online-boutique", make_autoscale(), 0),
    ]
    rows = []
    for label, env, masks in cases:
        _env_rate(env, 300, seed + 99, bool(masks))  # warm-up: compiled code loaded
        rate, scenarios = _env_rate(env, steps, seed, bool(masks))
        bare = _bare_rate(scenarios, steps + 1, env.decision_s)
        rows.append(
            {
                "case": label.strip(),
                "steps": steps,
                "ticks_per_step": int(round(env.decision_s / env.scenario.tick)),
                "env_steps_per_s": round(rate, 1),
                "bare_steps_per_s": round(bare, 1),
                "overhead_x": round(bare / rate, 2),
                "meets_target": rate >= TARGET_STEPS_PER_S if not masks else None,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    rows = bench(args.steps, args.seed)
    print(
        f"{'case':34s} {'ticks/step':>10s} {'env steps/s':>12s} {'bare steps/s':>13s} "
        f"{'env/bare':>9s}"
    )
    for r in rows:
        print(
            f"{r['case']:34s} {r['ticks_per_step']:10d} {r['env_steps_per_s']:12,.0f} "
            f"{r['bare_steps_per_s']:13,.0f} {r['overhead_x']:8.2f}x"
        )
    head = rows[0]
    verdict = "ok" if head["meets_target"] else "MISSED"
    print(
        f"target >= {TARGET_STEPS_PER_S:,.0f} env steps/s (Remediation-v0, one core): "
        f"{head['env_steps_per_s']:,.0f} {verdict}"
    )
    masks = mask_times(max(args.steps // 10, 100), args.seed)
    print(
        f"guardrail masks a step: {masks['check_each_us']:,.0f} us asked one action at a time, "
        f"{masks['permits_us']:,.0f} us in one batch ({masks['speedup_x']:.2f}x), same run"
    )
    kernel = kernel_times(args.seed)
    print("flow kernel alone (no SimPy), the training topologies, from a state mid-episode:")
    for k in kernel:
        print(
            f"  {k['topology']:20s} {k['services']:3d} services {k['edges']:3d} edges "
            f"{k['us_per_tick']:7.2f} us a tick"
        )
    mix = mix_budget(kernel, max(args.steps // 5, 200), args.seed)
    print(
        f"training mix (Remediation-v0 as registered): a step costs {mix['step_cpu_us']:,.0f} us "
        f"of CPU, the flow kernel alone {mix['kernel_us']:,.0f} us of it "
        f"({mix['ticks_per_step']} ticks at the topologies' mean)"
    )
    print(
        f"target >= {TARGET_VECTOR_STEPS_PER_S:,.0f} vectorised steps/s on {mix['cores']} "
        f"core(s): {mix['budget_us']:,.0f} us of CPU a step, {mix['left_beside_kernel_us']:,.0f} "
        f"us of it beside the kernel for what now costs {mix['rest_us']:,.0f} us; the kernel "
        f"alone caps it at {mix['kernel_only_ceiling_steps_per_s']:,.0f} steps/s"
    )
    if args.json:
        doc = {"envs": rows, "masks": masks, "kernel": kernel, "mix": mix}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
