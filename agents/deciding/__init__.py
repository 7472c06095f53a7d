"""From an incident to a decision: runbooks, risk-aware selection, automation levels."""
