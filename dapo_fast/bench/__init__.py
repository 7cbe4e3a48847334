"""Benchmark runner and cases (`dapo-fast bench`)."""
