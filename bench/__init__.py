"""Benchmarks (not tests): `make bench` or `python -m bench [--json] [--only NAME]`."""
