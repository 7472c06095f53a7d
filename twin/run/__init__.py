"""One scenario to one run directory: the run, its writers, causal labels, SLOs, fidelity checks."""
