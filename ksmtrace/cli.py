"""The ``ksmtrace`` command line: subcommands, one-line errors and signal handling."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
from types import FrameType, ModuleType
from typing import NoReturn

from ksmtrace import __version__, commands
from ksmtrace.errors import KsmtraceError

DESCRIPTION = """\
ksmtrace shows what Linux KSM (kernel samepage merging) does for each process, VM and
container: how much memory it merged, how fast writes break the merges again, and what
ksmd's scanning costs, checked against the kernel's own counters.
"""

EPILOG = """\
Start here:
  ksmtrace doctor          what this host offers and whether live tracing can run
  ksmtrace demo            a 30 s guided run on a built-in workload (changes and restores KSM knobs)
  ksmtrace trace           live per-process table; Ctrl-C ends it with a summary
  ksmtrace trace --json --duration 60 > ksm.jsonl

Live tracing needs root, BTF (/sys/kernel/btf/vmlinux), KSM and bcc (Debian python3-bpfcc).

Exit status: 0 done; 1 failed; 2 the host lacks something (root, BTF, KSM, bcc) or the
command line could not be parsed; 3 BPF refused; 4 invalid KSM knob value; 5 unreadable
trace or snapshot file; 64 a bad option value, or options that do not go together;
128+N ended by signal N.
"""


def command_modules() -> list[ModuleType]:
    """Every module of ksmtrace.commands with an ``add_parser``, in their ``ORDER``."""
    mods = [
        importlib.import_module(f"ksmtrace.commands.{info.name}")
        for info in pkgutil.iter_modules(commands.__path__)
    ]
    mods = [m for m in mods if hasattr(m, "add_parser")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


class OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose errors are one line that points to --help, not the usage."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line and exit with argparse's status (2)."""
        self.exit(2, f"ksmtrace: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered (subparsers share its class)."""
    parser = OneLineErrors(
        prog="ksmtrace",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ksmtrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        module.add_parser(sub)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each subcommand, by name."""
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM and SIGHUP unwind like Ctrl-C does, so every cleanup path runs.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run ksmtrace; returns the process exit status."""
    parser = build_parser()
    try:
        # Option types may raise a KsmtraceError (a bad --from, --max-size...).
        args, extra = parser.parse_known_args(argv)
        if extra:
            # Point to the help of the subcommand the unknown arguments were given to.
            owner = _subparsers(parser).get(getattr(args, "command", None) or "", parser)
            owner.error(f"unrecognized arguments: {' '.join(extra)}")
    except KsmtraceError as exc:
        print(f"ksmtrace: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.command is None:
        parser.print_help()
        return 0
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        return int(args.run(args))
    except KsmtraceError as exc:
        print(f"ksmtrace: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ksmtrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
