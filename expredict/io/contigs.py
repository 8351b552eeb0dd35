"""Contig names and genome builds shared by the VCF, the FASTA and the gene annotation.

- **Genome build**: ``data.genome_build`` or, when unset, the build the VCF header states
  unambiguously (``##reference=`` or ``##contig=<...,assembly=...>``); PredictDB variant keys
  follow it (``_b37`` / ``_b38``).
- **Contig names**: ``chr22`` and ``22`` are matched between files when exactly one of the two forms
  is present on the other side (logged once per contig); an explicit ``data.contig_aliases`` entry
  always wins, and an ambiguous or absent contig is an error naming the files and the fix.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import struct
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from expredict.errors import ConfigError, ExpredictError, ReferenceMismatchError

_log = logging.getLogger(__name__)

BUILDS = ("GRCh37", "GRCh38")
_BUILD_PATTERNS = {
    "GRCh37": re.compile(r"grch37|hg19|hs37d5|\bb37\b|_v37\b|g1k_v37|human_g1k", re.IGNORECASE),
    "GRCh38": re.compile(r"grch38|hg38|hs38|\bb38\b", re.IGNORECASE),
}
_ASSEMBLY_RE = re.compile(r"[<,]assembly=\"?([^,>\"]+)", re.IGNORECASE)


def _header_lines(path: Path) -> list[str]:
    """Meta-information lines (``##...``) of a VCF (plain/gzip text) or BCF."""
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            head = fh.read(5)
        if head[:3] == b"BCF":
            from cyvcf2 import VCF

            vcf = VCF(str(path), lazy=True)
            try:
                return [ln for ln in vcf.raw_header.splitlines() if ln.startswith("##")]
            finally:
                vcf.close()
    opener = gzip.open if magic[:2] == b"\x1f\x8b" else open
    lines: list[str] = []
    with opener(path, "rt", errors="replace") as fh:
        for line in fh:
            if not line.startswith("##"):
                break
            lines.append(line.rstrip("\n"))
    return lines


@lru_cache(maxsize=32)
def detect_genome_build(path: str | os.PathLike[str]) -> str | None:
    """``GRCh37`` / ``GRCh38`` when the VCF header names exactly one build, else None."""
    found: set[str] = set()
    for line in _header_lines(Path(path)):
        text = None
        if line.lower().startswith("##reference="):
            text = line[len("##reference=") :]
        elif line.lower().startswith("##contig="):
            m = _ASSEMBLY_RE.search(line)
            text = m.group(1) if m else None
        if text:
            found |= {b for b, pat in _BUILD_PATTERNS.items() if pat.search(text)}
    return found.pop() if len(found) == 1 else None


def resolve_genome_build(vcf: str | os.PathLike[str], configured: str | None) -> str:
    """The configured build, or the VCF header's; a :class:`ConfigError` naming the fix when neither."""
    if configured is not None:
        return configured
    build = detect_genome_build(str(vcf))
    if build is None:
        msg = (
            f"{vcf}: the genome build cannot be read from the VCF header (no unambiguous ##reference= or "
            f"##contig=<...,assembly=...> line); set data.genome_build: GRCh37 or GRCh38 in the config"
        )
        raise ConfigError(msg)
    return build


def predictdb_build(build: str) -> str:
    """PredictDB's variant-key suffix: ``b37`` for GRCh37, ``b38`` for GRCh38."""
    suffix = {"GRCh37": "b37", "GRCh38": "b38", "b37": "b37", "b38": "b38"}.get(build)
    if suffix is None:
        msg = f"unknown genome build {build!r}; expected GRCh37 or GRCh38"
        raise ConfigError(msg)
    return suffix


# --------------------------------------------------------------------------------------------
# contig names


def other_form(name: str) -> str:
    """``chr22`` <-> ``22``."""
    return name[3:] if name.startswith("chr") else "chr" + name


_LOGGED: set[tuple[str, str, str]] = set()


def match_contig(
    name: str,
    available: Iterable[str],
    *,
    target: str,
    source: str = "",
    error: type[ExpredictError] = ReferenceMismatchError,
) -> str:
    """The name ``available`` (the contigs of ``target``) uses for ``name``.

    ``name`` itself when only it is present; its other form (``chr22`` <-> ``22``) when only that is
    present (logged at INFO once per contig); an ``error`` naming the files, the contig and the fix
    (``data.contig_aliases``) when both forms or neither are present.
    """
    have = set(available)
    alt = other_form(name)
    here, there = name in have, alt in have
    fix = f"set data.contig_aliases (e.g. {{{name}: {alt if there and not here else name}}})"
    src = f" (used by {source})" if source else ""
    if here and not there:
        return name
    if there and not here:
        key = (target, name, alt)
        if key not in _LOGGED:
            _LOGGED.add(key)
            _log.info(f"contig '{name}'{src} matched to '{alt}' in {target}")
        return alt
    if here and there:
        msg = f"{target}: contig '{name}'{src} is ambiguous: both '{name}' and '{alt}' are present; {fix}"
        raise error(msg)
    shown = sorted(have)[:5]
    msg = f"{target}: contig '{name}'{src} not found, nor '{alt}' (has {shown}); {fix}"
    raise error(msg)


def indexed_contigs(path: str | os.PathLike[str]) -> list[str] | None:
    """Contig names of a VCF's ``.tbi`` (or tabix-style ``.csi``) index: the contigs with records.

    None when there is no such index (a BCF's ``.csi`` names no contigs: use its header).
    """
    p = Path(path)
    for suffix in (".tbi", ".csi"):
        idx = Path(str(p) + suffix)
        if not idx.exists():
            continue
        try:
            with gzip.open(idx, "rb") as fh:
                data = fh.read()
        except (OSError, EOFError):
            return None
        if data[:4] == b"TBI\x01":  # magic, n_ref, format, col_seq, col_beg, col_end, meta, skip, l_nm, names
            off = 8
        elif data[:4] == b"CSI\x01" and struct.unpack_from("<i", data, 12)[0] >= 28:  # min_shift, depth, l_aux, aux
            off = 16
        else:
            return None
        l_nm = struct.unpack_from("<i", data, off + 24)[0]
        names = data[off + 28 : off + 28 + l_nm].split(b"\x00")
        return [n.decode() for n in names if n]
    return None
