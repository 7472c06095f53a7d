"""The closed loop: the operator that turns the twin's stream into actions, and its window on it."""
