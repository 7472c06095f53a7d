"""Named rows of the engine's state matrices and the telemetry axes.

The flow kernel keeps all per-service quantities in one float matrix (fields × services) and
all per-edge quantities in another (fields × edges), so a tick is one compiled call with few
arguments. These constants name the rows; they are compile-time constants inside the kernel.
"""

from __future__ import annotations

# --- per-service rows -------------------------------------------------------------------
# parameters (set from the topology; changed by faults, actions and the control plane)
P_WORKERS = 0  # worker pool per replica
P_READY = 1  # ready replicas
P_SVC_MEAN = 2  # own mean service time, seconds
P_SVC_CV = 3  # own service-time coefficient of variation
P_CPU_PER_REQ = 4  # core-seconds per request
P_CPU_LIMIT = 5  # cores per replica
P_CPU_REQUEST = 6  # cores requested per replica (HPA's denominator)
P_MEM_BASE = 7  # MB per replica
P_MEM_PER_REQ = 8  # MB per in-flight request
P_MEM_LIMIT = 9  # MB per replica
P_QLIMIT = 10  # queued requests per replica
P_ERR_BASE = 11  # intrinsic error probability
P_PARALLEL = 12  # 1: fan-out to dependencies concurrently
# fault modifiers (recomputed from the active fault effects whenever one starts or stops)
F_LAT_FACTOR = 13
F_LAT_ADD = 14  # seconds
F_ERR = 15  # extra error probability
F_CPU_HOG = 16  # extra cores of demand per replica
F_CPU_FACTOR = 17
F_LEAK_RATE = 18  # MB per second per replica
F_LEAK_ORIGIN = 19  # time the oldest ready pod began leaking
F_OUTAGE = 20  # 1: connection refused
# state carried between ticks
X_QUEUE = 21
X_NSERV = 22  # requests holding a worker
X_HOLD = 23  # mean holding time (own work + calls), seconds
X_SERVED = 24  # rate entering service, requests/s
X_THROTTLE = 25  # CPU throttling slowdown ≥ 1
X_ERRP = 26  # probability a served request fails
X_SHEDFRAC = 27  # share of arrivals shed (fail fast)
X_MU = 28  # lognormal location of the residence time (excluding the backlog shift)
X_SIGMA = 29
X_SHIFT = 30  # backlog wait added to every request, seconds
X_CPU_AVG = 31  # CPU utilisation of the request, averaged over ~15 s (metrics-server)
X_LOST = 32  # in-flight requests lost to killed pods, counted as failed next tick
X_DESIRED = 33  # desired replicas (for telemetry)
# cumulative counters (conservation)
C_ARRIVED = 34
C_COMPLETED = 35
C_FAILED = 36
C_SHED = 37
X_HOLD_EFF = 38  # holding time as the worker pool feels it: lags the instant one by ~H
X_SERVED_INT = 39  # the Poisson intensity behind X_SERVED (what queueing formulas need)
# operator actions (set by twin.control.actions; zero when none is in effect)
A_SHED = 40  # share of external arrivals dropped at the entry (load shedding)
A_FO_FROM = 41  # failover: share sent to the standby when the current shift began ...
A_FO_TO = 42  # ... the share it ends at ...
A_FO_T0 = 43  # ... and when the shift begins and ends (a linear ramp: DNS TTLs expire,
A_FO_T1 = 44  # load-balancer weights move)
A_SB_PENALTY = 45  # cross-cluster latency a call to the standby adds, seconds
A_SB_REPLICAS = 46  # the standby deployment's replicas
A_SB_WORKERS = 47  # its worker pool per replica (the declared one)
# the standby's state, computed each tick while a failover is in effect
X_FO = 48  # share of calls going to the standby this tick
X_SB_RATE = 49  # requests/s the standby serves
X_SB_LAM = 50  # its arrival rate, settled over SETTLE_S
X_SB_MU = 51  # its residence time, penalty included: shift + lognormal(mu, sigma)
X_SB_SIGMA = 52
X_SB_SHIFT = 53
X_SB_ERRP = 54  # probability a request served by the standby fails
# the stationary queue and the metastable escape (see twin/flow/tipping.py)
X_WAITING = 55  # requests waiting for a worker beyond the fluid backlog: λ·W by Little's law
X_HOLD_VAR = 56  # variance of the holding time, seconds²
X_CALLER_CAP = 57  # most requests the callers' held workers can have inside (1e15: unbounded)
X_ESC_RATE = 58  # rate (1/s) at which a queue burst tips the service into a retry storm
X_ESC_LEVEL = 59  # backlog (requests) from which that storm sustains itself
X_ESC_LAM = 60  # offered rate the escape was computed for (recomputed when it moves 2%)
X_ESC_MU = 61  # capacity it was computed for
# the queue a service's callers hold for it: arrivals past the callers' cap wait upstream
X_SPILL_P = 62  # chance an arrival finds the queue past the cap
X_SPILL_X = 63  # ratio of the geometric levels beyond it
X_SPILL_RATE = 64  # completions per second that work those levels down
P_SVC_K3 = 65  # third cumulant of the own service time per mean³ (its distribution's shape)
P_CPU_IDLE = 66  # cores a ready replica burns with no requests (runtime threads, GC, probes)
# the own-time quadrature's node factors (twin.flow.queueing.own_time_moments) depend on the
# service-time cv alone: worked out when the cv is new, not at every service's every tick
GH_N = 20  # its Gauss-Hermite nodes
X_GH_CV = 67  # the cv the factors were worked out for (-1: not yet; a cv is never negative)
X_GH_FACTOR = 68  # first of GH_N rows: exp(σ·node − σ²/2), σ² = log(1 + cv²)
N_SERVICE_FIELDS = X_GH_FACTOR + GH_N

# --- per-edge rows ----------------------------------------------------------------------
E_K = 0  # expected calls per caller request (per_request × probability)
E_SYNC = 1
E_REQUIRED = 2
E_TIMEOUT = 3  # seconds
E_RETRIES = 4
E_BACKOFF = 5  # seconds before the first retry
E_BACKOFF_MULT = 6
E_BR_ON = 7
E_BR_THRESH = 8
E_BR_WINDOW = 9
E_BR_COOLDOWN = 10
E_BR_MINCALLS = 11
E_BR_HALFSHARE = 12
E_FAULT_FAIL = 13  # extra per-attempt failure probability (packet loss)
E_FAULT_LAT = 14  # extra per-attempt latency, seconds (retransmissions)
E_PARTITION = 15  # 1: every attempt hangs until its timeout and fails
E_BR_STATE = 16  # 0 closed, 1 open, 2 half-open
E_BR_SINCE = 17
E_BR_CALLS = 18  # windowed attempts
E_BR_FAILS = 19  # windowed failed attempts
E_P_ATTEMPT = 20  # per-attempt failure probability last tick
E_FORCED = 21  # -1 none, 0 forced closed, 1 forced open (an operator's action)
E_COST = 22  # what one call costs its caller this tick (retries, back-off), seconds
E_COST_VAR = 23  # its variance
E_ATT_COST = 24  # what one attempt costs its caller (the callee's residence cut at the timeout)
# a parallel caller's scratch: E_COST's lognormal by its moments, worked out once a tick
E_CDF_LOGMEAN = 25  # log of its mean
E_CDF_HALF_S2 = 26  # half its log-variance σ²
E_CDF_SQRT_S2 = 27  # σ; 0 where the cdf takes lognormal_cdf's general path (a step)
N_EDGE_FIELDS = 28

BREAKER_STATES = ("closed", "open", "half_open")

# --- telemetry axes ---------------------------------------------------------------------
SERVICE_METRICS = (
    "arrival_rate",  # requests/s arriving (external + calls, retries included)
    "throughput",  # requests/s completed successfully
    "error_rate",  # requests/s failed after being served
    "shed_rate",  # requests/s refused (queue full, no ready pod)
    "error_ratio",  # (failed + shed) / finished
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "cpu_cores",
    "cpu_utilization",  # of the CPU request, as the HPA sees it
    "memory_mb",  # per replica
    "queue",
    "in_flight",
    "worker_utilization",
    "ready_replicas",
    "desired_replicas",
)
M = {name: i for i, name in enumerate(SERVICE_METRICS)}
N_SERVICE_METRICS = len(SERVICE_METRICS)

EDGE_METRICS = ("call_rate", "failure_rate", "latency_ms", "breaker_state")
N_EDGE_METRICS = len(EDGE_METRICS)

# per node, with infrastructure (twin.infra.cluster fills them)
NODE_METRICS = (
    "up",  # 1 while its node-exporter answers scrapes (0 from the moment it stops)
    "ready",  # 1 Ready, 0 NotReady (as the API server reports it, 40 s after it stops)
    "schedulable",  # 0 when cordoned or tainted NoSchedule
    "cpu_cores",  # cores in use on the node (node-exporter: every process on it)
    "cpu_other_cores",  # of those, used outside the topology's pods (node minus cAdvisor)
    "cpu_utilization",  # of allocatable
    "memory_mb",  # memory in use on the node
    "memory_other_mb",  # of that, outside the topology's pods
    "memory_utilization",  # of allocatable
    "pods",  # pods bound to it
    "io_wait_ms",  # I/O wait a write sees
    "network_drop_ratio",  # share of packets its interface drops
    "oom_kills",  # counter of containers the kernel killed there
)
NODE_M = {name: i for i, name in enumerate(NODE_METRICS)}

# per-tick latency-distribution parameters kept for SLO evaluation (not written as metrics)
DIST_FIELDS = ("mu", "sigma", "shift")
