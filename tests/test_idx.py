import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from mnistlab.data.idx import idx_bytes, idx_sha256, parse_idx_bytes, read_idx
from mnistlab.errors import DataError


def _write(tmp_path, data: bytes, gz: bool = False):
    path = tmp_path / ("f.gz" if gz else "f")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_round_trip_all_dtypes(tmp_path, gz, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if np.dtype(dtype) == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out, digest = read_idx(_write(tmp_path, idx_bytes(array), gz))
    np.testing.assert_array_equal(out, array)
    import hashlib

    assert digest == hashlib.sha256(idx_bytes(array)).hexdigest()
    np.testing.assert_array_equal(parse_idx_bytes(idx_bytes(array)), array)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "shorter than a header"),
        (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", "magic number"),
        (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x05", "dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02", "truncated IDX header"),
        (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"\x01\x02", "size mismatch"),
        (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x01\x02", "size mismatch"),
        (b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3, "refusing more than"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_defects_name_file_and_problem(tmp_path, data, message, gz):
    path = _write(tmp_path, data, gz)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    path = tmp_path / "t.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="corrupt or truncated|size mismatch"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("gz", [False, True])
def test_max_bytes_refuses_a_larger_promise_from_the_header(tmp_path, gz):
    """A 100 KB gzip file promising 94 MB (120,000 images) against a registered 47 MB: refused
    before decompressing, in constant memory."""
    head = b"\x00\x00\x08\x03" + struct.pack(">3I", 120_000, 28, 28)
    path = _write(tmp_path, head + bytes(120_000 * 28 * 28 if gz else 1000), gz)
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            read_idx(path, max_bytes=47_040_016)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == (f"{path}: IDX header declares shape (120000, 28, 28) (94,080,016 "
                               "bytes with header); refusing more than the expected 47,040,016 "
                               "bytes")
    assert peak < 1_000_000


def test_max_bytes_accepts_what_fits(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = _write(tmp_path, idx_bytes(array), gz=True)
    out, _ = read_idx(path, max_bytes=len(idx_bytes(array)))
    np.testing.assert_array_equal(out, array)
    with pytest.raises(DataError, match="refusing more than the expected 39 bytes"):
        read_idx(path, max_bytes=len(idx_bytes(array)) - 1)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", "<i4", ">f4", "<f8"])
def test_idx_sha256_is_the_checksum_of_idx_bytes(dtype):
    import hashlib

    array = (np.arange(60) - 7).astype(dtype).reshape(3, 4, 5)
    for view in (array, array[::-1], np.asfortranarray(array)):
        assert idx_sha256(view) == hashlib.sha256(idx_bytes(view)).hexdigest()
