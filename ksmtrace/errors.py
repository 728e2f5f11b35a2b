"""Error types of ksmtrace and the exit status each maps to on the command line."""

from __future__ import annotations


class KsmtraceError(Exception):
    """Root of every error ksmtrace reports to a user as one line.

    The message must say what is wrong and what to do about it, in one sentence or two.
    """

    exit_code = 1


class HostError(KsmtraceError):
    """The host lacks something ksmtrace needs (root, BTF, KSM, bcc, kernel headers)."""

    exit_code = 2


class ProbeError(KsmtraceError):
    """A BPF program could not be compiled, loaded or attached."""

    exit_code = 3


class KnobError(KsmtraceError):
    """A KSM sysfs knob value was invalid or could not be written."""

    exit_code = 4


class TraceFormatError(KsmtraceError):
    """A trace file is unreadable, truncated, corrupt or from an unknown format version."""

    exit_code = 5


class UsageError(KsmtraceError):
    """The command line asked for something inconsistent."""

    exit_code = 64
