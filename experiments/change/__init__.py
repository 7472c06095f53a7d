"""Pre-production validation of a change: its chaos suite, canary, resilience search, report."""
