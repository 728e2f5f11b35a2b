"""Holding back Ctrl-C, SIGTERM and SIGHUP: nothing lost, every handler put back."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from ksmtrace import signals
from ksmtrace.signals import UNWINDING_SIGNALS, signals_deferred, signals_held


def _handlers() -> dict[int, Any]:
    return {s: signal.getsignal(s) for s in UNWINDING_SIGNALS}


def test_a_held_back_ctrl_c_is_raised_after_the_block() -> None:
    before = _handlers()
    done = []
    with pytest.raises(KeyboardInterrupt), signals_held():
        signal.raise_signal(signal.SIGINT)
        done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
    assert _handlers() == before


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_held():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_handlers_are_all_put_back_when_a_signal_arrives_during_the_put_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C right after SIGINT's handler is back raises inside the next signal.signal."""
    before = _handlers()
    real_signal = signal.signal
    raised_once: list[bool] = []

    def racing_signal(signum: int, handler: Any) -> Any:
        if signum == signal.SIGTERM and handler is before[signal.SIGTERM] and not raised_once:
            raised_once.append(True)
            raise KeyboardInterrupt  # what the pending check of signal.signal would raise
        return real_signal(signum, handler)

    with pytest.raises(KeyboardInterrupt), signals_deferred():
        monkeypatch.setattr(signals.signal, "signal", racing_signal)
    monkeypatch.undo()
    assert raised_once == [True]
    assert _handlers() == before, "no held-back handler is left installed"


def test_a_real_error_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _handlers()
    real_signal = signal.signal
    calls: list[int] = []

    def broken_signal(signum: int, handler: Any) -> Any:
        if signum == signal.SIGHUP:
            calls.append(signum)
            raise ValueError("signal only works in main thread")
        return real_signal(signum, handler)

    with pytest.raises(ValueError), signals_deferred():
        monkeypatch.setattr(signals.signal, "signal", broken_signal)
    monkeypatch.undo()
    assert calls == [signal.SIGHUP]
    signal.signal(signal.SIGHUP, before[signal.SIGHUP])
