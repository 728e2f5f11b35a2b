"""``python -m ksmtrace.dashboards [DIR]``: write the Grafana dashboards (default dashboards/)."""

from __future__ import annotations

import sys
from pathlib import Path

from ksmtrace.dashboards import write_all


def main(argv: list[str]) -> int:
    """Write the dashboards into the directory given, or ./dashboards."""
    directory = Path(argv[0]) if argv else Path("dashboards")
    for path in write_all(directory):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
