"""Benchmark tables (NAS-Bench-201 first): explicit protocols, fast cached look-ups."""
