"""Numeric arrays in MATLAB MAT-file version 5 (the format of MARS-style ``info/*.mat`` files).

Only what a video ReID index file needs: reading the numeric matrices of a file (compressed or not, either
byte order, any integer or floating element type) and writing double matrices (for the synthetic generator).
Cell arrays, structs, strings and sparse matrices are skipped when reading. Version 7.3 files are HDF5, not
MAT v5; they raise :class:`DataError` saying how to re-save them. Written here so reading G2A-VReID's index
needs no scipy.

Format: a 128-byte header (text, subsystem offset, version 0x0100, endian mark ``IM``) followed by data
elements ``(type, byte count, payload)`` padded to 8 bytes; a short payload (<= 4 bytes) shares the tag
word. A variable is a ``miMATRIX`` element (flags, dimensions, name, real part, optional imaginary part),
possibly wrapped in a zlib-compressed ``miCOMPRESSED`` element; data are stored column-major.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from trainers.errors import DataError

_MI_MATRIX = 14
_MI_COMPRESSED = 15
_MI_INT8 = 1
_MI_INT32 = 5
_MI_UINT32 = 6
_MI_DOUBLE = 9
#: Element type code -> numpy dtype (without byte order).
_MI_DTYPES: dict[int, str] = {
    1: "i1",
    2: "u1",
    3: "i2",
    4: "u2",
    5: "i4",
    6: "u4",
    7: "f4",
    9: "f8",
    12: "i8",
    13: "u8",
}
#: Array class code -> numpy dtype of the numeric classes (double, single, int8 ... uint64).
_NUMERIC_CLASSES: dict[int, str] = {
    6: "f8",
    7: "f4",
    8: "i1",
    9: "u1",
    10: "i2",
    11: "u2",
    12: "i4",
    13: "u4",
    14: "i8",
    15: "u8",
}
_CLASS_DOUBLE = 6
_COMPLEX_FLAG = 0x0800
_HEADER_BYTES = 128


def _elements(data: bytes, order: str, *, padded: bool) -> list[tuple[int, bytes]]:
    """Split a byte stream into ``(type, payload)`` elements. Sub-elements of a matrix are padded to
    8 bytes; top-level elements follow each other directly."""
    elements = []
    position = 0
    while position + 8 <= len(data):
        kind, count = struct.unpack_from(order + "II", data, position)
        if kind >> 16:  # small element: byte count in the upper half of the tag word
            count, kind = kind >> 16, kind & 0xFFFF
            elements.append((kind, data[position + 4 : position + 4 + count]))
            position += 8
            continue
        start = position + 8
        if start + count > len(data):
            raise ValueError(f"element of {count} bytes runs past the end of the data")
        elements.append((kind, data[start : start + count]))
        position = start + count
        if padded or kind != _MI_COMPRESSED:
            position += -count % 8
    return elements


def _numeric(kind: int, payload: bytes, order: str) -> np.ndarray:
    if kind not in _MI_DTYPES:
        raise ValueError(f"element type {kind} is not numeric")
    return np.frombuffer(payload, dtype=np.dtype(_MI_DTYPES[kind]).newbyteorder(order))


def _matrix(payload: bytes, order: str) -> tuple[str, np.ndarray] | None:
    """Name and array of one ``miMATRIX`` element, or None for a non-numeric class."""
    parts = _elements(payload, order, padded=True)
    if len(parts) < 3:
        raise ValueError("matrix element has fewer than 3 parts")
    flags = _numeric(parts[0][0], parts[0][1], order)
    array_class = int(flags[0]) & 0xFF
    dims = tuple(int(d) for d in _numeric(parts[1][0], parts[1][1], order))
    name = parts[2][1].decode("ascii", errors="replace")
    if array_class not in _NUMERIC_CLASSES:
        return None
    if len(parts) < 4:
        raise ValueError(f"matrix {name!r} has no data")
    real = _numeric(parts[3][0], parts[3][1], order).astype(_NUMERIC_CLASSES[array_class])
    if int(flags[0]) & _COMPLEX_FLAG:
        if len(parts) < 5:
            raise ValueError(f"complex matrix {name!r} has no imaginary part")
        real = real + 1j * _numeric(parts[4][0], parts[4][1], order)
    if real.size != int(np.prod(dims)):
        raise ValueError(f"matrix {name!r} has {real.size} values for dimensions {dims}")
    return name, real.reshape(dims, order="F")


def read_mat(path: Path | str) -> dict[str, np.ndarray]:
    """Every numeric matrix of a MAT v5 file, by variable name.

    Raises :class:`DataError` naming the file when it cannot be read, is not MAT v5 (v4, v7.3/HDF5) or is
    malformed.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read ({error.strerror})", path=path) from None
    if data[:8] == b"\x89HDF\r\n\x1a\n" or b"MATLAB 7.3" in data[:_HEADER_BYTES]:
        raise DataError("MAT v7.3 (HDF5) is not supported: re-save it with save(..., '-v7')", path=path)
    if len(data) < _HEADER_BYTES or not data.startswith(b"MATLAB 5.0"):
        raise DataError("not a MAT v5 file (its header does not start with 'MATLAB 5.0')", path=path)
    mark = data[126:128]
    if mark not in (b"IM", b"MI"):
        raise DataError(f"unknown byte-order mark {mark!r}", path=path)
    order = "<" if mark == b"IM" else ">"
    arrays: dict[str, np.ndarray] = {}
    try:
        for kind, payload in _elements(data[_HEADER_BYTES:], order, padded=False):
            if kind == _MI_COMPRESSED:
                inner = _elements(zlib.decompress(payload), order, padded=False)
                kind, payload = inner[0] if inner else (0, b"")
            if kind != _MI_MATRIX:
                continue
            found = _matrix(payload, order)
            if found is not None:
                arrays[found[0]] = found[1]
    except (ValueError, IndexError, struct.error, zlib.error) as error:
        raise DataError(f"malformed MAT v5 file ({error})", path=path) from None
    return arrays


def _element(kind: int, payload: bytes) -> bytes:
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def write_mat(path: Path | str, arrays: dict[str, np.ndarray]) -> None:
    """Write 1-D or 2-D numeric arrays as uncompressed little-endian double matrices (1-D as a row)."""
    header = b"MATLAB 5.0 MAT-file, written by agvp-hpo".ljust(116, b" ")
    chunks = [header, b"\0" * 8, struct.pack("<H", 0x0100), b"IM"]
    for name, value in arrays.items():
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.ndim != 2:
            raise ValueError(f"array {name!r} has {array.ndim} dimensions, but must have 1 or 2")
        body = (
            _element(_MI_UINT32, struct.pack("<II", _CLASS_DOUBLE, 0))
            + _element(_MI_INT32, struct.pack(f"<{array.ndim}i", *array.shape))
            + _element(_MI_INT8, name.encode("ascii"))
            + _element(_MI_DOUBLE, array.astype("<f8").tobytes(order="F"))
        )
        chunks.append(_element(_MI_MATRIX, body))
    Path(path).write_bytes(b"".join(chunks))
