"""``ksmtrace headers``: show or install the kernel header tree bcc compiles against."""

from __future__ import annotations

import argparse
from typing import Any

from ksmtrace.kernel.headers import find_header_tree, install_header_tree

ORDER = 90
HELP = "show, or --install, the kernel header tree bcc needs"


def add_parser(sub: Any) -> None:
    """Register the ``headers`` subcommand."""
    p = sub.add_parser(
        "headers",
        help=HELP,
        description=(
            "bcc compiles BPF programs at run time against a kernel header tree. ksmtrace "
            "takes no struct layout from it (offsets come from BTF), so when the running "
            "kernel ships no headers, Debian's linux-headers packages serve: --install "
            "downloads and unpacks them under /var/cache/ksmtrace (nothing is written to "
            "/lib/modules, nothing is installed with dpkg)."
        ),
        epilog=(
            "examples:\n"
            "  ksmtrace headers              which tree bcc will use\n"
            "  ksmtrace headers --install    unpack Debian's headers if none (root)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--install", action="store_true", help="download and unpack if missing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print where the headers come from; install them first if asked."""
    tree = install_header_tree() if args.install else find_header_tree()
    if tree is None:
        print("No kernel header tree for bcc. Run: ksmtrace headers --install")
        return 1
    print(f"bcc will use {tree.origin}")
    return 0
