"""Tests of expredict.cache.ArrayCache: round trip, resume, integrity, format version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from expredict.cache import FORMAT_VERSION, ArrayCache, sequence_hash, spec_key
from expredict.errors import CacheFormatError

SPEC = {"model": "tiny", "weights": "abc", "layers": [1, -1], "pooling": "mean"}


def _values(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 2, 8)).astype(np.float32)


def _hashes(n: int, offset: int = 0) -> list[str]:
    return [sequence_hash("ACGT" * (i + 1 + offset)) for i in range(n)]


def test_sequence_hash_is_case_insensitive_and_stable() -> None:
    assert sequence_hash("acgtn") == sequence_hash("ACGTN") == sequence_hash(b"ACGTN")
    assert sequence_hash("ACGT") != sequence_hash("ACGA")
    assert len(sequence_hash("A")) == 32


def test_spec_key_is_canonical() -> None:
    assert spec_key({"a": 1, "b": [1, 2]}) == spec_key({"b": [1, 2], "a": 1})
    assert spec_key({"a": 1}) != spec_key({"a": 2})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        spec_key({"a": object()})


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, SPEC)
    assert len(cache) == 0
    h, v = _hashes(5), _values(5)
    cache.put(h[:3], v[:3])
    cache.put(h[3:], v[3:])
    np.testing.assert_array_equal(cache.contains([h[0], "nope", h[4]]), [True, False, True])
    np.testing.assert_array_equal(cache.get([h[4], h[0]]), v[[4, 0]])
    reopened = ArrayCache(tmp_path, dict(SPEC), verify="checksum")
    assert len(reopened) == 5 and reopened.item_shape == (2, 8)
    np.testing.assert_array_equal(reopened.get(h), v)
    assert json.loads((cache.path / "spec.json").read_text())["spec"] == SPEC
    with pytest.raises(KeyError, match="1 of 2 hashes not in cache"):
        reopened.get([h[0], "deadbeef"])


def test_put_skips_duplicates_and_checks_shape(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, SPEC)
    h, v = _hashes(3), _values(3)
    cache.put(h, v)
    cache.put(h, v + 1)  # already stored: no new shard
    assert len(list((cache.path / "shards").glob("*.npy"))) == 1
    np.testing.assert_array_equal(cache.get(h), v)
    with pytest.raises(ValueError, match="item shape"):
        cache.put(_hashes(1, 10), np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="expected \\(2, ...\\)"):
        cache.put(_hashes(2, 10), _values(3))


def test_different_specs_do_not_share(tmp_path: Path) -> None:
    a = ArrayCache(tmp_path, SPEC)
    a.put(_hashes(1), _values(1))
    b = ArrayCache(tmp_path, {**SPEC, "layers": [2, -1]})
    assert len(b) == 0 and a.path != b.path


def test_truncated_shard_is_dropped(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, SPEC)
    cache.put(_hashes(2), _values(2))
    cache.put(_hashes(2, 5), _values(2, 1))
    victim = sorted((cache.path / "shards").glob("*.npy"))[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    reopened = ArrayCache(tmp_path, SPEC)
    assert len(reopened) == 2
    assert len(reopened.dropped) == 1 and "truncated" in reopened.dropped[0].reason
    assert (cache.path / "quarantine" / victim.name).exists()


def test_corrupt_shard_detected_on_read(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, SPEC)
    h = _hashes(2)
    cache.put(h, _values(2))
    npy = next((cache.path / "shards").glob("*.npy"))
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    npy.write_bytes(bytes(data))
    reopened = ArrayCache(tmp_path, SPEC)  # size check passes
    assert len(reopened) == 2
    with pytest.raises(CacheFormatError, match="checksum"):
        reopened.get(h)
    assert len(reopened) == 0 and not reopened.contains(h).any()
    assert len(ArrayCache(tmp_path, SPEC)) == 0


def test_interrupted_put_leaves_no_entry(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, SPEC)
    cache.put(_hashes(2), _values(2))
    # simulate a crash between the shard rename and the manifest write: an orphan .npy
    orphan = cache.path / "shards" / "shard-orphan.npy"
    np.save(orphan, _values(1))
    (cache.path / "shards" / ".tmp-x.json").write_text("{")
    reopened = ArrayCache(tmp_path, SPEC)
    assert len(reopened) == 2 and not reopened.dropped


def test_wrong_format_version(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, SPEC)
    doc = json.loads((cache.path / "spec.json").read_text())
    doc["format_version"] = FORMAT_VERSION + 1
    (cache.path / "spec.json").write_text(json.dumps(doc))
    with pytest.raises(CacheFormatError, match="format_version"):
        ArrayCache(tmp_path, SPEC)


def test_garbage_manifest_is_dropped(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path, SPEC)
    cache.put(_hashes(2), _values(2))
    (cache.path / "shards" / "shard-bad.json").write_text("{not json")
    reopened = ArrayCache(tmp_path, SPEC)
    assert len(reopened) == 2 and reopened.dropped[0].name == "shard-bad"
