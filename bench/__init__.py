"""Benchmarks and the results report; run from the repository root."""
