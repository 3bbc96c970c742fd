"""dynvm on a simulated farm, as the tests and the benchmarks both run it.

Serving dynvm under gunicorn and waiting on it (`serving`), process groups
that die with the test run however it ends (`processes`), INI files for a
farm (`inis`), simulated pools for host maintenance (`pools`). The tests'
own fixtures stay in `tests/`; the benchmarks never import `tests`.
"""
