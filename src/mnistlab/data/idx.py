"""IDX files (the MNIST format), read strictly: every header field is checked before allocating.

Layout: 2 zero bytes, a dtype code, the number of dimensions, one big-endian uint32 per
dimension, then the data in C order. A file whose header declares 10^12 items is refused from its
header alone, and a gzip file is never decompressed past the size its header promises.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnistlab.errors import DataError

__all__ = ["IdxHeader", "read_idx", "parse_idx_bytes", "idx_bytes", "idx_sha256",
           "MAX_IDX_BYTES", "MAX_IDX_DIMS"]

DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_IDX_BYTES = 2 * 1024**3  # no MNIST-style file comes close; refuse before allocating
MAX_IDX_DIMS = 8  # MNIST files have 1 or 3; numpy itself stops at 64
_CHUNK_BYTES = 1024**2  # read in pieces, so memory follows the bytes present, not promised


@dataclass(frozen=True)
class IdxHeader:
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def data_bytes(self) -> int:
        n = self.dtype.itemsize
        for d in self.shape:
            n *= d
        return n


def parse_header(head: bytes, name: str) -> IdxHeader:
    """Decode and check the header; `head` holds at least the first 4 bytes."""
    if len(head) < 4:
        raise DataError(f"{name}: not an IDX file: {len(head)} bytes, shorter than a header")
    if head[0] != 0 or head[1] != 0:
        raise DataError(
            f"{name}: not an IDX file: magic number starts with {head[:2].hex()}, expected 0000"
        )
    code, ndim = head[2], head[3]
    if code not in DTYPES:
        allowed = ", ".join(f"0x{c:02X}" for c in DTYPES)
        raise DataError(f"{name}: IDX dtype code 0x{code:02X} is unknown; allowed: {allowed}")
    if not 1 <= ndim <= MAX_IDX_DIMS:
        raise DataError(f"{name}: IDX header declares {ndim} dimensions; expected 1 to "
                        f"{MAX_IDX_DIMS}")
    need = 4 + 4 * ndim
    if len(head) < need:
        raise DataError(f"{name}: truncated IDX header: {len(head)} bytes, need {need}")
    shape = struct.unpack(f">{ndim}I", head[4:need])
    header = IdxHeader(DTYPES[code], tuple(int(d) for d in shape))
    # A zero dimension makes the size 0 but numpy still refuses absurd shapes: bound both.
    bound = header.dtype.itemsize
    for d in header.shape:
        bound *= max(d, 1)
    if bound > MAX_IDX_BYTES:
        raise DataError(
            f"{name}: IDX header declares shape {header.shape} ({header.data_bytes:,} bytes); "
            f"refusing more than {MAX_IDX_BYTES:,} bytes"
        )
    return header


def parse_idx_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode a whole uncompressed IDX byte string, checking its exact length."""
    header = parse_header(data[:1024], name)
    expected = header.header_bytes + header.data_bytes
    if len(data) != expected:
        raise DataError(
            f"{name}: IDX size mismatch: header declares shape {header.shape} "
            f"({expected:,} bytes with header); file has {len(data):,} bytes"
        )
    arr = np.frombuffer(data, dtype=header.dtype, offset=header.header_bytes)
    return arr.reshape(header.shape).astype(header.dtype.newbyteorder("="), copy=False)


def _read_at_most(fh: BinaryIO, n: int) -> bytes:
    """Up to `n` bytes, in chunks: `fh.read(n)` would reserve all `n` bytes before reading."""
    chunks, left = [], n
    while left > 0:
        chunk = fh.read(min(left, _CHUNK_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path: str | Path, max_bytes: int | None = None) -> tuple[np.ndarray, str]:
    """Read an IDX file (plain or gzip) -> (array, SHA-256 of the uncompressed bytes).

    `max_bytes` bounds the uncompressed size (header included) that the header may declare,
    e.g. a dataset file's registered size: a larger promise is refused from the header, before
    anything is decompressed.

    Raises DataError naming the file for every defect: wrong magic, unknown dtype, a size that
    disagrees with the header or exceeds `max_bytes`, a broken gzip stream, or an unreadable file.
    """
    path = Path(path)
    name = str(path)
    try:
        with _open(path) as fh:
            head = fh.read(4)
            if len(head) == 4:
                head += fh.read(4 * head[3])
            header = parse_header(head, name)
            declared = header.header_bytes + header.data_bytes
            if max_bytes is not None and declared > max_bytes:
                raise DataError(
                    f"{name}: IDX header declares shape {header.shape} ({declared:,} bytes with "
                    f"header); refusing more than the expected {max_bytes:,} bytes"
                )
            # Read at most one byte more than promised: enough to detect trailing data.
            body = _read_at_most(fh, header.data_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise DataError(f"{name}: cannot read: {exc.strerror}") from None
        raise DataError(f"{name}: corrupt or truncated gzip stream ({exc})") from None
    if len(body) != header.data_bytes:
        raise DataError(
            f"{name}: IDX size mismatch: header declares shape {header.shape} "
            f"({header.data_bytes:,} data bytes); file has "
            f"{len(body):,}{'+' if len(body) > header.data_bytes else ''} data bytes"
        )
    digest = hashlib.sha256(head)
    digest.update(body)
    arr = np.frombuffer(body, dtype=header.dtype).reshape(header.shape)
    return arr.astype(header.dtype.newbyteorder("="), copy=False), digest.hexdigest()


def _idx_parts(array: np.ndarray, who: str) -> tuple[bytes, np.ndarray]:
    """(IDX header, the data as a C-ordered big-endian array: a view when it already is one)."""
    codes = {v.newbyteorder(">") if v.itemsize > 1 else v: k for k, v in DTYPES.items()}
    be = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if be not in codes:
        raise DataError(f"{who}: dtype {array.dtype} has no IDX code")
    head = bytes([0, 0, codes[be], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head, np.ascontiguousarray(array, dtype=be)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as IDX (used to verify arrays from other layouts, and by tests)."""
    head, data = _idx_parts(array, "idx_bytes")
    return head + data.tobytes()


def idx_sha256(array: np.ndarray) -> str:
    """SHA-256 of `idx_bytes(array)` without building it: the registry's content checksum of a
    decoded (e.g. memory-mapped) array, hashed in place when it is uint8 and contiguous."""
    head, data = _idx_parts(array, "idx_sha256")
    digest = hashlib.sha256(head)
    digest.update(data.reshape(-1).view(np.uint8))  # the bytes, viewed, not copied
    return digest.hexdigest()
