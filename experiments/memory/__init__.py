"""Incident memory study: few-shot kind recognition, retrieval and transfer (T17)."""
