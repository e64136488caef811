"""Benchmarks: printed tables and JSON under bench/results/. Speed goals live here, not in tests."""
