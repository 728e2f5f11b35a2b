"""Tests of the BTF reader: the running kernel against bpftool, synthetic blobs, corrupt input."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ksmtrace.errors import HostError
from ksmtrace.kernel.btf import Btf, BtfError, BtfLookupError, FieldInfo

# ---------------------------------------------------------------------------------------------
# Synthetic BTF
# ---------------------------------------------------------------------------------------------

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC = 9, 10, 11, 12, 13, 14, 15
FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = 16, 17, 18, 19


class BtfBuilder:
    """Assembles a raw BTF blob type by type, the way pahole would lay it out."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.offsets: dict[str, int] = {"": 0}
        self.types: list[list[int]] = []

    def name(self, text: str) -> int:
        if text not in self.offsets:
            self.offsets[text] = len(self.strings)
            self.strings += text.encode() + b"\0"
        return self.offsets[text]

    def add(
        self,
        kind: int,
        name: str,
        size_or_type: int,
        trailer: list[int] | None = None,
        *,
        vlen: int = 0,
        kind_flag: bool = False,
    ) -> int:
        info = (kind << 24) | vlen | (int(kind_flag) << 31)
        self.types.append([self.name(name), info, size_or_type, *(trailer or [])])
        return len(self.types)

    def int_(self, name: str, size: int, bits: int = 0, bit_offset: int = 0) -> int:
        encoding = (bit_offset << 16) | (bits or size * 8)
        return self.add(INT, name, size, [encoding])

    def composite(
        self,
        kind: int,
        name: str,
        size: int,
        members: list[tuple[str, int, int, int]],
        *,
        kind_flag: bool = False,
    ) -> int:
        """Add a struct or union; members are (name, type id, bit offset, bitfield size)."""
        trailer: list[int] = []
        for member, type_id, bit_offset, bit_size in members:
            trailer += [self.name(member), type_id, (bit_size << 24) | bit_offset]
        return self.add(kind, name, size, trailer, vlen=len(members), kind_flag=kind_flag)

    def enum(self, name: str, values: list[tuple[str, int]], *, signed: bool = False) -> int:
        trailer: list[int] = []
        for enumerator, value in values:
            trailer += [self.name(enumerator), value & 0xFFFFFFFF]
        return self.add(ENUM, name, 4, trailer, vlen=len(values), kind_flag=signed)

    def enum64(self, name: str, values: list[tuple[str, int]], *, signed: bool = False) -> int:
        trailer: list[int] = []
        for enumerator, value in values:
            raw = value & 0xFFFFFFFFFFFFFFFF
            trailer += [self.name(enumerator), raw & 0xFFFFFFFF, raw >> 32]
        return self.add(ENUM64, name, 8, trailer, vlen=len(values), kind_flag=signed)

    def blob(self, order: str = "<", *, magic: int = 0xEB9F, version: int = 1) -> bytes:
        words = [word for record in self.types for word in record]
        type_section = struct.pack(f"{order}{len(words)}I", *words)
        header = struct.pack(
            f"{order}HBBIIIII",
            magic,
            version,
            0,
            24,
            0,
            len(type_section),
            len(type_section),
            len(self.strings),
        )
        return header + type_section + bytes(self.strings)


@dataclass
class Synthetic:
    """A synthetic blob and the layout facts the tests check against it."""

    blob: bytes
    builder: BtfBuilder
    ids: dict[str, int] = field(default_factory=dict)


def build_synthetic() -> Synthetic:
    """Build a blob with every BTF kind and a struct exercising the lookup rules.

    ``struct outer`` (kind_flag set, 48 bytes)::

        struct outer {
            u32 head;                       // bit 0
            union {                         // bit 64, anonymous
                struct inner in;            //   a at +0, b at +32 bits
                unsigned long raw;
            };
            unsigned int flags : 3;         // bit 128
            unsigned int mode : 5;          // bit 131
            enum color color;               // bit 160
            const volatile struct inner cin;// bit 192
            struct outer *next;             // bit 256
            u32 arr[4];                     // bit 320
        };
    """
    b = BtfBuilder()
    ids: dict[str, int] = {}
    uint = b.int_("unsigned int", 4)
    ulong = b.int_("long unsigned int", 8)
    u32 = ids["u32"] = b.add(TYPEDEF, "u32", uint)
    # Every remaining kind, so the scanner has to step over each record shape.
    b.add(FLOAT, "double", 8)
    b.add(RESTRICT, "", ulong)
    b.add(TYPE_TAG, "user", ulong)
    proto = b.add(FUNC_PROTO, "", uint, [b.name("x"), uint, 0, 0], vlen=2)
    func = ids["func"] = b.add(FUNC, "do_thing", proto)
    b.add(DECL_TAG, "kfunc", func, [0xFFFFFFFF])
    var = b.add(VAR, "counter", uint, [1])
    b.add(DATASEC, ".data", 4, [var, 0, 4], vlen=1)
    b.add(FWD, "outer", 0)
    b.composite(STRUCT, "dup", 0, [])
    ids["dup"] = b.composite(STRUCT, "dup", 4, [("x", uint, 0, 0)])
    inner = ids["inner"] = b.composite(STRUCT, "inner", 8, [("a", u32, 0, 0), ("b", u32, 32, 0)])
    anon = b.composite(UNION, "", 8, [("in", inner, 0, 0), ("raw", ulong, 0, 0)])
    color = ids["color"] = b.enum("color", [("RED", 0), ("GREEN", 5), ("NEG", -3)], signed=True)
    b.enum("", [("LOOSE", 0xFFFFFFFE)])
    b.enum64("big", [("HUGE", 1 << 40), ("MINUS", -(1 << 40))], signed=True)
    b.enum64("ubig", [("TOP", (1 << 64) - 1)])
    cv_inner = b.add(CONST, "", b.add(VOLATILE, "", inner))
    outer_placeholder = len(b.types) + 3  # struct outer, after the pointer and the array
    ptr = b.add(PTR, "", outer_placeholder)
    arr = b.add(ARRAY, "", 0, [u32, uint, 4])
    outer = ids["outer"] = b.composite(
        STRUCT,
        "outer",
        48,
        [
            ("head", u32, 0, 0),
            ("", anon, 64, 0),
            ("flags", uint, 128, 3),
            ("mode", uint, 131, 5),
            ("color", color, 160, 0),
            ("cin", cv_inner, 192, 0),
            ("next", ptr, 256, 0),
            ("arr", arr, 320, 0),
        ],
        kind_flag=True,
    )
    assert outer == outer_placeholder
    ids["outer_t"] = b.add(TYPEDEF, "outer_t", outer)
    # A struct without kind_flag whose bitfield is described by its INT type instead.
    legacy_int = b.int_("unsigned int", 4, bits=3, bit_offset=2)
    b.composite(STRUCT, "legacy", 4, [("bits", legacy_int, 8, 0)])
    return Synthetic(b.blob(), b, ids)


@pytest.fixture(scope="module")
def synthetic() -> Synthetic:
    return build_synthetic()


@pytest.fixture(scope="module", params=["<", ">"], ids=["little-endian", "big-endian"])
def syn(request: pytest.FixtureRequest) -> Btf:
    built = build_synthetic()
    return Btf.from_bytes(built.builder.blob(request.param))


def test_synthetic_direct_and_nested_members(syn: Btf) -> None:
    assert syn.field("outer", "head") == FieldInfo(0, 4, 0, 0, "u32")
    assert syn.field("outer", "in") == FieldInfo(8, 8, 64, 0, "struct inner")
    assert syn.field("outer", "raw") == FieldInfo(8, 8, 64, 0, "long unsigned int")
    assert syn.field("outer", "in.b") == FieldInfo(12, 4, 96, 0, "u32")
    assert syn.field("outer", "cin.b") == FieldInfo(28, 4, 224, 0, "u32")
    assert syn.field("outer", "cin").type_name == "const volatile struct inner"
    assert syn.field("outer", "next") == FieldInfo(32, 8, 256, 0, "struct outer *")
    assert syn.field("outer", "arr") == FieldInfo(40, 16, 320, 0, "u32[4]")
    assert syn.field("outer", "color") == FieldInfo(20, 4, 160, 0, "enum color")
    assert syn.offset_of("outer", "in.a") == 8
    assert syn.offset_of("outer_t", "in.b") == 12


def test_synthetic_bitfields(syn: Btf) -> None:
    assert syn.field("outer", "flags") == FieldInfo(16, 4, 128, 3, "unsigned int")
    assert syn.field("outer", "mode") == FieldInfo(16, 4, 131, 5, "unsigned int")
    assert syn.offset_of("outer", "flags") == 16  # a bitfield that starts on a byte boundary
    with pytest.raises(BtfError, match="bitfield starting at bit 131"):
        syn.offset_of("outer", "mode")
    assert syn.field("legacy", "bits") == FieldInfo(1, 4, 10, 3, "unsigned int")
    with pytest.raises(BtfError, match="bitfield"):
        syn.field("outer", "flags.x")


def test_synthetic_has_field(syn: Btf) -> None:
    assert syn.has_field("outer", "raw")
    assert syn.has_field("outer", "in.a")
    assert not syn.has_field("outer", "missing")
    assert not syn.has_field("outer", "in.c")
    assert not syn.has_field("outer", "next.head")  # through a pointer
    assert not syn.has_field("outer", "head.x")  # into an integer
    assert not syn.has_field("nosuch", "head")
    assert not syn.has_field("outer", "")
    assert not syn.has_field("outer", "in..a")


def test_synthetic_lookup_errors(syn: Btf) -> None:
    with pytest.raises(BtfError, match="is a pointer"):
        syn.field("outer", "next.head")
    with pytest.raises(BtfLookupError, match="no member 'zz' in outer.in") as excinfo:
        syn.field("outer", "in.zz")
    assert isinstance(excinfo.value, KeyError)
    assert isinstance(excinfo.value, HostError)
    assert "\n" not in str(excinfo.value)
    assert not str(excinfo.value).startswith("'")  # not quoted the way KeyError would be
    with pytest.raises(BtfLookupError, match="no struct 'nosuch'"):
        syn.field("nosuch", "a")
    with pytest.raises(BtfError, match="malformed member path"):
        syn.field("outer", "in.")


def test_synthetic_types_and_sizes(syn: Btf) -> None:
    assert syn.has_type("outer")
    assert syn.sizeof("outer") == 48
    assert syn.sizeof("inner") == 8
    assert syn.sizeof("dup") == 4  # the sized struct wins over an empty one of the same name
    assert syn.has_type("outer", "fwd")
    assert not syn.has_type("outer", "union")
    assert syn.sizeof("u32", "typedef") == 4
    assert syn.sizeof("outer_t", "typedef") == 48
    assert syn.sizeof("color", "enum") == 4
    assert syn.sizeof("big", "enum") == 8
    assert syn.sizeof("unsigned int", "int") == 4
    assert syn.has_type("do_thing", "func")
    assert syn.has_type("double", "float")
    assert not syn.has_type("u32")
    with pytest.raises(BtfLookupError, match="no struct 'u32'"):
        syn.sizeof("u32")
    with pytest.raises(KeyError):
        syn.sizeof("nosuch", "union")
    with pytest.raises(BtfError, match="has no size"):
        syn.sizeof("do_thing", "func")
    with pytest.raises(ValueError, match="unknown BTF kind"):
        syn.has_type("outer", "class")


def test_synthetic_enum_values(syn: Btf) -> None:
    assert syn.enum_value("RED") == 0
    assert syn.enum_value("GREEN") == 5
    assert syn.enum_value("NEG") == -3
    assert syn.enum_value("LOOSE") == 0xFFFFFFFE  # unsigned enum: no sign extension
    assert syn.enum_value("HUGE") == 1 << 40
    assert syn.enum_value("MINUS") == -(1 << 40)
    assert syn.enum_value("TOP") == (1 << 64) - 1
    with pytest.raises(BtfLookupError, match="no enumerator 'BLUE'"):
        syn.enum_value("BLUE")


def test_ambiguous_enumerator() -> None:
    b = BtfBuilder()
    b.enum("first", [("Opt_uid", 1)])
    b.enum("second", [("Opt_uid", 2), ("Opt_same", 3)])
    b.enum("third", [("Opt_same", 3)])
    btf = Btf.from_bytes(b.blob())
    with pytest.raises(BtfError, match="'Opt_uid' has different values"):
        btf.enum_value("Opt_uid")
    assert btf.enum_value("Opt_same") == 3


# ---------------------------------------------------------------------------------------------
# Corrupt input
# ---------------------------------------------------------------------------------------------


def _with_header(blob: bytes, **changes: int) -> bytes:
    names = ("magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off", "str_len")
    values = dict(zip(names, struct.unpack_from("<HBBIIIII", blob), strict=True))
    values.update(changes)
    return struct.pack("<HBBIIIII", *values.values()) + blob[24:]


def _queries(btf: Btf) -> None:
    """Exercise every query; corrupt data may make any of them raise, but only BtfError."""
    for call in (
        lambda: btf.field("outer", "in.b"),
        lambda: btf.field("outer", "cin.a"),
        lambda: btf.field("outer", "flags"),
        lambda: btf.field("legacy", "bits"),
        lambda: btf.offset_of("outer", "arr"),
        lambda: btf.sizeof("outer"),
        lambda: btf.sizeof("outer_t", "typedef"),
        lambda: btf.enum_value("HUGE"),
        lambda: btf.enum_value("NEG"),
    ):
        with contextlib.suppress(BtfError):
            call()
    btf.has_field("outer", "next.head")
    btf.has_type("inner", "union")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "is empty"),
        (b"\x9f\xeb\x01\x00", "header truncated"),
        (b"\x7fELF" + bytes(40), "bad magic 0x7f45"),
    ],
    ids=["empty", "short-header", "elf"],
)
def test_garbage_rejected(data: bytes, problem: str) -> None:
    with pytest.raises(BtfError, match=problem) as excinfo:
        Btf.from_bytes(data)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"magic": 0x1234}, "bad magic"),
        ({"version": 2}, "unsupported version 2"),
        ({"hdr_len": 8}, "header length 8 out of range"),
        ({"type_len": 1 << 20}, "type section truncated"),
        ({"str_len": 1 << 20}, "string section truncated"),
        ({"type_len": 6}, "not a multiple of 4"),
        ({"str_off": 0}, "overlap"),
    ],
)
def test_bad_header_rejected(synthetic: Synthetic, changes: dict[str, int], problem: str) -> None:
    with pytest.raises(BtfError, match=problem):
        Btf.from_bytes(_with_header(synthetic.blob, **changes))


def test_every_truncation_rejected(synthetic: Synthetic) -> None:
    blob = synthetic.blob
    for length in range(len(blob)):
        with pytest.raises(BtfError, match="not valid BTF"):
            Btf.from_bytes(blob[:length])


def test_truncated_type_record_rejected(synthetic: Synthetic) -> None:
    blob = synthetic.blob
    type_len = struct.unpack_from("<I", blob, 12)[0]
    # Declare a shorter type section so the last record (struct legacy) hangs off its end.
    with pytest.raises(BtfError, match=r"type #\d+ truncated"):
        Btf.from_bytes(_with_header(blob, type_len=type_len - 4))


def test_bad_records_rejected() -> None:
    b = BtfBuilder()
    b.add(25, "odd", 4)
    with pytest.raises(BtfError, match="unknown kind 25"):
        Btf.from_bytes(b.blob())

    b = BtfBuilder()
    b.int_("int", 4)
    b.types[0][0] = 10_000
    with pytest.raises(BtfError, match="name offset 10000 out of range"):
        Btf.from_bytes(b.blob())

    b = BtfBuilder()
    b.int_("int", 4)
    b.strings[-1] = ord("x")
    with pytest.raises(BtfError, match="NUL"):
        Btf.from_bytes(b.blob())


def test_dangling_and_cyclic_references_raise_btf_error() -> None:
    b = BtfBuilder()
    b.composite(STRUCT, "dangling", 8, [("p", 999, 0, 0)])
    loop = b.add(TYPEDEF, "loop", 0)
    b.types[loop - 1][2] = loop  # typedef loop loop;
    b.composite(STRUCT, "holder", 8, [("l", loop, 0, 0)])
    selfish = b.composite(STRUCT, "selfish", 8, [])
    b.types[selfish - 1] = b.types[selfish - 1][:3]
    b.types[selfish - 1][1] |= 2
    b.types[selfish - 1] += [0, selfish, 0, 0, selfish, 0]  # two anonymous members: itself
    btf = Btf.from_bytes(b.blob())
    with pytest.raises(BtfError, match="type #999, which does not exist"):
        btf.field("dangling", "p")
    with pytest.raises(BtfError, match="reference cycle"):
        btf.sizeof("loop", "typedef")
    with pytest.raises(BtfError, match="reference cycle"):
        btf.field("holder", "l.x")
    assert not btf.has_field("selfish", "x")


def test_random_corruption_only_raises_btf_error(synthetic: Synthetic) -> None:
    rng = random.Random(0x5EED)
    blob = synthetic.blob
    for _ in range(3000):
        data = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(data))
            data[position] = rng.choice((0, 0xFF, rng.randrange(256)))
        try:
            btf = Btf.from_bytes(bytes(data))
        except BtfError:
            continue
        _queries(btf)


def test_load_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(BtfError, match="does not exist; boot a kernel built with"):
        Btf.load(tmp_path / "vmlinux")
    with pytest.raises(BtfError, match="cannot read kernel BTF"):
        Btf.load(tmp_path)  # a directory
    corrupt = tmp_path / "corrupt"
    corrupt.write_bytes(b"\0" * 64)
    with pytest.raises(BtfError, match=f"{corrupt} is not valid BTF: bad magic"):
        Btf.load(corrupt)


def test_load_synthetic_file(tmp_path: Path, synthetic: Synthetic) -> None:
    path = tmp_path / "btf"
    path.write_bytes(synthetic.blob)
    assert Btf.load(path).offset_of("outer", "raw") == 8


# ---------------------------------------------------------------------------------------------
# The running kernel, checked against bpftool's own decoding of the same file
# ---------------------------------------------------------------------------------------------

VMLINUX = Path("/sys/kernel/btf/vmlinux")
BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"
# Offsets of the kernel this suite was written on; other kernels are checked only against
# bpftool.
PINNED_RELEASE = "6.18.44-fc-v1147"

STRUCTS = [
    "task_struct",
    "mm_struct",
    "ksm_rmap_item",
    "ksm_stable_node",
    "page",
    "sched_entity",
    "ksm_mm_slot",
]
NESTED_PATHS: list[tuple[str, str, int | None]] = [
    ("task_struct", "se.sum_exec_runtime", 232),
    ("task_struct", "mm", 1136),
    ("task_struct", "tgid", 1268),
    ("mm_struct", "owner", 1304),
    ("ksm_rmap_item", "address", 24),
    ("mm_struct", "pgd", None),
    ("page", "mapping", None),
    ("task_struct", "stack", None),
    ("task_struct", "nvcsw", None),
    ("task_struct", "nivcsw", None),
    ("mm_struct", "ksm_merging_pages", None),
]

_TYPE_LINE = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(.*)$")
_MEMBER_LINE = re.compile(r"^\t'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?$")
# bpftool suffixes ENUM64 values with ULL or LL.
_ENUMERATOR_LINE = re.compile(r"^\t'([^']*)' val=(-?\d+)(?:U?LL)?$")
_ATTR = re.compile(r"(\w+)=(\S+)")


@dataclass
class OracleType:
    """One type as bpftool prints it in raw format."""

    kind: str
    name: str
    attrs: dict[str, str]
    members: list[tuple[str, int, int, int]] = field(default_factory=list)


class Oracle:
    """Struct layouts decoded by bpftool (libbpf), independent of the reader under test."""

    def __init__(self, text: str) -> None:
        self.types: dict[int, OracleType] = {}
        self.by_name: dict[tuple[str, str], list[int]] = {}
        self.enumerators: dict[str, set[int]] = {}
        current: OracleType | None = None
        for line in text.splitlines():
            header = _TYPE_LINE.match(line)
            if header:
                type_id, kind, name, rest = header.groups()
                current = OracleType(kind, name, dict(_ATTR.findall(rest)))
                self.types[int(type_id)] = current
                self.by_name.setdefault((kind, name), []).append(int(type_id))
                continue
            if current is None:
                continue
            member = _MEMBER_LINE.match(line)
            if member and current.kind in ("STRUCT", "UNION"):
                name, type_id, bits, bitfield = member.groups()
                current.members.append((name, int(type_id), int(bits), int(bitfield or 0)))
            enumerator = _ENUMERATOR_LINE.match(line)
            if enumerator and current.kind in ("ENUM", "ENUM64"):
                self.enumerators.setdefault(enumerator[1], set()).add(int(enumerator[2]))

    def struct(self, name: str) -> OracleType:
        for type_id in self.by_name[("STRUCT", name)]:
            if self.types[type_id].attrs["size"] != "0":
                return self.types[type_id]
        raise AssertionError(f"bpftool shows no sized struct {name}")

    def strip(self, type_id: int) -> OracleType:
        found = self.types[type_id]
        while found.kind in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            found = self.types[int(found.attrs["type_id"])]
        return found

    def members(self, holder: OracleType, base: int = 0) -> list[tuple[str, int, int, int]]:
        """Members reachable without a name step, as (name, type id, bit offset, bitfield)."""
        out: list[tuple[str, int, int, int]] = []
        for name, type_id, bits, bitfield in holder.members:
            if name == "(anon)":
                out += self.members(self.strip(type_id), base + bits)
            else:
                out.append((name, type_id, base + bits, bitfield))
        return out

    def bit_offset(self, struct_name: str, path: str) -> int:
        """Sum of the member offsets bpftool shows along a dotted path."""
        holder = self.struct(struct_name)
        total = 0
        for step in path.split("."):
            _, type_id, bits, _ = next(m for m in self.members(holder) if m[0] == step)
            total += bits
            holder = self.strip(type_id)
        return total


@pytest.fixture(scope="module")
def kernel_btf() -> Btf:
    assert VMLINUX.exists(), f"{VMLINUX} is absent: ksmtrace needs a kernel built with BTF"
    return Btf.load(VMLINUX)


@pytest.fixture(scope="module")
def oracle(kernel_btf: Btf) -> Oracle:
    assert Path(BPFTOOL).exists(), "bpftool (the independent oracle) is missing: run make setup"
    dump = subprocess.run(
        [BPFTOOL, "btf", "dump", "file", str(VMLINUX), "format", "raw"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Oracle(dump.stdout)


@pytest.mark.parametrize("struct_name", STRUCTS)
def test_kernel_direct_members_match_bpftool(
    kernel_btf: Btf, oracle: Oracle, struct_name: str
) -> None:
    expected = oracle.struct(struct_name)
    assert kernel_btf.sizeof(struct_name) == int(expected.attrs["size"])
    assert expected.members
    for name, _, bits, bitfield in expected.members:
        if name == "(anon)":
            continue
        info = kernel_btf.field(struct_name, name)
        assert (info.bit_offset, info.bit_size) == (bits, bitfield), name
        assert info.offset == bits // 8, name
    # Members of anonymous structs and unions are reached by name, as in C.
    for name, _, bits, bitfield in oracle.members(expected):
        info = kernel_btf.field(struct_name, name)
        assert (info.bit_offset, info.bit_size) == (bits, bitfield), name


@pytest.mark.parametrize(
    ("struct_name", "path", "pinned"), NESTED_PATHS, ids=[f"{s}.{p}" for s, p, _ in NESTED_PATHS]
)
def test_kernel_paths_match_bpftool(
    kernel_btf: Btf, oracle: Oracle, struct_name: str, path: str, pinned: int | None
) -> None:
    expected_bits = oracle.bit_offset(struct_name, path)
    assert expected_bits % 8 == 0
    assert kernel_btf.field(struct_name, path).bit_offset == expected_bits
    assert kernel_btf.offset_of(struct_name, path) == expected_bits // 8
    assert kernel_btf.has_field(struct_name, path)
    if pinned is not None and os.uname().release == PINNED_RELEASE:
        assert expected_bits // 8 == pinned


def test_kernel_specifics(kernel_btf: Btf, oracle: Oracle) -> None:
    assert kernel_btf.sizeof("page") == int(oracle.struct("page").attrs["size"])
    if os.uname().release == PINNED_RELEASE:
        assert kernel_btf.sizeof("page") == 64
    assert kernel_btf.field("task_struct", "mm").type_name == "struct mm_struct *"
    assert kernel_btf.field("task_struct", "se.sum_exec_runtime").size == 8
    for name in ("MM_ANONPAGES", "MM_FILEPAGES", "NR_MM_COUNTERS", "BPF_F_CTXLEN_MASK"):
        assert {kernel_btf.enum_value(name)} == oracle.enumerators[name], name
    assert kernel_btf.has_type("task_struct")
    assert kernel_btf.has_type("pid_t", "typedef")
    assert kernel_btf.has_type("MM_ANONPAGES", "enum") is False
    assert not kernel_btf.has_field("task_struct", "mm.pgd")
    with pytest.raises(BtfError, match="is a pointer"):
        kernel_btf.field("task_struct", "mm.pgd")
