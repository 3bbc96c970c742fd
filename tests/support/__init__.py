"""Helpers shared by the tests and the benchmarks: serving dynvm, waiting, sample pools.

They live beside the tests, so tests never depend on benchmarks; `bench/`
imports them from here.
"""
