"""Benchmarks: each entry measures the platform against a baseline in the same run, as ratios."""
