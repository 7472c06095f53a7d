"""Firebreak detectors layer (see DESIGN.md)."""
