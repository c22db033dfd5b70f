import gzip

import numpy as np
import pytest

from mnistlab.data.idx import idx_bytes, parse_idx_bytes, read_idx
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
