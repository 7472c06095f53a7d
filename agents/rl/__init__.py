"""Reinforcement-learning remediation and autoscaling agents (stable-baselines3).

Importing this package registers `firebreak/Remediation-v0` and `firebreak/Autoscale-v0`
with gymnasium. Without importing it first, `gymnasium.make("agents.rl:firebreak/
Remediation-v0")` imports it for you (gymnasium 1.x has no plugin entry points).
"""

from agents.rl.envs import AUTOSCALE_ID, ENV_IDS, REMEDIATION_ID, make_autoscale, make_remediation
from agents.rl.envs import register_envs as _register

_register()

__all__ = ["AUTOSCALE_ID", "ENV_IDS", "REMEDIATION_ID", "make_autoscale", "make_remediation"]
