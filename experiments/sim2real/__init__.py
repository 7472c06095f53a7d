"""The sim-to-real check: the same RCA methods on real faults and on their twin cases."""
