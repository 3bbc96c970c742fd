"""Helpers of the tests alone: tokens, a Couchbase SDK stand-in, a clock the test moves,
file checks, the maintenance service. What the benchmarks share with the tests (serving
dynvm, INI files, simulated pools) is in `testbed/`.
"""
