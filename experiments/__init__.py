"""Firebreak experiments layer (see DESIGN.md)."""
