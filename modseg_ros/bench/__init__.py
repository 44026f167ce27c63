"""Benchmarks behind ``modseg bench <target>``: one module per target (see commands/bench.py)."""
