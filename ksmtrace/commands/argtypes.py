"""Argument types shared by the subcommands: checked at parse time, one-line errors."""

from __future__ import annotations

import math
from collections.abc import Callable

from ksmtrace.errors import UsageError

#: Longest time any option accepts: ten years, far beyond any trace yet finite.
MAX_SECONDS = 10 * 365 * 86400.0


def positive_int(option: str, maximum: int | None = None) -> Callable[[str], int]:
    """A parser for an integer > 0 (pids, counts, --top), naming ``option`` in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{option} needs a whole number, not {text!r}") from None
        if value <= 0:
            raise UsageError(f"{option} must be greater than 0, not {value}")
        if maximum is not None and value > maximum:
            raise UsageError(f"{option} must be at most {maximum}, not {value}")
        return value

    return parse


def _number(option: str, text: str, maximum: float, unit: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{option} needs a number{unit}, not {text!r}") from None
    if not math.isfinite(value):
        raise UsageError(f"{option} needs a finite number{unit}, not {text!r}")
    if value > maximum:
        raise UsageError(f"{option} must be at most {maximum:g}, not {text}")
    return value


def positive_float(option: str, maximum: float = MAX_SECONDS) -> Callable[[str], float]:
    """A parser for a finite number of seconds > 0, naming ``option`` in errors."""

    def parse(text: str) -> float:
        value = _number(option, text, maximum, " of seconds")
        if not value > 0:
            raise UsageError(f"{option} must be more than 0 seconds, not {text}")
        return value

    return parse


def nonnegative_float(
    option: str, maximum: float = MAX_SECONDS, unit: str = " of seconds"
) -> Callable[[str], float]:
    """A parser for a finite number >= 0 (0 meaning 'off' or 'as recorded' where said)."""

    def parse(text: str) -> float:
        value = _number(option, text, maximum, unit)
        if value < 0:
            raise UsageError(f"{option} must be 0 or more, not {text}")
        return value

    return parse
