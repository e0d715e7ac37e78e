"""Benchmarks and long-running fault runs (not part of the installed package)."""
