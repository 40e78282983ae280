"""File-system primitives every writer of the data root shares: fsync and flock.

A write is durable only once the file *and* the directory entry that names it
are fsynced; writers of one thing take turns on an exclusive ``flock`` of a
lock file beside it. These are the only copies of both in the project.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes its renames durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if missing).

    Yields True once held. With ``blocking=False`` it yields False at once when
    another holder has it (nothing is held then). The lock is released when the
    block ends, and by the kernel if the process dies.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
