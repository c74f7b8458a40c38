"""Run the benchmarks: ``python -m benchmarks [NAME ...]`` (all when no name is given)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> dict[str, str]:
    """Benchmark names (``bench_<name>.py``) with their one-line description."""
    found = {}
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        doc = importlib.import_module(f"benchmarks.{path.stem}").__doc__ or ""
        found[name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks one after the other; non-zero if one failed."""
    benches = available()
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Run the smartmeter benchmarks.",
        epilog="benchmarks: " + "; ".join(f"{name}: {doc}" for name, doc in benches.items()),
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in benches]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(benches)})")
    status = 0
    for name in args.names or list(benches):
        print(f"== {name}: {benches[name]}", flush=True)
        start = time.perf_counter()
        status |= importlib.import_module(f"benchmarks.bench_{name}").run()
        print(f"== {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
