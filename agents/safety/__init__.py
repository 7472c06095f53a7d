"""What keeps automation safe: guardrails every action passes, and the audit log of each
decision."""
