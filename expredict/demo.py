"""The bundled real demo cohort: GEUVADIS chr22 (358 individuals) from Debian's ``qtltools-example``.

``fetch_demo(data_dir)`` downloads the package through ``apt-get download`` (Debian's registry is
the one source this needs), verifies SHA-256 checksums, and unpacks the genotypes, the expression
BED and the covariates. The GRCh37 reference comes, in order of preference, from a user-given
FASTA, from ``shared/data/grch37_chr22_1-22Mb.fa.gz`` beside the project (chr22:1-22,000,000), or
from Debian's ``hisat2`` package (``22_20-21M.fa``, chr22:20,000,001-21,000,000). Nothing already
present and verified is downloaded again. See ``tests/data/README.md`` for provenance and citations.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from expredict.errors import InputFileError
from expredict.io.reference import decompress_if_gzip

QTLTOOLS_DEB = ("qtltools-example", "0db95942809612734a1b7ead3c429653c94f5d3eff7103409163567d9f75bac4")
DEMO_FILES = {
    "genotypes.chr22.vcf.gz": "28ec28eede71d3bfe3ed06a5da1c818924459380ddd1ee16201f334361e345c0",
    "genes.50percent.chr22.bed.gz": "fc50a0750194971d18ba28ac69f787ba10c26bd03eb204ef1cd88b3d22b28d7d",
    "genes.covariates.pc50.txt.gz": "a8936c43d74c657ecfbb18169c9ffc553e3d6254b48334b75580c6f142555c02",
}
DEMO_EXTRA = ("genotypes.chr22.vcf.gz.tbi", "genes.50percent.chr22.bed.gz.tbi")
SHARED_REFERENCE = ("grch37_chr22_1-22Mb.fa.gz", "f433af004f3b5ea34e4b461da133d6ff67e080916c647854632055f2a097def1")
HISAT2_REFERENCE = ("22_20-21M.fa", "5f20f32cf4233e45f91ad3ca2e7928a8b6594040522fe4275b876856c1d9944d")
REFERENCE_NAME = "reference.fa"

_log = logging.getLogger(__name__)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path, digest: str) -> bool:
    return path.exists() and sha256(path) == digest


def _apt_download(package: str, dest: Path) -> Path:
    """``apt-get download PACKAGE`` into ``dest``; return the .deb path."""
    if shutil.which("apt-get") is None:
        msg = (
            f"cannot fetch the Debian package '{package}': apt-get is not available on this machine; "
            f"download {package}*.deb by hand and pass --deb-dir, or point the config at your own files"
        )
        raise InputFileError(msg)
    cmd = ["apt-get", "download", package]
    res = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False)
    if res.returncode != 0 and "Unable to locate" in res.stderr:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
        res = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if res.returncode != 0 or not debs:
        msg = f"apt-get download {package} failed: {res.stderr.strip()[-300:]}; run `apt-get update` and retry"
        raise InputFileError(msg)
    return debs[0]


def _extract_deb(deb: Path, dest: Path) -> Path:
    out = dest / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True, capture_output=True)
    return out


def find_shared_reference(start: Path | None = None) -> Path | None:
    """``shared/data/grch37_chr22_1-22Mb.fa.gz`` beside the project (searched upwards from ``start``)."""
    env = os.environ.get("EXPREDICT_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = (start or Path.cwd()).resolve()
    for parent in [here, *here.parents]:
        candidates += [parent / "shared" / "data", parent.parent / "shared" / "data"]
    for c in candidates:
        p = c / SHARED_REFERENCE[0]
        if p.exists():
            return p
    return None


def fetch_demo(data_dir: str | os.PathLike[str] = "data/demo", fasta: str | None = None) -> Path:
    """Make the demo cohort available under ``data_dir``; return that directory.

    Idempotent: verified files are kept. Writes ``provenance.json`` describing every file. What it
    downloads and where the reference comes from is logged at INFO.
    """
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    if all(_verified(root / n, d) for n, d in DEMO_FILES.items()) and all((root / n).exists() for n in DEMO_EXTRA):
        _log.info("demo cohort already present and verified in %s", root)
    else:
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            t = Path(tmp)
            _log.info("downloading Debian package qtltools-example (13.6 MB) ...")
            deb = _apt_download(QTLTOOLS_DEB[0], t)
            if sha256(deb) != QTLTOOLS_DEB[1]:
                msg = f"{deb.name}: SHA-256 mismatch (expected {QTLTOOLS_DEB[1]}); the package changed upstream"
                raise InputFileError(msg)
            x = _extract_deb(deb, t)
            tar = x / "usr/share/doc/qtltools/examples/examples.tar.xz"
            with tarfile.open(tar) as tf:
                members = [m for m in tf.getmembers() if Path(m.name).name in {*DEMO_FILES, *DEMO_EXTRA}]
                tf.extractall(t / "ex", members=members, filter="data")
            for name, digest in DEMO_FILES.items():
                src = next((t / "ex").rglob(name))
                if sha256(src) != digest:
                    msg = f"{name}: SHA-256 mismatch after extraction (expected {digest})"
                    raise InputFileError(msg)
            for name in [*DEMO_FILES, *DEMO_EXTRA]:
                src = next((t / "ex").rglob(name))
                os.replace(src, root / name)
        _log.info("demo cohort written to %s", root)
    ref_info = _ensure_reference(root, fasta)
    prov = {
        "cohort": "GEUVADIS LCL RNA-seq (RPKM) + 1000 Genomes phase 3 phased SNPs, chr22, 358 individuals, GRCh37",
        "source": "Debian package qtltools-example 1.3.1+dfsg-4 (QTLtools examples)",
        "files": {n: d for n, d in DEMO_FILES.items()},
        "reference": ref_info,
    }
    tmp = root / "provenance.json.tmp"
    tmp.write_text(json.dumps(prov, indent=2))
    tmp.replace(root / "provenance.json")
    return root


def _ensure_reference(root: Path, fasta: str | None) -> dict:
    dest = root / REFERENCE_NAME
    info_path = root / "reference.json"
    if fasta is None and dest.exists() and info_path.exists():
        return json.loads(info_path.read_text())
    if fasta is not None:
        src = Path(fasta)
        if not src.exists():
            msg = f"{src}: reference FASTA not found"
            raise InputFileError(msg)
        readable = decompress_if_gzip(src, root / (REFERENCE_NAME + ".part"))
        if readable != src:
            os.replace(readable, dest)
        else:
            shutil.copyfile(src, root / (REFERENCE_NAME + ".part"))
            os.replace(root / (REFERENCE_NAME + ".part"), dest)
        info = {"source": str(src), "sha256": sha256(src), "span": "user-given"}
    elif (shared := find_shared_reference()) is not None and _verified(shared, SHARED_REFERENCE[1]):
        _log.info("reference: %s (GRCh37 chr22:1-22,000,000, varfish-annotator test data, MIT)", shared)
        part = decompress_if_gzip(shared, root / (REFERENCE_NAME + ".part"))
        os.replace(part, dest)
        info = {
            "source": str(shared),
            "sha256": SHARED_REFERENCE[1],
            "span": "22:1-22000000",
            "licence": "MIT, varfish-org/varfish-annotator test resources",
        }
    else:
        _log.warning("reference: shared GRCh37 slice not found; falling back to Debian hisat2's 22_20-21M.fa")
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            t = Path(tmp)
            x = _extract_deb(_apt_download("hisat2", t), t)
            src = next(x.rglob(HISAT2_REFERENCE[0]))
            if sha256(src) != HISAT2_REFERENCE[1]:
                msg = f"{src.name}: SHA-256 mismatch (expected {HISAT2_REFERENCE[1]})"
                raise InputFileError(msg)
            os.replace(src, dest)
        info = {
            "source": "Debian hisat2 examples/reference/22_20-21M.fa",
            "sha256": HISAT2_REFERENCE[1],
            "span": "22:20000001-21000000 (offset header)",
        }
    for stale in (root / (REFERENCE_NAME + ".fai"),):
        stale.unlink(missing_ok=True)
    info_path.write_text(json.dumps(info, indent=2))
    return info
