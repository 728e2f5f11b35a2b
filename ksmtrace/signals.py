"""Holding back Ctrl-C, SIGTERM and SIGHUP around code that an exception must not cut short."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: The signals whose Python handlers raise (KeyboardInterrupt, KnobGuard's SystemExit).
UNWINDING_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_deferred(signums: tuple[int, ...] = UNWINDING_SIGNALS) -> Iterator[list[int]]:
    """Hold back ``signums`` (main thread only); yield the list of those that arrived.

    The caller hands them on with :func:`redeliver` once it is safe. Elsewhere than in the
    main thread this does nothing: Python runs signal handlers only there.
    """
    arrived: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return
    previous: dict[int, Any] = {}
    try:
        for signum in signums:
            previous[signum] = signal.signal(signum, lambda s, _f: arrived.append(s))
        yield arrived
    finally:
        _put_back(previous)


def _put_back(previous: dict[int, Any]) -> None:
    """Reinstall ``previous`` handlers, every one of them.

    ``signal.signal`` first runs the handlers of signals already pending, and one that was
    put back a moment earlier may raise (KeyboardInterrupt). The handler is then not yet
    installed, so it is tried again, and that exception comes once all are back.
    """
    raised: BaseException | None = None
    for signum, handler in previous.items():
        for _attempt in range(1 + len(previous)):  # each pending signal raises at most once
            try:
                signal.signal(signum, handler)
                break
            except (ValueError, OSError, TypeError):
                raise  # not a handler of a pending signal: a real error
            except BaseException as exc:
                raised = raised or exc
    if raised is not None:
        raise raised


def redeliver(signum: int) -> None:
    """Hand a held-back signal to whatever handler is now installed."""
    handler = signal.getsignal(signum)
    if handler == signal.SIG_IGN:
        return
    if handler in (signal.SIG_DFL, None):
        raise SystemExit(128 + signum)
    signal.raise_signal(signum)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Run the block with the unwinding signals held back, then deliver what arrived."""
    with signals_deferred() as arrived:
        yield
    for signum in dict.fromkeys(arrived):
        redeliver(signum)


def exit_status(exc: SystemExit) -> int:
    """The exit status a SystemExit stands for (128 + N when signal N raised it)."""
    return exc.code if isinstance(exc.code, int) else 1
