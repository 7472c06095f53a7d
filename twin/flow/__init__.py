"""The flow fidelity: the vectorised, compiled per-tick model of every service at once."""
