"""Benchmarks: figures printed and written as JSON, never assertions (see docs/benchmarks.md)."""
