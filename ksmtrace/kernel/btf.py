"""Pure-Python reader of raw kernel BTF that resolves struct layouts and enum values by name."""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ksmtrace.errors import HostError

__all__ = ["Btf", "BtfError", "BtfLookupError", "FieldInfo"]

# Raw BTF starts with this 16-bit magic in the byte order of the machine that produced it.
_MAGIC = 0xEB9F
_VERSION = 1
# magic u16, version u8, flags u8, hdr_len u32, type_off u32, type_len u32, str_off u32, str_len u32
_HEADER = struct.Struct("<HBBIIIII")
_HEADER_BE = struct.Struct(">HBBIIIII")

# Type kinds (bits 24-28 of the info word of every type record).
_INT = 1
_PTR = 2
_ARRAY = 3
_STRUCT = 4
_UNION = 5
_ENUM = 6
_FWD = 7
_TYPEDEF = 8
_VOLATILE = 9
_CONST = 10
_RESTRICT = 11
_FUNC = 12
_FUNC_PROTO = 13
_VAR = 14
_DATASEC = 15
_FLOAT = 16
_DECL_TAG = 17
_TYPE_TAG = 18
_ENUM64 = 19
_MAX_KIND = _ENUM64

# For each kind: u32 words following the 3-word common header, as (fixed, per vlen entry).
_TRAILER_WORDS: tuple[tuple[int, int], ...] = (
    (0, 0),  # 0: unknown, rejected while scanning
    (1, 0),  # INT: encoding word
    (0, 0),  # PTR
    (3, 0),  # ARRAY: elem type, index type, nelems
    (0, 3),  # STRUCT: name_off, type, offset per member
    (0, 3),  # UNION: same as STRUCT
    (0, 2),  # ENUM: name_off, s32/u32 value per enumerator
    (0, 0),  # FWD
    (0, 0),  # TYPEDEF
    (0, 0),  # VOLATILE
    (0, 0),  # CONST
    (0, 0),  # RESTRICT
    (0, 0),  # FUNC
    (0, 2),  # FUNC_PROTO: name_off, type per parameter
    (1, 0),  # VAR: linkage
    (0, 3),  # DATASEC: type, offset, size per variable
    (0, 0),  # FLOAT
    (1, 0),  # DECL_TAG: component index
    (0, 0),  # TYPE_TAG
    (0, 3),  # ENUM64: name_off, low 32 bits, high 32 bits per enumerator
)

# Kind names accepted by Btf.has_type and Btf.sizeof, and the BTF kinds each one covers.
_KIND_NAMES: dict[str, tuple[int, ...]] = {
    "struct": (_STRUCT,),
    "union": (_UNION,),
    "enum": (_ENUM, _ENUM64),
    "typedef": (_TYPEDEF,),
    "func": (_FUNC,),
    "int": (_INT,),
    "float": (_FLOAT,),
    "fwd": (_FWD,),
    "var": (_VAR,),
    "datasec": (_DATASEC,),
}
# Kinds whose names are indexed; the others (modifiers, pointers, arrays, tags) are anonymous
# in practice or not looked up by name.
_NAMED_KINDS = frozenset(k for kinds in _KIND_NAMES.values() for k in kinds)
# Kinds whose third header word is a size in bytes, so "non-zero size" can rank duplicates.
_SIZED_KINDS = frozenset({_INT, _STRUCT, _UNION, _ENUM, _ENUM64, _FLOAT, _DATASEC})
# Kinds that only qualify another type and are looked through when resolving a member's type.
_MODIFIERS = frozenset({_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG})
# Longest chain of modifiers, array dimensions or anonymous members followed before the data is
# declared cyclic; real kernels stay far below it.
_MAX_DEPTH = 64
# Types spelled at most for one type name; a longer spelling is cut short with "...".
_MAX_SPELLED_TYPES = 64
# Pointer size when the BTF has no "long" integer to infer it from.
_DEFAULT_PTR_SIZE = 8


class BtfError(HostError):
    """BTF is missing, unreadable or corrupt, or lacks a type or field ksmtrace needs."""


class BtfLookupError(BtfError, KeyError):
    """A type, field or enumerator asked for by name is not in the BTF."""

    def __str__(self) -> str:
        # KeyError would quote the message; keep the one-line form of every ksmtrace error.
        return Exception.__str__(self)


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """Where a (possibly nested) struct member lives.

    Attributes:
        offset: Bytes from the start of the outermost struct (rounded down for bitfields).
        size: Bytes of the member's type; for a bitfield, of its underlying integer type.
        bit_offset: Bits from the start of the outermost struct.
        bit_size: Width in bits of a bitfield; 0 for an ordinary member.
        type_name: The member's type in C-like spelling, e.g. ``"u64"`` or ``"struct mm_struct *"``.
    """

    offset: int
    size: int
    bit_offset: int
    bit_size: int
    type_name: str


class Btf:
    """Type information of one raw BTF blob, indexed by name once at load time.

    Type records are decoded on demand; loading only walks the type section to learn where
    each record starts and which named types exist.
    """

    __slots__ = (
        "_enum_ids",
        "_enumerators",
        "_names",
        "_ptr_size",
        "_source",
        "_starts",
        "_str_cache",
        "_strings",
        "_words",
    )

    def __init__(
        self,
        words: array[int],
        strings: bytes,
        starts: array[int],
        names: dict[str, list[int]],
        enum_ids: list[int],
        source: str,
    ) -> None:
        """Wrap already validated sections; use :meth:`load` or :meth:`from_bytes` instead."""
        self._words = words
        self._strings = strings
        self._starts = starts
        self._names = names
        self._enum_ids = enum_ids
        self._source = source
        self._str_cache: dict[int, str] = {}
        self._enumerators: dict[str, list[tuple[int, int]]] | None = None
        self._ptr_size: int | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, path: Path) -> Btf:
        """Read and index a raw BTF file such as ``/sys/kernel/btf/vmlinux``.

        Args:
            path: The BTF file.

        Returns:
            The indexed BTF.

        Raises:
            BtfError: The file is missing, unreadable, or not well-formed raw BTF.
        """
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BtfError(
                f"kernel BTF {path} does not exist; boot a kernel built with"
                " CONFIG_DEBUG_INFO_BTF=y"
            ) from None
        except OSError as exc:
            raise BtfError(
                f"cannot read kernel BTF {path}: {exc.strerror or exc}; check its permissions"
                " or run ksmtrace as root"
            ) from None
        return cls._parse(data, str(path))

    @classmethod
    def from_bytes(cls, data: bytes) -> Btf:
        """Index raw BTF held in memory.

        Args:
            data: The whole BTF blob (header, type section, string section).

        Returns:
            The indexed BTF.

        Raises:
            BtfError: The data is not well-formed raw BTF.
        """
        return cls._parse(bytes(data), "BTF data")

    @classmethod
    def _parse(cls, data: bytes, source: str) -> Btf:
        """Validate the header and sections of ``data`` and index its types."""

        def corrupt(problem: str) -> BtfError:
            return BtfError(
                f"{source} is not valid BTF: {problem}; supply an uncorrupted raw BTF file"
                " such as /sys/kernel/btf/vmlinux"
            )

        if not data:
            raise corrupt("it is empty")
        if len(data) < _HEADER.size:
            raise corrupt(f"header truncated ({len(data)} of {_HEADER.size} bytes)")
        header = _HEADER
        if _HEADER.unpack_from(data)[0] != _MAGIC:
            header = _HEADER_BE
            if _HEADER_BE.unpack_from(data)[0] != _MAGIC:
                raise corrupt(f"bad magic 0x{data[0]:02x}{data[1]:02x} (expected 0xeb9f)")
        _, version, _, hdr_len, type_off, type_len, str_off, str_len = header.unpack_from(data)
        if version != _VERSION:
            raise corrupt(f"unsupported version {version} (expected {_VERSION})")
        if hdr_len < _HEADER.size or hdr_len > len(data):
            raise corrupt(f"header length {hdr_len} out of range")
        type_start = hdr_len + type_off
        str_start = hdr_len + str_off
        if type_start + type_len > len(data):
            raise corrupt(
                f"type section truncated (ends at byte {type_start + type_len}, data has"
                f" {len(data)})"
            )
        if str_start + str_len > len(data):
            raise corrupt(
                f"string section truncated (ends at byte {str_start + str_len}, data has"
                f" {len(data)})"
            )
        if type_len % 4:
            raise corrupt(f"type section length {type_len} is not a multiple of 4")
        if type_start < str_start + str_len and str_start < type_start + type_len:
            raise corrupt("type and string sections overlap")
        strings = data[str_start : str_start + str_len]
        if not strings or strings[0] != 0 or strings[-1] != 0:
            raise corrupt("string section does not start and end with a NUL byte")

        words = array("I")
        if words.itemsize != 4:  # pragma: no cover - every CPython platform has a 4-byte "I"
            raise BtfError("this Python has no 32-bit array type; BTF cannot be read")
        words.frombytes(data[type_start : type_start + type_len])
        if (header is _HEADER) != (sys.byteorder == "little"):
            words.byteswap()

        starts, names, enum_ids = cls._scan(words, strings, corrupt)
        return cls(words, strings, starts, names, enum_ids, source)

    @staticmethod
    def _scan(
        words: array[int],
        strings: bytes,
        make_error: Callable[[str], BtfError],
    ) -> tuple[array[int], dict[str, list[int]], list[int]]:
        """Walk the type section once: record starts, index names, collect enum type ids."""
        n_words = len(words)
        n_strings = len(strings)
        trailer = _TRAILER_WORDS
        named = _NAMED_KINDS
        find = strings.find
        # Type id 0 is "void" and has no record; keep a placeholder so ids index directly.
        starts = array("I", [0])
        append_start = starts.append
        names: dict[str, list[int]] = {}
        enum_ids: list[int] = []
        pos = 0
        type_id = 0
        while pos < n_words:
            type_id += 1
            if pos + 3 > n_words:
                raise make_error(f"type #{type_id} truncated")
            info = words[pos + 1]
            kind = (info >> 24) & 0x1F
            if kind == 0 or kind > _MAX_KIND:
                raise make_error(f"type #{type_id} has unknown kind {kind}")
            fixed, per_entry = trailer[kind]
            end = pos + 3 + fixed + per_entry * (info & 0xFFFF)
            if end > n_words:
                raise make_error(f"type #{type_id} truncated")
            append_start(pos)
            if kind in named:
                name_off = words[pos]
                if name_off:
                    if name_off >= n_strings:
                        raise make_error(f"type #{type_id} has name offset {name_off} out of range")
                    name = strings[name_off : find(b"\0", name_off)].decode("utf-8", "replace")
                    bucket = names.get(name)
                    if bucket is None:
                        names[name] = [type_id]
                    else:
                        bucket.append(type_id)
                if kind in (_ENUM, _ENUM64):
                    enum_ids.append(type_id)
            pos = end
        return starts, names, enum_ids

    # ------------------------------------------------------------------ public queries

    def has_type(self, name: str, kind: str = "struct") -> bool:
        """Tell whether a type of this name and kind exists.

        Args:
            name: Type name without a ``struct``/``union``/``enum`` keyword.
            kind: One of ``struct``, ``union``, ``enum``, ``typedef``, ``func``, ``int``
                (also ``float``, ``fwd``, ``var``, ``datasec``).

        Returns:
            True when at least one such type exists. A forward declaration does not count as
            a struct or union.

        Raises:
            ValueError: ``kind`` is not a known kind name.
        """
        return self._find_type(name, kind) is not None

    def sizeof(self, name: str, kind: str = "struct") -> int:
        """Return the size in bytes of a named type.

        Args:
            name: Type name without a ``struct``/``union``/``enum`` keyword.
            kind: Kind name as for :meth:`has_type`.

        Returns:
            The size in bytes; typedefs are resolved to their target.

        Raises:
            BtfLookupError: No such type exists.
            BtfError: The type has no size (a function, or a typedef of an incomplete type).
            ValueError: ``kind`` is not a known kind name.
        """
        return self._sizeof_id(self._require_type(name, kind))

    def field(self, struct: str, path: str) -> FieldInfo:
        """Locate a member of a struct, following a dotted path through embedded members.

        Each step is looked up among the current struct's or union's members, including the
        members of anonymous structs and unions nested in it (as C allows). Typedefs and
        const/volatile qualifiers are looked through; pointers are not, because the pointee
        does not live inside the struct.

        Args:
            struct: Name of the outermost struct (a union or a typedef of either also works).
            path: Member names separated by dots, e.g. ``"se.sum_exec_runtime"``.

        Returns:
            Offset, size, bit position and type of the member.

        Raises:
            BtfLookupError: The struct or one of the members does not exist.
            BtfError: A step goes through a pointer or a non-aggregate member, or the path is
                malformed.
        """
        type_id = self._find_outer(struct)
        steps = path.split(".")
        if not path or any(not step for step in steps):
            raise BtfError(
                f"malformed member path {path!r} for struct {struct}; use dot-separated names"
                " such as 'se.sum_exec_runtime'"
            )
        bit_offset = 0
        bit_size = 0
        walked = struct
        for step in steps:
            if bit_size:
                raise BtfError(
                    f"{walked} is a bitfield and has no member {step!r}; fix the member path"
                )
            holder = self._strip(type_id)
            kind = self._kind(holder)
            if kind == _PTR:
                raise BtfError(
                    f"{walked} is a pointer, so {walked}.{step} is not inside {struct}; read"
                    f" the pointer and look the member up in the pointee's struct instead"
                )
            if kind not in (_STRUCT, _UNION):
                raise BtfError(
                    f"{walked} is a {self._type_name(type_id)}, not a struct or union, so it"
                    f" has no member {step!r}; fix the member path"
                )
            found = self._find_member(holder, step, 0)
            if found is None:
                raise BtfLookupError(
                    f"kernel BTF has no member {step!r} in {walked}"
                    f" ({self._type_name(holder)}); this kernel lays the struct out"
                    " differently, check the member path"
                )
            type_id, member_bits, bit_size = found
            bit_offset += member_bits
            walked = f"{walked}.{step}"
        if not bit_size:
            bit_size, extra_bits = self._legacy_bitfield(type_id)
            bit_offset += extra_bits
        return FieldInfo(
            offset=bit_offset // 8,
            size=self._sizeof_id(type_id),
            bit_offset=bit_offset,
            bit_size=bit_size,
            type_name=self._type_name(type_id),
        )

    def offset_of(self, struct: str, path: str) -> int:
        """Return the byte offset of a (possibly nested) member, as :meth:`field` locates it.

        Args:
            struct: Name of the outermost struct.
            path: Dotted member path.

        Returns:
            Bytes from the start of ``struct``.

        Raises:
            BtfLookupError: The struct or a member does not exist.
            BtfError: As for :meth:`field`, or the member is a bitfield that does not start
                on a byte boundary.
        """
        info = self.field(struct, path)
        if info.bit_offset % 8:
            raise BtfError(
                f"{struct}.{path} is a bitfield starting at bit {info.bit_offset}, not on a"
                " byte boundary; use field() and mask the containing word instead"
            )
        return info.offset

    def has_field(self, struct: str, path: str) -> bool:
        """Tell whether :meth:`field` would locate the member.

        Args:
            struct: Name of the outermost struct.
            path: Dotted member path.

        Returns:
            False when the struct or a member is missing or the path crosses a pointer.
        """
        try:
            self.field(struct, path)
        except BtfError:
            return False
        return True

    def enum_value(self, name: str) -> int:
        """Return the value of an enumerator, searching every ENUM and ENUM64 type.

        Args:
            name: Enumerator name, e.g. ``"MM_ANONPAGES"``.

        Returns:
            Its value, signed or unsigned as its enum declares.

        Raises:
            BtfLookupError: No enum has this enumerator.
            BtfError: Several enums define it with different values.
        """
        index = self._enumerators
        if index is None:
            index = self._enumerators = self._index_enumerators()
        found = index.get(name)
        if not found:
            raise BtfLookupError(
                f"kernel BTF has no enumerator {name!r}; this kernel does not define it,"
                " check the name"
            )
        values = {value for value, _ in found}
        if len(values) > 1:
            owners = ", ".join(
                f"{self._type_name(enum_id)}={value}" for value, enum_id in found[:4]
            )
            raise BtfError(
                f"enumerator {name!r} has different values in different enums ({owners});"
                " it is ambiguous, use a name defined only once"
            )
        return found[0][0]

    # ------------------------------------------------------------------ record access

    def _record(self, type_id: int) -> int:
        """Return the word index of a type record, rejecting dangling type ids."""
        if type_id <= 0 or type_id >= len(self._starts):
            raise BtfError(
                f"{self._source} is not valid BTF: reference to type #{type_id}, which does"
                f" not exist; supply an uncorrupted raw BTF file"
            )
        return self._starts[type_id]

    def _kind(self, type_id: int) -> int:
        """Return the kind of a type; 0 for void."""
        if type_id == 0:
            return 0
        return (self._words[self._record(type_id) + 1] >> 24) & 0x1F

    def _str(self, offset: int) -> str:
        """Return the string at ``offset`` in the string section."""
        cached = self._str_cache.get(offset)
        if cached is not None:
            return cached
        strings = self._strings
        if offset >= len(strings):
            raise BtfError(
                f"{self._source} is not valid BTF: string offset {offset} is past the string"
                " section; supply an uncorrupted raw BTF file"
            )
        text = strings[offset : strings.find(b"\0", offset)].decode("utf-8", "replace")
        self._str_cache[offset] = text
        return text

    def _strip(self, type_id: int) -> int:
        """Follow typedefs, qualifiers and type tags to the underlying type."""
        words = self._words
        for _ in range(_MAX_DEPTH):
            if type_id == 0:
                return 0
            pos = self._record(type_id)
            if (words[pos + 1] >> 24) & 0x1F not in _MODIFIERS:
                return type_id
            type_id = words[pos + 2]
        raise self._cycle(type_id)

    def _cycle(self, type_id: int) -> BtfError:
        """Build the error for a reference chain that never ends."""
        return BtfError(
            f"{self._source} is not valid BTF: type #{type_id} is part of a reference cycle"
            " or nested too deeply; supply an uncorrupted raw BTF file"
        )

    # ------------------------------------------------------------------ name lookup

    def _find_type(self, name: str, kind: str) -> int | None:
        """Return the best type id of this name and kind, or None.

        Among several candidates the first one with a non-zero size wins, matching libbpf's
        first-match rule while skipping empty placeholders.
        """
        try:
            kinds = _KIND_NAMES[kind]
        except KeyError:
            raise ValueError(
                f"unknown BTF kind name {kind!r}; use one of {', '.join(_KIND_NAMES)}"
            ) from None
        fallback: int | None = None
        words = self._words
        for type_id in self._names.get(name, ()):
            pos = self._starts[type_id]
            type_kind = (words[pos + 1] >> 24) & 0x1F
            if type_kind not in kinds:
                continue
            if type_kind not in _SIZED_KINDS or words[pos + 2] != 0:
                return type_id
            if fallback is None:
                fallback = type_id
        return fallback

    def _require_type(self, name: str, kind: str) -> int:
        """Return the type id as :meth:`_find_type` does, raising when there is none."""
        type_id = self._find_type(name, kind)
        if type_id is None:
            raise BtfLookupError(
                f"kernel BTF has no {kind} {name!r}; this kernel does not define it, check"
                " the name and kind"
            )
        return type_id

    def _find_outer(self, name: str) -> int:
        """Find the struct, union or typedef-of-aggregate a member path starts from."""
        for kind in ("struct", "union"):
            type_id = self._find_type(name, kind)
            if type_id is not None:
                return type_id
        type_id = self._find_type(name, "typedef")
        if type_id is not None and self._kind(self._strip(type_id)) in (_STRUCT, _UNION):
            return type_id
        raise BtfLookupError(
            f"kernel BTF has no struct {name!r}; this kernel does not define it, check the name"
        )

    def _find_member(
        self, holder: int, name: str, depth: int, searched: set[int] | None = None
    ) -> tuple[int, int, int] | None:
        """Find a member by name in a struct or union, descending into anonymous members.

        Args:
            holder: Type id of the struct or union.
            name: Member name.
            depth: Anonymous levels already descended.
            searched: Aggregates already searched without success during this lookup. Each
                is searched at most once, which bounds the work even for corrupt data in
                which anonymous members refer back to their container.

        Returns:
            (member type id, bit offset within ``holder``, bitfield size) or None.
        """
        if depth > _MAX_DEPTH:
            raise self._cycle(holder)
        if searched is None:
            searched = set()
        elif holder in searched:
            return None
        searched.add(holder)
        words = self._words
        pos = self._record(holder)
        info = words[pos + 1]
        kind_flag = info >> 31
        anonymous: list[tuple[int, int]] = []
        for entry in range(pos + 3, pos + 3 + 3 * (info & 0xFFFF), 3):
            name_off = words[entry]
            member_type = words[entry + 1]
            raw_offset = words[entry + 2]
            if kind_flag:
                bit_offset, bit_size = raw_offset & 0xFFFFFF, raw_offset >> 24
            else:
                bit_offset, bit_size = raw_offset, 0
            if name_off == 0:
                anonymous.append((member_type, bit_offset))
            elif self._str(name_off) == name:
                return member_type, bit_offset, bit_size
        # C forbids a name appearing twice in the merged member scope, so search order only
        # matters for corrupt data; declaration order is used.
        for member_type, bit_offset in anonymous:
            inner = self._strip(member_type)
            if self._kind(inner) in (_STRUCT, _UNION):
                found = self._find_member(inner, name, depth + 1, searched)
                if found is not None:
                    return found[0], bit_offset + found[1], found[2]
        return None

    def _legacy_bitfield(self, type_id: int) -> tuple[int, int]:
        """Decode a bitfield encoded in an INT type (structs without kind_flag).

        Returns:
            (bitfield size, extra bit offset), or (0, 0) for an ordinary integer.
        """
        inner = self._strip(type_id)
        if self._kind(inner) != _INT:
            return 0, 0
        pos = self._record(inner)
        encoding = self._words[pos + 3]
        nr_bits = encoding & 0xFF
        extra = (encoding >> 16) & 0xFF
        if nr_bits == self._words[pos + 2] * 8 and extra == 0:
            return 0, 0
        return nr_bits, extra

    # ------------------------------------------------------------------ sizes and names

    def _pointer_size(self) -> int:
        """Infer the target's pointer size from its ``long`` integer type."""
        if self._ptr_size is None:
            size = _DEFAULT_PTR_SIZE
            for name in ("long unsigned int", "long int", "unsigned long", "long"):
                type_id = self._find_type(name, "int")
                if type_id is not None:
                    size = self._words[self._starts[type_id] + 2]
                    break
            self._ptr_size = size
        return self._ptr_size

    def _sizeof_id(self, type_id: int) -> int:
        """Return the size in bytes of a type, following modifiers and array dimensions."""
        words = self._words
        count = 1
        for _ in range(_MAX_DEPTH):
            kind = self._kind(type_id)
            if kind == 0:
                raise BtfError(f"type void has no size; {self._size_hint()}")
            pos = self._record(type_id)
            if kind in _SIZED_KINDS:
                return count * words[pos + 2]
            if kind == _PTR:
                return count * self._pointer_size()
            if kind == _ARRAY:
                count *= words[pos + 5]
                type_id = words[pos + 3]
            elif kind in _MODIFIERS or kind == _VAR:
                type_id = words[pos + 2]
            else:
                raise BtfError(
                    f"{self._type_name(type_id)} has no size (it is a"
                    f" {_kind_label(kind)}); {self._size_hint()}"
                )
        raise self._cycle(type_id)

    @staticmethod
    def _size_hint() -> str:
        """Return the advice attached to "has no size" errors."""
        return "ask for the size of a complete struct, union, enum, integer or typedef"

    def _type_name(self, type_id: int) -> str:
        """Spell a type the way C would (approximately), for messages and FieldInfo."""
        return self._spell(type_id, [_MAX_SPELLED_TYPES])

    def _spell(self, type_id: int, budget: list[int]) -> str:
        """Spell one type, spending ``budget[0]`` so that cyclic or huge types stay cheap."""
        if type_id == 0:
            return "void"
        if budget[0] <= 0:
            return "..."
        budget[0] -= 1
        words = self._words
        pos = self._record(type_id)
        info = words[pos + 1]
        kind = (info >> 24) & 0x1F
        name = self._str(words[pos]) if words[pos] else ""
        if kind in (_STRUCT, _UNION, _ENUM, _ENUM64, _FWD):
            if kind == _FWD:
                keyword = "union" if info >> 31 else "struct"
            else:
                keyword = {_STRUCT: "struct", _UNION: "union"}.get(kind, "enum")
            return f"{keyword} {name or '(anon)'}"
        if kind in (_PTR, _CONST, _VOLATILE, _RESTRICT):
            inner = self._spell(words[pos + 2], budget)
            if kind == _PTR:
                return f"{inner}*" if inner.endswith("*") else f"{inner} *"
            qualifier = {_CONST: "const", _VOLATILE: "volatile", _RESTRICT: "restrict"}[kind]
            return f"{inner} {qualifier}" if inner.endswith("*") else f"{qualifier} {inner}"
        if kind == _ARRAY:
            return f"{self._spell(words[pos + 3], budget)}[{words[pos + 5]}]"
        if kind == _TYPE_TAG:
            return self._spell(words[pos + 2], budget)
        if kind == _FUNC_PROTO:
            ret = self._spell(words[pos + 2], budget)
            params = [
                self._spell(words[entry + 1], budget) if words[entry + 1] else "..."
                for entry in range(pos + 3, pos + 3 + 2 * (info & 0xFFFF), 2)
            ]
            return f"{ret} ({', '.join(params) or 'void'})"
        return name or f"({_kind_label(kind)})"

    # ------------------------------------------------------------------ enumerators

    def _index_enumerators(self) -> dict[str, list[tuple[int, int]]]:
        """Map every enumerator name to its (value, enum type id) pairs."""
        words = self._words
        index: dict[str, list[tuple[int, int]]] = {}
        for enum_id in self._enum_ids:
            pos = self._starts[enum_id]
            info = words[pos + 1]
            signed = bool(info >> 31)
            wide = (info >> 24) & 0x1F == _ENUM64
            stride = 3 if wide else 2
            for entry in range(pos + 3, pos + 3 + stride * (info & 0xFFFF), stride):
                if wide:
                    value = words[entry + 1] | (words[entry + 2] << 32)
                    if signed and value >= 1 << 63:
                        value -= 1 << 64
                else:
                    value = words[entry + 1]
                    if signed and value >= 1 << 31:
                        value -= 1 << 32
                index.setdefault(self._str(words[entry]), []).append((value, enum_id))
        return index


def _kind_label(kind: int) -> str:
    """Return a readable name of a BTF kind number."""
    labels = (
        "void",
        "int",
        "pointer",
        "array",
        "struct",
        "union",
        "enum",
        "forward declaration",
        "typedef",
        "volatile",
        "const",
        "restrict",
        "function",
        "function prototype",
        "variable",
        "data section",
        "float",
        "declaration tag",
        "type tag",
        "enum",
    )
    return labels[kind] if 0 <= kind < len(labels) else f"kind {kind}"
