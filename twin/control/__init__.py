"""The control plane in discrete events: pods, the HPA, faults, operator actions, what-if forks."""

from twin.control import remedy_actions as _remedy_actions  # registers drain and set_retries

__all__: list[str] = []
del _remedy_actions
