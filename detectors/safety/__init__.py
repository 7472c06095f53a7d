"""Detectors as deployed models: a versioned registry, online monitoring, safe rollout."""
