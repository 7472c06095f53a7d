"""The RCA suite: seeded fault cases, every method on them, the metrics."""
