"""Atomic writes: the target is either the old or the new file, and no temporary is left behind."""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from expredict.atomic import atomic_path, atomic_write_bytes, atomic_write_parquet, atomic_write_text, is_temporary


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        assert is_temporary(tmp) and tmp.parent == target.parent
        msg = "interrupted"
        raise RuntimeError(msg)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_writers_replace_the_target(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01", fsync=True)
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    df = pl.DataFrame({"x": [1, 2]})
    atomic_write_parquet(df, tmp_path / "a.parquet")
    assert pl.read_parquet(tmp_path / "a.parquet").equals(df)
    with atomic_path(tmp_path / "c.txt.gz") as tmp, gzip.open(tmp, "wt") as fh:
        fh.write("z\n")
    assert gzip.open(tmp_path / "c.txt.gz", "rt").read() == "z\n"
    assert oct((tmp_path / "a.bin").stat().st_mode & 0o777) == oct(0o644)
    assert not [p for p in tmp_path.iterdir() if is_temporary(p)]
