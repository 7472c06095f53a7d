"""Incident memory: multimodal signatures, an SQLite incident library, few-shot recognition."""
