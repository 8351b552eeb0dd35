"""Append-only, resumable on-disk array cache keyed by a spec and a sequence hash.

Model-agnostic: the Nucleotide Transformer embedder and the Enformer baseline both store one
fixed-shape float array per distinct input sequence here, so each sequence is computed once.

On-disk layout (``format_version`` 1)::

    <root>/<key>/                 key = first 20 hex digits of sha256(canonical JSON of spec)
        spec.json                 {"format_version": 1, "key": ..., "spec": {...}}
        shards/<name>.npy         one float array (n_items, *item_shape), written by one ``put``
        shards/<name>.json        its manifest: hashes (in row order), shape, dtype, size in
                                  bytes and blake2b checksum of the .npy file
        quarantine/               shards that failed an integrity check (moved here, never read)

``spec`` holds everything that changes the stored values (model id and weights hash, layers,
pooling, window spec, ...), so two different specs never share a key directory. A ``put`` writes
the shard under a temporary name, ``os.replace``-s it into place, then writes its manifest the same
way; the manifest is the commit record, so a write interrupted at any point leaves either a
complete shard or an orphan file that is ignored (and cleaned up on the next open). Several
writers may append concurrently: shard names are random (uuid4).

Integrity: on open every manifest is read and its shard's size checked (a truncated or missing
shard is quarantined and its entries are dropped, so they read as misses and get recomputed).
The checksum of a shard is verified the first time a process reads it (or for every shard on
open with ``verify="checksum"``); a mismatch quarantines the shard and raises
:class:`~expredict.errors.CacheFormatError` naming it, so a re-run recomputes the entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from expredict.atomic import atomic_write_bytes, atomic_write_stream, is_temporary
from expredict.errors import CacheFormatError

__all__ = ["FORMAT_VERSION", "ArrayCache", "DroppedShard", "sequence_hash", "spec_key"]

FORMAT_VERSION = 1
"""On-disk format version of :class:`ArrayCache`; a different version on disk is refused."""

_KEY_HEX = 20
_log = logging.getLogger(__name__)


def sequence_hash(seq: str | bytes) -> str:
    """Return the stable hex digest identifying a DNA sequence in a cache.

    Parameters
    ----------
    seq : str or bytes
        DNA sequence; case is ignored (the digest is of the **uppercase** ASCII bytes).

    Returns
    -------
    str
        32 hex characters: blake2b with a 16-byte digest of ``seq.upper()``.
    """
    data = seq.upper().encode("ascii") if isinstance(seq, str) else bytes(seq).upper()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _canonical_json(spec: dict[str, Any]) -> str:
    try:
        return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        msg = f"cache spec must be a JSON-serialisable dict of str/int/float/bool/list/dict values; {exc}"
        raise ValueError(msg) from exc


def spec_key(spec: dict[str, Any]) -> str:
    """Return the key-directory name of ``spec``: a digest of its canonical JSON (sorted keys)."""
    return hashlib.sha256(_canonical_json(spec).encode()).hexdigest()[:_KEY_HEX]


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class DroppedShard:
    """A shard removed from the cache by an integrity check; its entries are recomputed."""

    name: str
    n_items: int
    reason: str


@dataclass
class _Shard:
    name: str
    n_items: int
    nbytes: int
    checksum: str
    verified: bool = False


class ArrayCache:
    """Append-only on-disk store of one fixed-shape float array per sequence hash.

    Parameters
    ----------
    root : str or Path
        Parent directory; the cache for ``spec`` lives in ``root/<spec_key(spec)>/``.
    spec : dict
        Everything that changes the stored values (JSON-serialisable). Stored as ``spec.json``.
    verify : {"size", "checksum"}, optional
        Integrity check on open. ``"size"`` (default) checks every shard's byte size and defers
        the checksum to the first read of that shard; ``"checksum"`` verifies all checksums now.

    Raises
    ------
    CacheFormatError
        ``spec.json`` or a manifest has another ``format_version``, or ``spec.json`` is unreadable
        or holds a different spec than the one given.
    """

    def __init__(self, root: str | Path, spec: dict[str, Any], *, verify: Literal["size", "checksum"] = "size") -> None:
        if not isinstance(spec, dict):
            msg = f"ArrayCache spec must be a dict; got {type(spec).__name__}"
            raise TypeError(msg)
        if verify not in ("size", "checksum"):
            msg = f"ArrayCache verify must be 'size' or 'checksum'; got {verify!r}"
            raise ValueError(msg)
        self.spec: dict[str, Any] = json.loads(_canonical_json(spec))
        self.key = spec_key(spec)
        self.path = Path(root) / self.key
        self._shard_dir = self.path / "shards"
        self._quarantine = self.path / "quarantine"
        self._shard_dir.mkdir(parents=True, exist_ok=True)
        self._check_spec_file()
        self.dropped: list[DroppedShard] = []
        """Shards dropped by integrity checks during this object's life (name, items, reason)."""
        self._shards: dict[str, _Shard] = {}
        self._index: dict[str, tuple[str, int]] = {}  # hash -> (shard name, row)
        self.item_shape: tuple[int, ...] | None = None
        """Shape of one stored array, fixed by the first ``put``; None while the cache is empty."""
        self.dtype: np.dtype | None = None
        self._open(verify)

    # ------------------------------------------------------------------ open / integrity
    def _check_spec_file(self) -> None:
        spec_file = self.path / "spec.json"
        if not spec_file.exists():
            doc = {"format_version": FORMAT_VERSION, "key": self.key, "spec": self.spec}
            atomic_write_bytes(spec_file, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
            return
        try:
            doc = json.loads(spec_file.read_text())
        except (OSError, ValueError) as exc:
            msg = f"cache {self.path}: spec.json is unreadable ({exc}); delete the directory to rebuild the cache"
            raise CacheFormatError(msg) from exc
        version = doc.get("format_version") if isinstance(doc, dict) else None
        if version != FORMAT_VERSION:
            msg = (
                f"cache {self.path}: format_version {version!r} on disk, this expredict reads version "
                f"{FORMAT_VERSION}; delete the directory (or point the cache elsewhere) to rebuild it"
            )
            raise CacheFormatError(msg)
        if doc.get("spec") != self.spec:
            msg = f"cache {self.path}: spec.json holds a different spec than requested (key collision or edited file)"
            raise CacheFormatError(msg)

    def _drop(self, name: str, n_items: int, reason: str) -> None:
        self._quarantine.mkdir(exist_ok=True)
        for suffix in (".json", ".npy"):
            src = self._shard_dir / f"{name}{suffix}"
            if src.exists():
                src.replace(self._quarantine / src.name)
        shard = self._shards.pop(name, None)
        if shard is not None:
            for h in [h for h, (s, _) in self._index.items() if s == name]:
                del self._index[h]
        self.dropped.append(DroppedShard(name, n_items, reason))
        _log.warning(
            "cache %s: dropped shard %s (%d entries): %s; they will be recomputed", self.path, name, n_items, reason
        )

    def _open(self, verify: str) -> None:
        manifests = sorted(self._shard_dir.glob("shard-*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        for mpath in manifests:
            name = mpath.stem
            try:
                man = json.loads(mpath.read_text())
                version = man["format_version"]
                hashes = list(man["hashes"])
                shape = tuple(int(s) for s in man["shape"])
                dtype = np.dtype(man["dtype"])
                nbytes, checksum = int(man["nbytes"]), str(man["checksum"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._drop(name, 0, f"unreadable manifest ({type(exc).__name__}: {exc})")
                continue
            if version != FORMAT_VERSION:
                msg = (
                    f"cache {self.path}: shard manifest {mpath.name} has format_version {version!r}, "
                    f"expected {FORMAT_VERSION}; delete the directory to rebuild the cache"
                )
                raise CacheFormatError(msg)
            if len(shape) < 1 or shape[0] != len(hashes):
                self._drop(name, len(hashes), f"manifest shape {shape} does not match {len(hashes)} hashes")
                continue
            if self.item_shape is not None and (shape[1:] != self.item_shape or dtype != self.dtype):
                self._drop(
                    name,
                    len(hashes),
                    f"item shape/dtype {shape[1:]}/{dtype} differs from {self.item_shape}/{self.dtype}",
                )
                continue
            npy = self._shard_dir / f"{name}.npy"
            size = npy.stat().st_size if npy.exists() else -1
            if size != nbytes:
                what = "missing" if size < 0 else f"{size} bytes, expected {nbytes} (truncated or overwritten)"
                self._drop(name, len(hashes), f"shard file {what}")
                continue
            shard = _Shard(name, len(hashes), nbytes, checksum)
            if verify == "checksum" and not self._verify(shard):
                continue
            self._shards[name] = shard
            if self.item_shape is None:
                self.item_shape, self.dtype = shape[1:], dtype
            for row, h in enumerate(hashes):
                self._index.setdefault(h, (name, row))  # first writer wins on duplicates
        self._clean_orphans()

    def _clean_orphans(self) -> None:
        for p in self._shard_dir.iterdir():
            # interrupted puts leave temporaries (.tmp-* from older versions) or an .npy without a
            # manifest; both are unreferenced
            legacy_tmp = p.name.startswith(".tmp-")
            if is_temporary(p) or legacy_tmp or (p.suffix == ".npy" and not p.with_suffix(".json").exists()):
                try:
                    if p.stat().st_mtime < time.time() - 3600:  # only old ones: a concurrent writer may be mid-put
                        p.unlink()
                except OSError:
                    pass

    def _verify(self, shard: _Shard) -> bool:
        if shard.verified:
            return True
        digest = _file_digest(self._shard_dir / f"{shard.name}.npy")
        if digest != shard.checksum:
            self._drop(shard.name, shard.n_items, "checksum mismatch (corrupt shard)")
            return False
        shard.verified = True
        return True

    # ------------------------------------------------------------------ public API
    def __len__(self) -> int:
        """Number of distinct hashes stored."""
        return len(self._index)

    def __repr__(self) -> str:
        return f"ArrayCache({str(self.path)!r}, n={len(self)}, item_shape={self.item_shape})"

    def contains(self, hashes: Sequence[str]) -> np.ndarray:
        """Return a boolean mask, shape ``(len(hashes),)``: True where the hash is stored."""
        return np.fromiter((h in self._index for h in hashes), dtype=bool, count=len(hashes))

    def get(self, hashes: Sequence[str]) -> np.ndarray:
        """Return the stored arrays for ``hashes``, stacked: shape ``(n, *item_shape)``.

        Raises
        ------
        KeyError
            A hash is not stored (the message names the first one and how many are missing).
        CacheFormatError
            A shard failed its checksum on first read; it has been quarantined and its entries
            dropped, so re-running the producer (e.g. ``embed_sequences``) recomputes them.
        """
        hashes = list(hashes)
        missing = [h for h in hashes if h not in self._index]
        if missing:
            msg = f"{len(missing)} of {len(hashes)} hashes not in cache {self.path}, first: {missing[0]}"
            raise KeyError(msg)
        if self.item_shape is None:
            return np.empty((0,), dtype=np.float32)
        out = np.empty((len(hashes), *self.item_shape), dtype=self.dtype)
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for i, h in enumerate(hashes):
            name, row = self._index[h]
            by_shard.setdefault(name, []).append((i, row))
        for name, pairs in by_shard.items():
            shard = self._shards[name]
            if not self._verify(shard):
                msg = (
                    f"cache {self.path}: shard {name} failed its checksum and was quarantined; "
                    f"{shard.n_items} entries dropped; re-run the producer to recompute them"
                )
                raise CacheFormatError(msg)
            arr = self._load(name)
            dst, src = np.array(pairs, dtype=np.int64).T
            out[dst] = arr[src]
        return out

    def _load(self, name: str) -> np.ndarray:
        path = self._shard_dir / f"{name}.npy"
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            shard = self._shards.get(name)
            self._drop(name, shard.n_items if shard else 0, f"unreadable .npy ({exc})")
            msg = f"cache {self.path}: shard {name} is unreadable and was quarantined; re-run to recompute"
            raise CacheFormatError(msg) from exc

    def put(self, hashes: Sequence[str], values: np.ndarray) -> None:
        """Append ``values`` for ``hashes`` as one new shard (atomic; hashes already stored are skipped).

        Parameters
        ----------
        hashes : sequence of str
            One hash per row of ``values`` (see :func:`sequence_hash`).
        values : ndarray, shape ``(len(hashes), *item_shape)``
            Floating-point arrays; ``item_shape`` and dtype must match earlier puts.
        """
        hashes = list(hashes)
        values = np.asarray(values)
        if values.ndim < 1 or values.shape[0] != len(hashes):
            msg = f"ArrayCache.put: values has shape {values.shape}, expected ({len(hashes)}, ...) (one row per hash)"
            raise ValueError(msg)
        if not np.issubdtype(values.dtype, np.floating):
            msg = f"ArrayCache.put: values must be floating point; got dtype {values.dtype}"
            raise TypeError(msg)
        if self.item_shape is not None and (values.shape[1:] != self.item_shape or values.dtype != self.dtype):
            msg = (
                f"ArrayCache.put: item shape/dtype {values.shape[1:]}/{values.dtype} differs from the cache's "
                f"{self.item_shape}/{self.dtype}"
            )
            raise ValueError(msg)
        keep, seen = [], set()
        for i, h in enumerate(hashes):
            if h not in self._index and h not in seen:
                seen.add(h)
                keep.append(i)
        if not keep:
            return
        sel = np.ascontiguousarray(values[keep])
        new_hashes = [hashes[i] for i in keep]
        name = f"shard-{uuid.uuid4().hex}"
        npy = self._shard_dir / f"{name}.npy"
        atomic_write_stream(npy, lambda fh: np.save(fh, sel, allow_pickle=False), fsync=True)
        manifest = {
            "format_version": FORMAT_VERSION,
            "hashes": new_hashes,
            "shape": list(sel.shape),
            "dtype": sel.dtype.str,
            "nbytes": npy.stat().st_size,
            "checksum": _file_digest(npy),
        }
        atomic_write_bytes(self._shard_dir / f"{name}.json", json.dumps(manifest).encode(), fsync=True)
        self._shards[name] = _Shard(name, len(new_hashes), manifest["nbytes"], manifest["checksum"], verified=True)
        if self.item_shape is None:
            self.item_shape, self.dtype = sel.shape[1:], sel.dtype
        for row, h in enumerate(new_hashes):
            self._index[h] = (name, row)

    def hashes(self) -> list[str]:
        """All stored hashes (order unspecified)."""
        return list(self._index)
