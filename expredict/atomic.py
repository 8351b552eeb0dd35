"""Atomic file writes: write a temporary sibling, then ``os.replace`` it onto the target.

A reader never sees a half-written file, an interrupted run leaves the previous version (or
nothing) in place, and the temporary file is removed on any error. Temporaries are named
``.<name>.<random>.tmp`` in the target's directory (same file system, so the rename is atomic).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_parquet",
    "atomic_write_stream",
    "atomic_write_text",
    "is_temporary",
]


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path``.

    ``fsync=True`` flushes the file to disk before the rename (for caches that must survive a
    power cut). Parent directories are created. The file ends with mode 0644.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # no-op after a successful replace


def is_temporary(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a leftover temporary of :func:`atomic_path` (e.g. from a killed run)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


def atomic_write_stream(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *, fsync: bool = False
) -> Path:
    """Call ``write`` on the open temporary file (binary), then move it onto ``path``."""
    with atomic_path(path, fsync=fsync) as tmp, tmp.open("wb") as fh:
        write(fh)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_stream(path, lambda fh: fh.write(data), fsync=fsync)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a polars frame as parquet to ``path`` atomically."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)
    return Path(path)
