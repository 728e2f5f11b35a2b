"""Holding back Ctrl-C, SIGTERM and SIGHUP around code that an exception must not cut short."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

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
    previous = {
        signum: signal.signal(signum, lambda s, _f: arrived.append(s)) for signum in signums
    }
    try:
        yield arrived
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
