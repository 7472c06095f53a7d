"""The Numenta Anomaly Benchmark: its scorer and our streaming detector for it."""
