"""A GGUF file's header read and checked before anything else reads the file: a file cut
short by a failed download, or another format under a .gguf name, is one sentence here
instead of a failure deep inside the converter (card sources and draft-card ask)."""

from __future__ import annotations

import struct
from pathlib import Path

from lm_probes.cards.files import SubjectLoadError

GGUF_MAGIC = b"GGUF"
# the fixed-size value types of GGUF's key-value section (gguf.GGUFValueType): type -> bytes
_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_DEFAULT_ALIGNMENT = 32


class _Ends(Exception):
    """The file ends (or a length runs past its end) inside what the header describes."""


class _GgufHeader:
    """A sequential reader of a GGUF file's header (magic, version, counts, key-value
    pairs, tensor infos), every length checked against the file's size before it is read:
    a file cut short, or garbage where a length should be, ends the read instead of
    allocating or unpacking past the end (struct.error)."""

    def __init__(self, fh, size: int):
        self.fh, self.size, self.pos, self.endian = fh, size, 0, "<"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise _Ends
        self.pos += n
        return self.fh.read(n)

    def number(self, code: str) -> int:
        return struct.unpack(self.endian + code, self.take(struct.calcsize(code)))[0]

    def string(self, wide: bool) -> bytes:
        return self.take(self.number("Q" if wide else "I"))

    def skip_value(self, kind: int, wide: bool) -> None:
        if kind in _GGUF_SCALAR_SIZES:
            self.take(_GGUF_SCALAR_SIZES[kind])
        elif kind == _GGUF_STRING:
            self.string(wide)
        elif kind == _GGUF_ARRAY:
            item, count = self.number("I"), self.number("Q" if wide else "I")
            if item in _GGUF_SCALAR_SIZES:
                self.take(_GGUF_SCALAR_SIZES[item] * count)
            else:
                for _ in range(count):
                    self.skip_value(item, wide)
        else:
            raise _Ends  # an unknown type: what follows cannot be where the header says


def _tensor_bytes(kind: int, dims: list[int]) -> int:
    """A tensor's size in the file (gguf's quantisation table), 0 where the type is unknown."""
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (ImportError, ValueError, KeyError):
        return 0  # the offsets alone are checked
    elements = 1
    for d in dims:
        elements *= d
    return elements // block * size


def gguf_problem(path: Path) -> str | None:
    """What is wrong with a GGUF file, checked before anything reads it (its header, and
    whether the file holds every tensor the header describes), or None for a complete one.
    A file cut short by a failed download otherwise fails deep inside the converter."""
    size = path.stat().st_size
    incomplete = f"{path} is not a complete GGUF file ({size} bytes"
    with open(path, "rb") as fh:
        reader = _GgufHeader(fh, size)
        try:
            magic = reader.take(4)
        except _Ends:
            return f"{incomplete}, not even the 4-byte magic {GGUF_MAGIC!r})"
        if magic != GGUF_MAGIC:
            return f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})"
        try:
            version = reader.number("I")
            swapped = struct.unpack(">I", struct.pack("<I", version))[0]
            if version not in (1, 2, 3) and swapped in (2, 3):
                reader.endian, version = ">", swapped  # a big-endian file (gguf writes them too)
            if version not in (1, 2, 3):
                return f"{path} says it is GGUF version {version}; versions 1 to 3 exist"
            count = "Q" if version >= 2 else "I"  # version 1 wrote 32-bit counts and lengths
            tensors, kvs = reader.number(count), reader.number(count)
        except _Ends:
            return f"{incomplete}, it ends inside the header)"
        says = f"header says {tensors} tensors and {kvs} metadata keys"
        alignment, end = _GGUF_DEFAULT_ALIGNMENT, 0
        try:
            for _ in range(kvs):
                key, kind = reader.string(count == "Q"), reader.number("I")
                if key == b"general.alignment" and kind == 4:
                    alignment = reader.number("I") or _GGUF_DEFAULT_ALIGNMENT
                else:
                    reader.skip_value(kind, count == "Q")
            for _ in range(tensors):
                reader.string(count == "Q")
                dims = [reader.number(count) for _ in range(reader.number("I"))]
                kind, offset = reader.number("I"), reader.number("Q")
                end = max(end, offset + _tensor_bytes(kind, dims))
        except _Ends:
            return f"{incomplete}, {says}, and it ends inside their descriptions)"
    data_start = -(-reader.pos // alignment) * alignment
    if tensors and data_start + end > size:  # (no tensors: no data, and no padding before it)
        return f"{incomplete}, {says}, whose data ends at byte {data_start + end})"
    return None


# files found complete, by path, size and modification time: a session checks the same
# file for every subject it builds (~40 ms each for SmolLM2's 49 152 vocabulary strings)
_COMPLETE_GGUF: set[tuple[str, int, int]] = set()


def check_gguf_file(path: Path, remedy: str = "download it again") -> None:
    """Raise SubjectLoadError naming ``path`` and the remedy unless it is a complete GGUF file."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _COMPLETE_GGUF:
        return
    problem = gguf_problem(path)
    if problem is not None:
        raise SubjectLoadError(f"{problem}: {remedy}")
    _COMPLETE_GGUF.add(key)
