"""The one atomic writer replaces regular files only: renaming over a device or FIFO would turn,
say, /dev/null into a plain file for the whole machine."""

from __future__ import annotations

import os
import stat

import pytest

from mnistlab.atomic import atomic_write_text, write_atomically
from mnistlab.errors import RunError


def test_a_regular_file_is_replaced_whole(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left


def test_a_fifo_or_a_folder_is_never_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(RunError, match=r"pipe: cannot write \(is a device, FIFO or socket"):
        atomic_write_text(fifo, "x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomically(tmp_path / "dir", lambda fh: fh.write(b"x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "pipe"]

