"""Run the benchmark modules of this package and print their figures.

usage: python -m benchmarks [--list] [NAME ...]

A module takes part when it defines ``run() -> list[str]``; modules run in name order,
each under a heading, and a failing module is reported without stopping the others.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable
from typing import cast

import benchmarks

Runner = Callable[[], list[str]]


def discover() -> dict[str, Runner]:
    """Every module of the package with a callable ``run``, by short name."""
    found: dict[str, Runner] = {}
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        run = getattr(module, "run", None)
        if callable(run):
            found[info.name] = cast(Runner, run)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    runners = discover()
    if args.list:
        print("\n".join(runners))
        return 0
    unknown = [n for n in args.names if n not in runners]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(runners)}")
        return 2
    failed = 0
    for name in args.names or list(runners):
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            for line in runners[name]():
                print(f"  {line}", flush=True)
        except Exception:
            failed += 1
            print(f"  FAILED:\n{traceback.format_exc()}", flush=True)
        print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
