"""Argument types shared by the subcommands: checked at parse time, one-line errors."""

from __future__ import annotations

from collections.abc import Callable

from ksmtrace.errors import UsageError


def positive_int(option: str) -> Callable[[str], int]:
    """A parser for an integer > 0 (pids, counts, --top), naming ``option`` in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{option} needs a whole number, not {text!r}") from None
        if value <= 0:
            raise UsageError(f"{option} must be greater than 0, not {value}")
        return value

    return parse


def positive_float(option: str) -> Callable[[str], float]:
    """A parser for a number of seconds > 0, naming ``option`` in errors."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{option} needs a number of seconds, not {text!r}") from None
        if not value > 0:
            raise UsageError(f"{option} must be more than 0 seconds, not {text}")
        return value

    return parse
