"""The only module that imports bcc: compile, load and attach BPF programs and read their maps."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ksmtrace.errors import HostError, ProbeError
from ksmtrace.faults import injected
from ksmtrace.signals import signals_held

try:  # Debian's python3-bpfcc, seen through a venv made with --system-site-packages.
    import bcc
except ImportError:  # pragma: no cover - exercised by doctor on hosts without bcc
    bcc = None


def bcc_available() -> bool:
    """Whether the bcc Python module (Debian python3-bpfcc) can be imported."""
    return bcc is not None


def bcc_version() -> str | None:
    """Version string of the imported bcc, if any."""
    return getattr(bcc, "__version__", None) if bcc is not None else None


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Path]:
    """Send file descriptor 2 to a temporary file (clang's warnings go there)."""
    saved = os.dup(2)
    with tempfile.NamedTemporaryFile(prefix="ksmtrace-bcc-", suffix=".log") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield Path(tmp.name)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _first_error(log: str) -> str:
    for line in log.splitlines():
        if "error:" in line:
            return re.sub(r"\s+", " ", line.strip())
    verifier = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith(";")]
    return verifier[-1].strip() if verifier else "no compiler output"


class BccProgram:
    """A compiled, loaded and attached BPF program (bcc ``BPF`` object)."""

    def __init__(
        self,
        text: str,
        *,
        kernel_source: Path | None,
        debug_log: Path | None = None,
    ) -> None:
        """Compile ``text`` with bcc and attach every probe it declares.

        Args:
            text: BPF C source (bcc dialect), fully rendered.
            kernel_source: a kernel header tree for bcc's built-in includes; None lets bcc
                find /lib/modules/$(uname -r)/build itself.
            debug_log: where to copy the compiler and verifier output, if anywhere.

        Raises:
            HostError: bcc is not installed.
            ProbeError: compilation, loading or attaching failed.
        """
        if bcc is None:
            raise HostError(
                "the bcc Python module is missing: install Debian's python3-bpfcc "
                "(apt-get install python3-bpfcc), not the PyPI package named bcc"
            )
        if injected("bpf-refused"):
            raise ProbeError(
                "the kernel refused a BPF program (Operation not permitted; injected fault); "
                "run 'ksmtrace doctor' for what this kernel allows"
            )
        if kernel_source is not None:
            os.environ["BCC_KERNEL_SOURCE"] = str(kernel_source)
        with _captured_stderr() as log_path:
            try:
                self._bpf: Any = bcc.BPF(text=text.encode())
            except Exception as exc:  # bcc raises bare Exception for every failure
                log = log_path.read_text(errors="replace")
                if debug_log is not None:
                    debug_log.write_text(log)
                raise ProbeError(_describe_failure(str(exc), log)) from exc
            if debug_log is not None:
                debug_log.write_text(log_path.read_text(errors="replace"))
        self._ring_callbacks: list[Any] = []
        self._deferred: list[BaseException] = []

    def attach_raw_tracepoint(self, tracepoint: str, function: str) -> None:
        """Attach the program ``function`` (not auto-attached) to a raw tracepoint."""
        try:
            self._bpf.attach_raw_tracepoint(tp=tracepoint.encode(), fn_name=function.encode())
        except Exception as exc:  # bcc raises bare Exception
            raise ProbeError(_describe_failure(str(exc), "")) from exc

    def detach_raw_tracepoint(self, tracepoint: str) -> None:
        """Detach whatever ``attach_raw_tracepoint`` attached to ``tracepoint``."""
        with contextlib.suppress(Exception):
            self._bpf.detach_raw_tracepoint(tp=tracepoint.encode())

    def set_array_u64(self, name: str, value: int, index: int = 0) -> None:
        """Store ``value`` at ``index`` of a ``BPF_ARRAY(name, u64, N)``."""
        table = self._bpf[name]
        table[ctypes.c_int(index)] = table.Leaf(value)

    def open_ring_buffer(self, name: str, on_record: Callable[[bytes], None]) -> None:
        """Call ``on_record(raw_bytes)`` for every record the ring buffer ``name`` delivers."""
        self._bpf[name].open_ring_buffer(self._ring_callback(on_record))

    def _ring_callback(self, on_record: Callable[[bytes], None]) -> Callable[[Any, Any, int], int]:
        """Wrap ``on_record`` for bcc's ctypes callback.

        ctypes prints and drops any exception raised inside a callback, so an error here
        is kept and raised again once bcc's poll returns (see ``_delivering``).
        """

        def _cb(_ctx: Any, data: Any, size: int) -> int:
            try:
                on_record(ctypes.string_at(data, size))
            except BaseException as exc:  # raised again after the poll
                self._deferred.append(exc)
            return 0

        self._ring_callbacks.append(_cb)  # bcc keeps only a ctypes wrapper: keep it alive
        return _cb

    @contextlib.contextmanager
    def _delivering(self) -> Iterator[None]:
        """Run a bcc poll so that nothing raised during it is lost.

        A Ctrl-C (KeyboardInterrupt) or SIGTERM (KnobGuard's SystemExit) that arrives
        while bcc runs its Python callback would be raised inside that callback, where
        ctypes drops it, and the session would run on. So those signals are held back
        for the poll and delivered after it, and errors the records raised come last.
        """
        with signals_held():
            yield
        if self._deferred:
            first = self._deferred[0]
            self._deferred.clear()
            raise first

    def poll(self, timeout_ms: int) -> None:
        """Deliver pending ring buffer records, waiting at most ``timeout_ms``."""
        with self._delivering():
            self._bpf.ring_buffer_poll(timeout_ms)

    def consume(self) -> None:
        """Deliver every pending ring buffer record without waiting."""
        with self._delivering():
            self._bpf.ring_buffer_consume()

    def array_u64(self, name: str) -> list[int]:
        """All values of a ``BPF_ARRAY(name, u64, N)``."""
        table = self._bpf[name]
        return [int(table[ctypes.c_int(i)].value) for i in range(len(table))]

    def array_struct(self, name: str, index: int = 0) -> dict[str, Any]:
        """Fields of entry ``index`` of an array of structs, as a dict."""
        leaf = self._bpf[name][ctypes.c_int(index)]
        return {f: _plain(getattr(leaf, f)) for f, _t in leaf._fields_}

    def set_array_struct(self, name: str, values: dict[str, Any], index: int = 0) -> None:
        """Overwrite fields of entry ``index`` of an array of structs."""
        table = self._bpf[name]
        leaf = table[ctypes.c_int(index)]
        for key, val in values.items():
            if isinstance(val, (list, tuple)):
                arr = getattr(leaf, key)
                for i, v in enumerate(val):
                    arr[i] = v
            else:
                setattr(leaf, key, val)
        table[ctypes.c_int(index)] = leaf

    def hash_entries(self, name: str) -> list[tuple[Any, dict[str, Any]]]:
        """Entries of a hash map whose values are structs: (opaque key, value fields)."""
        table = self._bpf[name]
        return [(k, {f: _plain(getattr(v, f)) for f, _t in v._fields_}) for k, v in table.items()]

    def hash_delete_keys(self, name: str, keys: list[Any]) -> None:
        """Delete the given keys (as returned by :meth:`hash_entries`) if still present."""
        table = self._bpf[name]
        for k in keys:
            with contextlib.suppress(KeyError):
                del table[k]

    def prune_by_mm(self, name: str, gone: dict[int, int]) -> int:
        """Delete entries of a ``hash({mm, ...}, u64 ts)`` map whose mm left KSM after ts.

        Args:
            name: the map (keys have an ``mm`` field, values are timestamps).
            gone: exit time by mm.

        Returns:
            How many entries were deleted.
        """
        table = self._bpf[name]
        doomed = [
            k
            for k, v in table.items_lookup_batch()
            if (t := gone.get(int(k.mm))) is not None and int(getattr(v, "value", v)) < t
        ]
        if doomed:
            keys = (table.Key * len(doomed))(*doomed)
            table.items_delete_batch(keys)
        return len(doomed)

    def count_by_mm(self, name: str) -> dict[int, int]:
        """Entries of a hash map with an ``mm`` key field, counted per mm."""
        counts: dict[int, int] = {}
        for k, _v in self._bpf[name].items_lookup_batch():
            counts[int(k.mm)] = counts.get(int(k.mm), 0) + 1
        return counts

    def hash_u64(self, name: str) -> dict[int, int]:
        """A ``hash(u64, u64)`` map as a dict."""
        return {int(k.value): int(v.value) for k, v in self._bpf[name].items()}

    def hash_delete_u64(self, name: str, keys: list[int]) -> None:
        """Delete ``u64`` keys from a hash map if still present."""
        table = self._bpf[name]
        for key in keys:
            with contextlib.suppress(KeyError):
                del table[table.Key(key)]

    def hash_len(self, name: str) -> int:
        """Number of entries of a hash map (walks the keys)."""
        return sum(1 for _ in self._bpf[name])

    def hash_delete_if(self, name: str, drop: Callable[[dict[str, int], int], bool]) -> int:
        """Delete entries of a ``hash(struct key, u64)`` map for which ``drop(key, value)``.

        Returns:
            How many entries were deleted.
        """
        table = self._bpf[name]
        doomed = []
        for k, v in table.items():
            key = {f: int(getattr(k, f)) for f, _t in k._fields_}
            if drop(key, int(v.value)):
                doomed.append(k)
        for k in doomed:
            with contextlib.suppress(KeyError):
                del table[k]
        return len(doomed)

    def close(self) -> None:
        """Detach every probe and free the maps."""
        bpf, self._bpf = self._bpf, None
        if bpf is not None:
            bpf.cleanup()


def _plain(value: Any) -> Any:
    if isinstance(value, int):
        return value
    if hasattr(value, "__len__") and not isinstance(value, (bytes, str)):
        return [int(v) for v in value]
    return int(value)


def _describe_failure(message: str, log: str) -> str:
    if "Failed to compile" in message:
        return (
            f"bcc could not compile the BPF program ({_first_error(log)}); check the kernel "
            "header tree with 'ksmtrace doctor'"
        )
    if "Failed to load" in message:
        return (
            f"the kernel refused a BPF program ({message.split(':')[-1].strip()}; verifier: "
            f"{_first_error(log)}); run 'ksmtrace doctor' for what this kernel allows"
        )
    if "Failed to attach" in message:
        return f"{message}; run 'ksmtrace doctor' to see which tracepoints this kernel has"
    return f"bcc failed: {message}"
