"""Compiled inner loops of an env step (numba, cached on disk like the flow kernel).

An env step is a handful of small array computations (SLO accounting over the interval's
ticks, symptom signals, z-scores, features); as numpy calls each costs microseconds of
dispatch for nanoseconds of work, so they are fused here. Each has a plain-numpy twin in
the modules that call it only where that is clearer; these are the ones the env runs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from twin.fields import NODE_M, M

_THR, _ERR, _SHED = M["throughput"], M["error_rate"], M["shed_rate"]
_ARR, _P99, _CPU = M["arrival_rate"], M["latency_p99_ms"], M["cpu_cores"]
_WORK, _MEM, _Q = M["worker_utilization"], M["memory_mb"], M["queue"]
_READY, _DES = M["ready_replicas"], M["desired_replicas"]
_ERRP = M["error_ratio"]
_SQRT2 = math.sqrt(2.0)
_N_UP, _N_READY = NODE_M["up"], NODE_M["ready"]
_N_CPU, _N_MEM = NODE_M["cpu_other_cores"], NODE_M["memory_other_mb"]
_N_IO, _N_DROP = NODE_M["io_wait_ms"], NODE_M["network_drop_ratio"]


@njit(cache=True)
def slo_account(block, dist, entries, thr_s, dt, r0, width, win, out):
    """Per tick at the entries: requests, failed (errors and shed), served, slower than
    `thr_s` (from the tick's shifted lognormal), as the twin's SloTracker counts them.
    Adds them into `win` (4 × windows) by window of length `width`; `out` gets the sums.
    Returns how many entry-ticks were left out for non-finite telemetry."""
    for k in range(4):
        out[k] = 0.0
    bad = 0
    last = win.shape[1] - 1
    for t in range(block.shape[0]):
        w = int(((r0 + t) * dt) // width)
        if w > last:
            w = last
        for e in entries:
            ok = block[t, e, _THR] * dt
            err = block[t, e, _ERR] * dt
            failed = err + block[t, e, _SHED] * dt
            if not (math.isfinite(ok) and math.isfinite(failed)):
                bad += 1  # a non-finite telemetry value: counted, never propagated
                continue
            served = ok + err
            x = thr_s - dist[t, e, 2]
            below = 0.0
            if x > 0.0:
                sigma = max(dist[t, e, 1], 1e-12)
                z = (math.log(x) - dist[t, e, 0]) / sigma
                below = 0.5 * math.erfc(-z / _SQRT2)
            if not math.isfinite(below):
                below = 0.0
            slow = served * (1.0 - below)
            win[0, w] += ok + failed
            win[1, w] += failed
            win[2, w] += served
            win[3, w] += slow
            out[0] += ok + failed
            out[1] += failed
            out[2] += served
            out[3] += slow
    return bad


@njit(cache=True)
def interval_mean(block, mean):
    """Mean over the interval's ticks (rows × services × metrics → services × metrics);
    non-finite values are left out (counted in the return value)."""
    k = block.shape[0]
    bad = 0
    for s in range(block.shape[1]):
        for m in range(block.shape[2]):
            acc = 0.0
            used = 0
            for t in range(k):
                v = block[t, s, m]
                if math.isfinite(v):
                    acc += v
                    used += 1
                else:
                    bad += 1
            mean[s, m] = acc / used if used else 0.0
    return bad


@njit(cache=True)
def symptom_signals(mean, cpu_limit, queue_limit, memory_limit, out):
    """Per service and family a value that grows with the symptom (see encoding.FAMILIES)."""
    for s in range(mean.shape[0]):
        ready = mean[s, _READY]
        has = max(ready, 1e-9)
        out[s, 0] = math.log(max(mean[s, _P99], 0.1))
        out[s, 1] = mean[s, _ERRP]
        cpu = mean[s, _CPU] / (has * cpu_limit[s])
        queue = min(mean[s, _Q] / (has * queue_limit[s]), 1.0)
        out[s, 2] = max(max(cpu, mean[s, _WORK]), queue)
        out[s, 3] = mean[s, _MEM] / memory_limit[s]
        out[s, 4] = 1.0 - min(ready / max(mean[s, _DES], 1.0), 1.0)
        out[s, 5] = math.log1p(max(mean[s, _ARR], 0.0))
        for f in range(out.shape[1]):
            if not math.isfinite(out[s, f]):
                out[s, f] = 0.0


@njit(cache=True)
def zscore_update(
    signals, mu, dev, floors, two_sided, alpha, gate, children, cause_w, explain_w, alerts, rca
):
    """One streaming z-score step with anomaly-gated baseline updates, then RCA scores: a
    service's strongest symptom (each family weighted by `cause_w`), discounted by its
    callees' strongest symptom in the families that travel upstream (`explain_w`)."""
    n, nf = signals.shape
    cause = np.zeros(n)
    explains = np.zeros(n)
    for s in range(n):
        for f in range(nf):
            x = signals[s, f]
            scale = max(1.25 * dev[s, f], floors[f])
            z = (x - mu[s, f]) / scale
            if two_sided[f]:
                z = abs(z)
            if abs(z) < gate:
                mu[s, f] += alpha * (x - mu[s, f])
                dev[s, f] += alpha * (abs(x - mu[s, f]) - dev[s, f])
            a = min(max(z, 0.0), 10.0) * 0.1
            alerts[s, f] = a
            if a * cause_w[f] > cause[s]:
                cause[s] = a * cause_w[f]
            if a * explain_w[f] > explains[s]:
                explains[s] = a * explain_w[f]
    for s in range(n):
        below = 0.0
        for c in range(n):
            if children[s, c] > 0.0 and explains[c] > below:
                below = explains[c]
        rca[s] = cause[s] * (1.0 - 0.8 * below)


@njit(cache=True)
def service_features(
    mean,
    last,
    ref,
    cpu_limit,
    memory_limit,
    queue_limit,
    replicas,
    failover,
    shed,
    last_action,
    now,
    memory_s,
    alerts,
    rca,
    low,
    out,
):
    """The per-service feature rows (encoding.SERVICE_FEATURES), clipped to [low, 1]."""
    n = mean.shape[0]
    nf = alerts.shape[1]
    for s in range(n):
        ready = mean[s, _READY]
        has = max(ready, 1e-9)
        out[s, 0] = math.log2((mean[s, _ARR] + 0.1) / (ref[s, 0] + 0.1)) / 4.0
        out[s, 1] = mean[s, _ERRP]
        out[s, 2] = math.log2((mean[s, _P99] + 1.0) / (ref[s, 1] + 1.0)) / 6.0
        out[s, 3] = mean[s, _CPU] / (has * cpu_limit[s])
        out[s, 4] = mean[s, _WORK]
        out[s, 5] = mean[s, _MEM] / memory_limit[s]
        out[s, 6] = mean[s, _Q] / (has * queue_limit[s])
        out[s, 7] = ready / max(mean[s, _DES], 1.0)
        out[s, 8] = math.log2(max(last[s, _DES], 0.5) / replicas[s]) / 3.0
        out[s, 9] = failover[s]
        out[s, 10] = shed[s]
        out[s, 11] = math.exp(-(now - last_action[s]) / memory_s)
        for f in range(nf):
            out[s, 12 + f] = alerts[s, f]
        out[s, 12 + nf] = rca[s]
        for j in range(out.shape[1]):
            v = out[s, j]
            if not math.isfinite(v):
                v = 0.0
            out[s, j] = min(max(v, low[j]), 1.0)


@njit(cache=True)
def ranked_vector(F, G, rca_col, alert_lo, alert_hi, top_k, low, high, out, ranking):
    """The ranked layout: globals, the `top_k` services by RCA score (ties: the louder
    alert, then topology order) with a present flag, then max and mean per feature.
    Writes the chosen service indices to `ranking` and returns how many there are."""
    n, nf = F.shape
    ng = G.shape[0]
    for j in range(ng):
        out[j] = G[j]
    score = np.empty(n)
    for s in range(n):
        loud = 0.0
        for j in range(alert_lo, alert_hi):
            loud = max(loud, F[s, j])
        score[s] = F[s, rca_col] + 1e-3 * loud
    taken = np.zeros(n, np.bool_)
    k = min(top_k, n)
    width = nf + 1
    for slot in range(top_k):
        base = ng + slot * width
        if slot >= k:
            for j in range(width):
                out[base + j] = 0.0
            continue
        best = -1
        for s in range(n):
            if not taken[s] and (best < 0 or score[s] > score[best]):
                best = s
        taken[best] = True
        ranking[slot] = best
        for j in range(nf):
            out[base + j] = F[best, j]
        out[base + nf] = 1.0
    pooled = ng + top_k * width
    for j in range(nf):
        hi = F[0, j]
        acc = 0.0
        for s in range(n):
            hi = max(hi, F[s, j])
            acc += F[s, j]
        out[pooled + j] = hi
        out[pooled + nf + j] = acc / n
    for j in range(out.shape[0]):
        out[j] = min(max(out[j], low[j]), high[j])
    return k


@njit(cache=True)
def node_update(block, cpu, mem, io_half_ms, drop_full, base, updates, warmup, badness):
    """`NodeWatch.update` on an interval's node rows (ticks × nodes × NODE_METRICS): each
    node's six signals from the interval's mean (non-finite: 0, or 1 for +inf), then either
    a warm-up step of the baseline (`updates` counts this one) or each node's badness."""
    k = block.shape[0]
    m = np.empty(block.shape[2])
    for i in range(block.shape[1]):
        m[:] = 0.0
        for t in range(k):
            for j in range(block.shape[2]):
                m[j] += block[t, i, j]
        m /= k
        io = max(m[_N_IO], 0.0)
        sig = (
            1.0 - m[_N_UP],
            1.0 - m[_N_READY],
            m[_N_CPU] / cpu[i],
            m[_N_MEM] / mem[i],
            io / (io + io_half_ms),
            m[_N_DROP] / drop_full,
        )
        worst = 0.0
        for j in range(6):
            v = sig[j]
            if math.isnan(v):
                v = 0.0
            elif math.isinf(v):
                v = 1.0 if v > 0 else 0.0
            if updates <= warmup:
                base[i, j] += (v - base[i, j]) / updates
            else:
                worst = max(worst, min(max(v - base[i, j], 0.0), 1.0))
        badness[i] = worst


@njit(cache=True)
def worst_node_zone(badness, drained, zone_index, n_zones):
    """(node, its badness, zone, its badness) as `NodeWatch` names them: the undrained node
    that looks worst; the zone with an undrained node whose healthiest node (drained ones
    included) looks worst. -1 where there is none; first wins a tie."""
    node, node_v = -1, 0.0
    for i in range(badness.shape[0]):
        if not drained[i] and (node < 0 or badness[i] > node_v):
            node, node_v = i, badness[i]
    zone, zone_v = -1, -1.0
    for z in range(n_zones):
        live, low = False, math.inf
        for i in range(badness.shape[0]):
            if zone_index[i] == z:
                live = live or not drained[i]
                low = min(low, badness[i])
        if live and low > zone_v:
            zone, zone_v = z, low
    return node, node_v, zone, max(zone_v, 0.0)
