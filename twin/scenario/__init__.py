"""Scenarios as data: the typed schema, its loader, topologies, workloads, generated fleets."""
