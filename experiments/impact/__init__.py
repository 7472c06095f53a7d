"""The impact study: traditional vs AI-driven operations, paired, with claims and verdicts."""
