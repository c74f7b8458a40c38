"""Benchmarks for the smartmeter core (run them with ``scripts/bench``).

Every ``bench_<name>.py`` module here is one benchmark: it has a docstring (its
first line describes it) and a ``run() -> int`` that prints a table and one or
more ``target <name> <value> <goal>`` lines, and returns an exit status.
"""
