"""Event chunk codec: numpy event records to and from the column-wise compressed BLOBs."""

from __future__ import annotations

import zlib

import numpy as np

from ksmtrace.events import EVENT_DTYPE, EventArray

#: Column-wise records, ``ts_ns`` delta-encoded, zlib-compressed.
CODEC_ZLIB = "col1+zlib"
#: Column-wise records, ``ts_ns`` delta-encoded, stored as is.
CODEC_PLAIN = "col1"
CODECS = (CODEC_ZLIB, CODEC_PLAIN)

#: Most events per chunk row: about 3.6 MB of records.
CHUNK_EVENTS = 65536


class CodecError(ValueError):
    """A chunk does not decode (unknown codec, bad compression, wrong length)."""


def event_fields(dtype: np.dtype = EVENT_DTYPE) -> list[list[str]]:
    """[name, numpy type string] of each field, as stored in the header."""
    assert dtype.names is not None
    return [[name, dtype.fields[name][0].str] for name in dtype.names]  # type: ignore[index]


def stored_dtype(spec: list[list[str]]) -> np.dtype:
    """The record dtype a file's ``event_fields`` header describes."""
    return np.dtype([(str(name), str(typ)) for name, typ in spec])


def encode_events(records: EventArray, level: int = 1) -> tuple[str, bytes]:
    """Encode records as one chunk: each field's column in turn, ``ts_ns`` as deltas.

    Args:
        records: events in :data:`EVENT_DTYPE`.
        level: zlib level, 0 for no compression.

    Returns:
        (codec name, bytes).
    """
    ts = records["ts_ns"]
    deltas = np.empty_like(ts)
    if len(ts):
        deltas[0] = ts[0]
        np.subtract(ts[1:], ts[:-1], out=deltas[1:])  # wraps modulo 2**64 when unordered
    parts = [deltas.tobytes()]
    assert records.dtype.names is not None
    parts += [np.ascontiguousarray(records[f]).tobytes() for f in records.dtype.names[1:]]
    raw = b"".join(parts)
    if level <= 0:
        return CODEC_PLAIN, raw
    return CODEC_ZLIB, zlib.compress(raw, level)


def decode_events(codec: str, data: bytes, count: int, dtype: np.dtype) -> EventArray:
    """Decode one chunk into :data:`EVENT_DTYPE` records.

    Args:
        codec: the chunk's codec name.
        data: the chunk's bytes.
        count: number of events the chunk holds.
        dtype: the stored record layout (from the header's ``event_fields``); fields the
            current event model lacks are dropped, fields it added are zero.

    Raises:
        CodecError: the chunk does not decode to ``count`` records.
    """
    if codec == CODEC_ZLIB:
        try:
            raw = zlib.decompress(data)
        except zlib.error as exc:
            raise CodecError(f"compressed data is damaged ({exc})") from exc
    elif codec == CODEC_PLAIN:
        raw = data
    else:
        raise CodecError(f"unknown chunk codec {codec!r}")
    if len(raw) != count * dtype.itemsize:
        raise CodecError(f"{len(raw)} bytes where {count} events need {count * dtype.itemsize}")
    out = np.zeros(count, dtype=EVENT_DTYPE)
    offset = 0
    assert dtype.names is not None
    for name in dtype.names:
        col_type = dtype.fields[name][0]  # type: ignore[index]
        col = np.frombuffer(raw, dtype=col_type, count=count, offset=offset)
        offset += count * col_type.itemsize
        if name in EVENT_DTYPE.names:  # type: ignore[operator]
            out[name] = col
    out["ts_ns"] = np.cumsum(out["ts_ns"], dtype=np.uint64)
    return out
