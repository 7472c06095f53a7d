"""The flow fidelity's tick: one compiled pass over the services of a topology.

Queueing model per service (see ../shared/reference/flow-model.md and the README's "The
model"): a worker pool of c = replicas × workers servers held for a request's whole
residence (own work plus its synchronous calls). Stable load waits as G/G/c at the arrival
intensity (Erlang C with Allen-Cunneen's variability factor), its queue capped by what the
callers' held workers can send; overload builds a fluid backlog capped by the queue limit,
beyond which requests are shed. Timeouts fail the caller while the callee still does the
work; retries multiply the callee's load; breakers stop calls; a burst drawn from the run's
stream can tip a pool into a retry storm (twin/flow/tipping.py). Nothing about cascades is
scripted: they follow from these couplings.

Order of a tick: arrivals flow top-down (callers first, back edges of cycles use the last
tick's rates), then latencies and failure probabilities flow bottom-up (callees first,
each first handing back to its callers what it queued past their cap). `flow_tick` runs
the named stages below in that order: two compiled loops over the services (`arrivals`
top-down, `responses` bottom-up), each calling per-service stages that numba inlines.
Those two loops are compiled without reference counting (`_nrt=False`: they never
allocate an array), since the inlined stages' array arguments otherwise cost 5-40% of the
tick in refcount calls and plain calls cost as much in argument passing (measured against
the single-function tick, 2026-12-04). The tick allocates nothing. Numba's disk cache is
keyed by every compiled source and `twin/fields.py` together (twin/jit_cache.py), so an
edit to a stage, a helper or a row's number compiles the tick anew.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from twin.fields import (
    A_FO_FROM,
    A_FO_T1,
    A_FO_TO,
    A_SHED,
    C_ARRIVED,
    C_COMPLETED,
    C_FAILED,
    C_SHED,
    E_ATT_COST,
    E_BACKOFF,
    E_BACKOFF_MULT,
    E_BR_STATE,
    E_COST,
    E_COST_VAR,
    E_FAULT_FAIL,
    E_FAULT_LAT,
    E_FORCED,
    E_K,
    E_P_ATTEMPT,
    E_PARTITION,
    E_REQUIRED,
    E_RETRIES,
    E_SYNC,
    E_TIMEOUT,
    F_ERR,
    F_LAT_ADD,
    F_OUTAGE,
    P_CPU_REQUEST,
    P_ERR_BASE,
    P_PARALLEL,
    P_QLIMIT,
    P_READY,
    P_WORKERS,
    X_CALLER_CAP,
    X_CPU_AVG,
    X_DESIRED,
    X_ERRP,
    X_ESC_LAM,
    X_ESC_LEVEL,
    X_ESC_MU,
    X_ESC_RATE,
    X_FO,
    X_HOLD,
    X_HOLD_EFF,
    X_HOLD_VAR,
    X_MU,
    X_SB_ERRP,
    X_SB_MU,
    X_SB_RATE,
    X_SB_SHIFT,
    X_SB_SIGMA,
    X_SERVED,
    X_SERVED_INT,
    X_SHEDFRAC,
    X_SHIFT,
    X_SIGMA,
    X_SPILL_P,
    X_SPILL_RATE,
    X_SPILL_X,
)
from twin.flow.queueing import (
    fit_shifted_lognormal,
    lognormal_k3,
    mixture_moments,
    truncated_moments,
)
from twin.flow.service import (
    CONNECT_REFUSED_S,
    attempts,
    breaker_block,
    breaker_step,
    call_moments,
    cpu_capacity,
    failover_share,
    fanout_moments,
    longest_call,
    own_moments,
    standby_tick,
)
from twin.flow.stages import (
    K_DONE,
    K_DROPPED,
    K_STANDBY,
    METRICS_WINDOW_S,
    UNBOUNDED,
    admit,
    conserve,
    hold_back,
    use_resources,
    wait_in_pool,
    write_latency,
)
from twin.flow.tipping import escape

__all__ = ["flow_tick"]


@njit(cache=True)
def actions_in_effect(S: np.ndarray) -> tuple[bool, bool]:
    """(shedding, failing over) anywhere: without either, the stages skip the reads a shed
    rule or a standby would need."""
    shedding = False
    failing_over = False
    for s in range(S.shape[1]):
        if S[A_SHED, s] > 0.0:
            shedding = True
        if S[A_FO_TO, s] > 0.0 or S[A_FO_FROM, s] > 0.0:
            failing_over = True
    return shedding, failing_over


@njit(cache=True, inline="always")
def maybe_tip(
    s: int, S: np.ndarray, E: np.ndarray, src: np.ndarray, in_ptr: np.ndarray,
    in_idx: np.ndarray, ext_rate: float,
) -> None:  # fmt: skip
    """Keep the service's storm-escape rate current (twin/flow/tipping.py): recomputed only
    when its offered rate or its capacity moved 2% since, as both change slowly."""
    ready = S[P_READY, s]
    if ready <= 0.0 or S[F_OUTAGE, s] > 0.0 or in_ptr[s + 1] == in_ptr[s]:
        S[X_ESC_RATE, s] = 0.0
        return
    c = ready * S[P_WORKERS, s]
    hold = max(S[X_HOLD_EFF, s], 1e-9)
    mu = min(c / hold, cpu_capacity(s, S))
    base = S[X_ESC_LAM, s]
    offered = ext_rate
    for j in range(in_ptr[s], in_ptr[s + 1]):
        e = in_idx[j]
        offered += S[X_SERVED_INT, src[e]] * E[E_K, e]
    if abs(offered - base) <= 0.02 * base and abs(mu - S[X_ESC_MU, s]) <= 0.02 * mu:
        return
    rate, level, _ = escape(
        s, S, E, src, in_ptr, in_idx, ext_rate, c, hold, S[X_HOLD_VAR, s], mu,
        ready * S[P_QLIMIT, s],
    )  # fmt: skip
    S[X_ESC_RATE, s] = rate
    S[X_ESC_LEVEL, s] = level
    S[X_ESC_LAM, s] = offered
    S[X_ESC_MU, s] = mu


@njit(cache=True, _nrt=False)
def arrivals(
    t: float,
    dt: float,
    S: np.ndarray,
    E: np.ndarray,
    order: np.ndarray,
    src: np.ndarray,
    in_ptr: np.ndarray,
    in_idx: np.ndarray,
    ext: np.ndarray,
    ext_int: np.ndarray,
    draws: np.ndarray,
    counters: np.ndarray,
    shedding: bool,
    failing_over: bool,
) -> None:
    """Stage 1, callers first: what arrives at each service (external, shed at the entry,
    the callers' attempts through their breakers, the failover's share), counted and as the
    Poisson intensity behind the count; how many requests the callers' pools can have in it;
    whether a burst can tip it into a retry storm; and what its pool admits, queues, sheds."""
    for oi in range(S.shape[1]):
        s = order[oi]
        lam = ext[s] / dt
        lam_int = ext_int[s] / dt
        dropped = 0.0
        if shedding:
            dropped = ext[s] * S[A_SHED, s]  # shed at the entry before anything else sees them
            lam = (ext[s] - dropped) / dt
            lam_int *= 1.0 - S[A_SHED, s]
        ext_rate = lam_int
        counters[s, K_DROPPED] = dropped
        counters[s, K_DONE] = 0.0
        # a caller's worker waits on one call at a time: its pool bounds what it sends, but
        # an attempt it gave up on stays in this service until done, so each worker counts
        # for as many requests here as the residence outlasts the caller's wait
        cap = UNBOUNDED if lam_int > 0.0 or ext[s] > 0.0 else 0.0
        residence = S[X_SHIFT, s] + math.exp(S[X_MU, s] + 0.5 * S[X_SIGMA, s] ** 2)
        for j in range(in_ptr[s], in_ptr[s + 1]):
            e = in_idx[j]
            u = src[e]
            if E[E_SYNC, e] > 0.0:
                waited = E[E_ATT_COST, e]
                outlasts = residence / waited if waited > 0.0 else 1.0
                cap += S[P_READY, u] * S[P_WORKERS, u] * max(outlasts, 1.0)
            else:
                cap = UNBOUNDED
            block = breaker_block(e, E)
            if block >= 1.0:
                continue
            att = attempts(E[E_P_ATTEMPT, e], E[E_RETRIES, e])
            calling = S[X_SERVED, u]
            calling_int = S[X_SERVED_INT, u]
            if failing_over:
                calling += S[X_SB_RATE, u]  # the standby's requests make the calls too
                calling_int += S[X_SB_RATE, u]
                cap = UNBOUNDED
            lam += calling * E[E_K, e] * att * (1.0 - block)
            lam_int += calling_int * E[E_K, e] * att * (1.0 - block)
        S[X_CALLER_CAP, s] = min(cap, UNBOUNDED)
        counters[s, K_STANDBY] = 0.0
        if failing_over:
            mid = t + 0.5 * dt
            phi = failover_share(s, mid, S)
            if mid >= S[A_FO_T1, s]:
                S[A_FO_FROM, s] = phi  # the shift is over (once both are 0, no more scans)
            S[X_FO, s] = phi
            S[X_SB_RATE, s] = phi * lam
            if phi > 0.0:
                counters[s, K_STANDBY] = phi * lam * dt
                lam -= phi * lam
                lam_int -= phi * lam_int
        maybe_tip(s, S, E, src, in_ptr, in_idx, ext_rate)
        admit(s, dt, S, counters, lam * dt, dropped, lam_int, draws[s])


@njit(cache=True, _nrt=False)
def responses(
    t: float,
    dt: float,
    S: np.ndarray,
    E: np.ndarray,
    order: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    in_ptr: np.ndarray,
    in_idx: np.ndarray,
    out_ptr: np.ndarray,
    out_idx: np.ndarray,
    out: np.ndarray,
    eout: np.ndarray,
    dist: np.ndarray,
    events: np.ndarray,
    counters: np.ndarray,
    failing_over: bool,
) -> int:
    """Stages 2-5, callees first: each service's calls (their cost, failures, breakers and
    edge telemetry), its residence and wait, conservation, a standby's share, resources and
    its telemetry row. Returns the number of events written."""
    n_events = 0
    for oi in range(S.shape[1] - 1, -1, -1):
        s = order[oi]
        hold_back(s, dt, S, E, counters, src, in_ptr, in_idx)
        ready = S[P_READY, s]
        down = ready <= 0.0 or S[F_OUTAGE, s] > 0.0
        own, var, k3 = own_moments(s, S)
        own += S[F_LAT_ADD, s]
        sum_cost = 0.0
        calls_var = 0.0  # what the calls alone add (a standby makes the same calls)
        calls_k3 = 0.0
        calls_max = 0.0  # the longest the calls can take: every attempt to its timeout
        spill_p = 0.0  # the most congested callee's queue held back by this pool's cap
        spill_x = 0.0
        spill_rate = 0.0
        spill_mean = 0.0
        p_ok = 1.0
        calling = S[X_SERVED, s] + S[X_SB_RATE, s] if failing_over else S[X_SERVED, s]
        for j in range(out_ptr[s], out_ptr[s + 1]):
            e = out_idx[j]
            # one attempt: a partition costs the timeout, a refused connection a millisecond,
            # otherwise the callee's residence cut at the timeout
            d = dst[e]
            timeout = E[E_TIMEOUT, e]
            if E[E_PARTITION, e] > 0.0:
                p_att = 1.0
                c_att = timeout
                v_att = 0.0
            elif S[P_READY, d] <= 0.0 or S[F_OUTAGE, d] > 0.0:
                p_att = 1.0
                c_att = CONNECT_REFUSED_S
                v_att = 0.0
            else:
                loss = E[E_FAULT_FAIL, e]
                t_eff = timeout - E[E_FAULT_LAT, e]
                p_to, t_mean, t_var = truncated_moments(
                    S[X_MU, d], S[X_SIGMA, d], S[X_SHIFT, d], t_eff
                )
                shed_d = S[X_SHEDFRAC, d]
                p_att = 1.0 - (1.0 - shed_d) * (1.0 - p_to) * (1.0 - S[X_ERRP, d]) * (1.0 - loss)
                wait = t_mean + E[E_FAULT_LAT, e]
                c_att = shed_d * CONNECT_REFUSED_S + (1.0 - shed_d) * wait
                # a refused attempt costs a millisecond, an admitted one its wait: the
                # mixture's variance includes the gap between the two
                gap = wait - CONNECT_REFUSED_S
                v_att = (1.0 - shed_d) * (t_var + shed_d * gap * gap)
            phi = S[X_FO, d] if failing_over else 0.0
            if phi > 0.0:
                # a share phi of attempts goes to the standby, past this link's faults: the
                # exact mixture of the two attempts' failure, mean and variance
                p_sb, m_sb, v_sb = truncated_moments(
                    S[X_SB_MU, d], S[X_SB_SIGMA, d], S[X_SB_SHIFT, d], timeout
                )
                p_sb = 1.0 - (1.0 - p_sb) * (1.0 - S[X_SB_ERRP, d])
                c_mix = (1.0 - phi) * c_att + phi * m_sb
                v_att = (1.0 - phi) * (v_att + c_att * c_att) + phi * (v_sb + m_sb * m_sb)
                v_att = max(v_att - c_mix * c_mix, 0.0)
                p_att = (1.0 - phi) * p_att + phi * p_sb
                c_att = c_mix
            block = breaker_block(e, E)
            k = E[E_K, e]
            att, cost, fail, e_var = call_moments(
                p_att, c_att, v_att, E[E_RETRIES, e], E[E_BACKOFF, e], E[E_BACKOFF_MULT, e],
                block, k,
            )  # fmt: skip
            E[E_COST, e] = cost
            E[E_ATT_COST, e] = c_att
            frac = k - math.floor(k)
            E[E_COST_VAR, e] = (e_var - frac * (1.0 - frac) * cost * cost) / k if k > 0.0 else 0.0
            if E[E_SYNC, e] > 0.0:
                sum_cost += k * cost
                e_k3 = lognormal_k3(k * cost, e_var)
                calls_var += e_var
                calls_k3 += e_k3
                longest = 0.0 if block >= 1.0 else longest_call(e, E)
                if S[P_PARALLEL, s] > 0.0:
                    calls_max = max(calls_max, longest)
                else:
                    calls_max += math.ceil(k) * longest
                p_sp = S[X_SPILL_P, d]
                if p_sp > 0.0:
                    m_sp = p_sp / ((1.0 - S[X_SPILL_X, d]) * S[X_SPILL_RATE, d])
                    if m_sp > spill_mean:
                        spill_p, spill_x, spill_rate = p_sp, S[X_SPILL_X, d], S[X_SPILL_RATE, d]
                        spill_mean = m_sp
                if E[E_REQUIRED, e] > 0.0:
                    # k < 1 is a call made by a share k of requests, k ≥ 1 is k calls each
                    p_ok *= (1.0 - k * fail) if k < 1.0 else (1.0 - fail) ** k
            # breaker bookkeeping and edge telemetry
            calls = calling * k * att * (1.0 - block) * dt
            E[E_P_ATTEMPT, e] = p_att
            n_events = breaker_step(t, dt, e, E, calls, calls * p_att, events, n_events)
            eout[e, 0] = calls / dt
            eout[e, 1] = calling * k * fail
            eout[e, 2] = c_att * 1000.0
            eout[e, 3] = E[E_BR_STATE, e] if E[E_FORCED, e] < 0.0 else 3.0 + E[E_FORCED, e]

        if S[P_PARALLEL, s] > 0.0 and sum_cost > 0.0:
            # the request waits for the slowest of its concurrent calls
            calls_mean, calls_var, calls_k3 = fanout_moments(s, E, out_ptr, out_idx)
        else:
            calls_mean = sum_cost
        own_var = var
        own_k3 = k3
        var += calls_var
        k3 += calls_k3
        hold = own + calls_mean
        S[X_HOLD_VAR, s] = var
        # the pool feels a new holding time only as requests started under it finish, and
        # a shorter one only as those already holding workers under the longer one do
        pace = max(hold, S[X_HOLD_EFF, s])
        S[X_HOLD_EFF, s] += (1.0 - math.exp(-dt / pace)) * (hold - S[X_HOLD_EFF, s])
        err_own = 1.0 - (1.0 - S[P_ERR_BASE, s]) * (1.0 - S[F_ERR, s])
        S[X_ERRP, s] = 1.0 - (1.0 - err_own) * p_ok
        S[X_HOLD, s] = hold
        mean, wait_var, k3, mu, sigma, shift, c = wait_in_pool(
            s, S, counters, hold, down, var, k3, spill_p, spill_x, spill_rate, own, own_var,
            own_k3, calls_max,
        )  # fmt: skip
        arrived, shed, departures, failed, completed, q, n_target, lost = conserve(
            s, S, counters, down
        )
        answered = not down
        w = 0.0  # share of this tick's served requests the standby served
        phi = S[X_FO, s] if failing_over else 0.0
        if phi > 0.0:
            # the standby's requests, done within the tick. Callers mix the two sides exactly
            # per attempt; the service's latency telemetry is the exact mixture of what each
            # side served (mean, and percentiles by mixture_quantile), its distribution for
            # the SLO the mixture moment-matched into one shifted lognormal
            sb_mean, sb_var, sb_k3 = standby_tick(s, dt, S, calls_mean, calls_var, calls_k3, p_ok)
            sb = counters[s, K_STANDBY]
            sb_failed = sb * S[X_SB_ERRP, s]
            arrived += sb
            failed += sb_failed
            completed += sb - sb_failed
            departures += sb
            w = sb / departures if departures > 0.0 else phi
            mean, mix_var, mix_k3 = mixture_moments(
                w, mean, var + wait_var, k3, sb_mean, sb_var, sb_k3
            )
            mu, sigma, shift = fit_shifted_lognormal(mean, mix_var, mix_k3)
            answered = True
        dist[s, 0] = mu
        dist[s, 1] = sigma
        dist[s, 2] = shift
        S[C_ARRIVED, s] += arrived
        S[C_COMPLETED, s] += completed
        S[C_FAILED, s] += failed
        S[C_SHED, s] += shed
        inflight = q + n_target
        cpu_used, mem, n_events = use_resources(s, t, dt, S, events, n_events, inflight)

        finished = departures + shed + lost
        out[s, 0] = arrived / dt
        out[s, 1] = completed / dt
        out[s, 2] = failed / dt
        out[s, 3] = shed / dt
        out[s, 4] = (failed + shed) / finished if finished > 0.0 else 0.0
        write_latency(s, S, out, answered, w, mean, mu, sigma, shift)
        out[s, 9] = cpu_used
        util = cpu_used / (ready * S[P_CPU_REQUEST, s]) if ready > 0.0 else 0.0
        S[X_CPU_AVG, s] += min(dt / METRICS_WINDOW_S, 1.0) * (util - S[X_CPU_AVG, s])
        out[s, 10] = util
        out[s, 11] = mem if ready > 0.0 else 0.0
        out[s, 12] = q
        out[s, 13] = inflight
        out[s, 14] = n_target / c if c > 0.0 else 0.0
        out[s, 15] = ready
        out[s, 16] = S[X_DESIRED, s]
    return n_events


@njit(cache=True)
def flow_tick(
    t: float,
    dt: float,
    S: np.ndarray,
    E: np.ndarray,
    order: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    in_ptr: np.ndarray,
    in_idx: np.ndarray,
    out_ptr: np.ndarray,
    out_idx: np.ndarray,
    ext: np.ndarray,
    ext_int: np.ndarray,
    draws: np.ndarray,
    out: np.ndarray,
    eout: np.ndarray,
    dist: np.ndarray,
    events: np.ndarray,
    counters: np.ndarray,
) -> int:
    """Advance one tick [t, t+dt). Writes telemetry rows; returns the number of events.

    `ext` are this tick's external arrivals per service, `ext_int` their Poisson intensity
    (expected count), `draws` one uniform per service from the run's own stream.

    `events` rows are (time, kind, index, value): kind 0 a breaker transition of edge
    `index` to state `value`, kind 1 a replica of service `index` above its memory limit.
    `counters` is scratch space (services × N_COUNTERS) so the tick allocates nothing.

    Operator actions enter through rows of S: a share of external arrivals shed at an entry
    (A_SHED) and a failover share (A_FO_*) of a service's calls served by a standby.
    """
    shedding, failing_over = actions_in_effect(S)
    arrivals(
        t, dt, S, E, order, src, in_ptr, in_idx, ext, ext_int, draws, counters, shedding,
        failing_over,
    )  # fmt: skip
    return responses(
        t, dt, S, E, order, src, dst, in_ptr, in_idx, out_ptr, out_idx, out, eout, dist, events,
        counters, failing_over,
    )  # fmt: skip
