"""Firebreak command line: the only place that wires every layer together."""
