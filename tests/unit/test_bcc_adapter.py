"""The bcc adapter's ring buffer polls: Ctrl-C, SIGTERM and errors inside a record are not lost."""

from __future__ import annotations

import ctypes
import signal
from typing import Any

import pytest

from ksmtrace.probes.bcc_adapter import BccProgram

# The prototype bcc gives ring buffer callbacks (ctx, data, size).
_RING_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class _FakeRingBuffer:
    """Calls the callback through ctypes, as libbpf does, once per pending record."""

    def __init__(self, records: list[bytes]) -> None:
        self.records = records
        self.callback: Any = None

    def open_ring_buffer(self, callback: Any) -> None:
        self.callback = _RING_CB(callback)

    def deliver(self) -> None:
        while self.records:
            buf = ctypes.create_string_buffer(self.records.pop(0))
            self.callback(None, ctypes.addressof(buf), len(buf.raw))


class _FakeBpf:
    def __init__(self, ring: _FakeRingBuffer) -> None:
        self.ring = ring

    def __getitem__(self, name: str) -> _FakeRingBuffer:
        return self.ring

    def ring_buffer_poll(self, timeout_ms: int) -> None:
        self.ring.deliver()

    def ring_buffer_consume(self) -> None:
        self.ring.deliver()


def _program(records: list[bytes]) -> BccProgram:
    prog = BccProgram.__new__(BccProgram)  # no compilation: only the callback path is tested
    prog._bpf = _FakeBpf(_FakeRingBuffer(records))
    prog._ring_callbacks = []
    prog._deferred = []
    return prog


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # what KnobGuard installs for SIGTERM


@pytest.mark.parametrize(
    ("signum", "expected"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)]
)
@pytest.mark.parametrize("method", ["poll", "consume"])
def test_a_signal_arriving_inside_a_record_ends_the_poll(
    signum: int, expected: type[BaseException], method: str
) -> None:
    prog = _program([b"a", b"b", b"c"])
    seen: list[bytes] = []

    def on_record(raw: bytes) -> None:
        if raw.startswith(b"b"):
            signal.raise_signal(signum)  # Ctrl-C or kill, while bcc runs the callback
        seen.append(raw[:1])

    prog.open_ring_buffer("events", on_record)
    deliver = (lambda: prog.poll(1)) if method == "poll" else prog.consume
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with pytest.raises(expected):
            deliver()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [b"a", b"b", b"c"], "every record of the poll is still handled"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handlers put back"


def test_an_error_inside_a_record_is_raised_after_the_poll() -> None:
    prog = _program([b"a", b"b", b"c"])
    seen: list[bytes] = []

    def on_record(raw: bytes) -> None:
        if raw.startswith(b"b"):
            raise ValueError("bad record")
        seen.append(raw[:1])

    prog.open_ring_buffer("events", on_record)
    with pytest.raises(ValueError, match="bad record"):
        prog.poll(1)
    assert seen == [b"a", b"c"]
    prog.poll(1)  # raised once, not again on the next poll


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_plain_ctypes_callback_would_drop_the_interrupt() -> None:
    """Why the adapter defers: ctypes swallows an exception raised inside a callback."""
    ring = _FakeRingBuffer([b"x"])

    def raw_cb(_ctx: Any, _data: Any, _size: int) -> int:
        raise KeyboardInterrupt

    ring.open_ring_buffer(raw_cb)
    ring.deliver()  # returns normally: the KeyboardInterrupt is printed and lost
    assert ring.records == []
