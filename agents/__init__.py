"""Firebreak agents layer (see DESIGN.md)."""
