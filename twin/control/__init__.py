"""The control plane in discrete events: pods, the HPA, faults, operator actions, what-if forks."""
