"""The FASTA export: byte-identical to the previous writer, for any thread count, plain or ``.gz``; atomic.

``OLD`` pins the SHA-256 of what the previous writer (one Python string per haplotype, through
``iter_unique_haplotypes``) wrote on these exact inputs, saved before the byte-level writer replaced it.
"""

from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
from builders import random_records, random_reference, write_fasta, write_vcf

from expredict.haplotypes import build_haplotypes, iter_unique_haplotypes
from expredict.haplotypes import fasta as F
from expredict.haplotypes.fasta import index_table_path, read_bed_regions, write_haplotypes_fasta
from expredict.io.genotypes import read_genotypes
from expredict.io.reference import Reference

pytest.importorskip("pysam")

DATA = Path(__file__).parent.parent / "data"

OLD = {
    "fix_ragged": "22efe6d31ba2d7516a34ae2a750ecd3066c5719084f92d5367a5c78b50b93977",
    "fix_ragged_rc": "63986955a5db448ea24d234d75a205b746a6ee4920b63fceb67c830dafe005ed",
    "fix_center": "dd436dc1be0c0134e8e67b7dbff78eefd5cc5efebeea1d16ee43e267dd9b1eb9",
    "fix_center_rc": "6fee02629acb5574557339299edde3b9797699c8231e43c7ce4cf58cb4701f49",
    "fix_left": "f90b5f573a3144ec7cc827683cd80ca59f21e6a7022fce8c42a9cfc911a80bd4",
    "fix_uniq": "09e2156e572f3ce319a16394c1f8fcaa513ae55043fa29c731216b07dbbe6ee8",
    "fix_uniq.index": "14a84cb0f3506916baf30194053b7ba44583a9f720356efb77d92d1ce6404032",
    "fix_uniq_center": "7da57aaf29cabb4ed6e00396b68c5757b722369d674ff587abea106faa824478",
    "fix_uniq_center.index": "b3871b0845db661ec5c51d02b80a0fae8e7fd30fc8aeb2ef45ee31308909a46b",
    "syn_ragged": "d8b694210555d4374bba1fdbb2af74f820db590f8e8750b7a27814e2dde4f9d9",
    "syn_ragged_rc": "5d1afe18e57d82cc71501c9c208f45a55fbc92011d46112cb806255b94904a66",
    "syn_center": "f7160a9b7b47ee44c3c6a16651fd3b6f99b77e2f2220d8e9c831dd2d1d89ac56",
    "syn_center_rc": "081ac0aed174b6deafb56b3e262c08db8075e1d98f4276875f0c8a799bc379bc",
    "syn_left": "167aa05b22800b7577422bb51fc688819708c53da632f6ffbf2e840c6a67667d",
    "syn_uniq": "29c14fb6c74e6f6604e3a98c3da91372296d7490f4bf271c13cdf63e07ef317a",
    "syn_uniq.index": "77c8836e02e1f082272051f71176fd3e21f4798a413f2e0857f1624625dbae94",
    "syn_uniq_center": "ed13c1935c8ace0f30e886849b44528417242833982f277e7e8ab245d446fbb8",
    "syn_uniq_center.index": "9507f57cc28dcc9e62aa007f88bd53572a177f44c16ec376111c07c83a1157b0",
}
CONFIGS = {
    "ragged": {"mode": "ragged"},
    "ragged_rc": {"mode": "ragged", "reverse_complement_minus": True},
    "center": {"mode": "center_tss", "length": 777},
    "center_rc": {"mode": "center_tss", "length": 1000, "reverse_complement_minus": True},
    "left": {"mode": "left", "length": 333},
    "uniq": {"mode": "ragged", "unique": True},
    "uniq_center": {"mode": "center_tss", "length": 500, "unique": True},
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    d = tmp_path_factory.mktemp("export")
    fbed = d / "fix.bed"
    fbed.write_text(
        "chr22\t20000000\t20000500\tw1\t0\t+\nchr22\t20100000\t20100300\tw2\t0\t-\n"
        "chr22\t20004000\t20010000\tw3\t0\t+\nchr22\t20150000\t20150001\tw4\t0\t-\n"
    )
    rng = random.Random(19)  # indels, overlaps, multi-allelic, missing and unphased calls
    ref = random_reference(rng, 6000)
    fa = write_fasta(d / "syn.fa", {"chr1": ref})
    recs = random_records(rng, ref, 5, n_records=400, p_same_pos=0.15)
    vcf = write_vcf(d / "syn.vcf.gz", recs, [f"s{i}" for i in range(5)], {"chr1": len(ref)})
    rows = []
    for i in range(12):
        s = rng.randint(0, 5500)
        e = s + rng.randint(1, 500)
        rows.append(f"chr1\t{s}\t{e}\tr{i}\t0\t{'+-'[i % 2]}")
    rows.append("chr1\t0\t6000\tall\t0\t+")
    sbed = d / "syn.bed"
    sbed.write_text("\n".join(rows) + "\n")
    return {
        "fix": (DATA / "geuvadis_slice.vcf.gz", DATA / "grch37_chr22_slice.fa", fbed, {"chr22": "22"}),
        "syn": (vcf, fa, sbed, None),
    }


def _digest(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return hashlib.sha256(data).hexdigest()


def _export(cases, case: str, config: str, out: Path, **kw) -> None:
    vcf, fa, bed, aliases = cases[case]
    kw = {**CONFIGS[config], **kw}
    if case == "fix" and config == "uniq_center":
        kw["samples"] = ["HG00097", "HG00096", "HG00100"]
    write_haplotypes_fasta(vcf, fa, bed, out, aliases=aliases, **kw)


@pytest.mark.parametrize("case", ["fix", "syn"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize(("threads", "suffix"), [(1, ".fa"), (3, ".fa"), (2, ".fa.gz")])
def test_export_identical_to_old_writer(cases, tmp_path: Path, case: str, config: str, threads: int, suffix: str):
    out = tmp_path / f"{case}_{config}{suffix}"
    _export(cases, case, config, out, threads=threads)
    assert _digest(out) == OLD[f"{case}_{config}"]
    if CONFIGS[config].get("unique"):
        assert _digest(index_table_path(out)) == OLD[f"{case}_{config}.index"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name] + ([index_table_path(out).name] if CONFIGS[config].get("unique") else [])
    )


def test_gz_is_bgzf(cases, tmp_path: Path) -> None:
    out = tmp_path / "h.fa.gz"
    _export(cases, "syn", "ragged", out)
    raw = out.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x04" and raw[12:14] == b"BC"  # BGZF extra field
    assert index_table_path(out).name == "h.index.tsv"


def test_small_batches_identical(cases, tmp_path: Path) -> None:
    """Many batches (one window each) and many pool buffers in flight give the same bytes."""
    for config in ("ragged_rc", "uniq_center"):
        out = tmp_path / f"{config}.fa"
        _export(cases, "syn", config, out, threads=2, max_bytes=1)
        assert _digest(out) == OLD[f"syn_{config}"]


@pytest.mark.parametrize("unique", [False, True])
def test_interrupted_export_leaves_no_file(cases, tmp_path: Path, monkeypatch, unique: bool) -> None:
    real = F._write_grouped
    calls = []

    def failing(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(F, "_write_grouped", failing)
    out = tmp_path / "h.fa"
    with pytest.raises(KeyboardInterrupt):
        _export(cases, "syn", "uniq" if unique else "ragged", out, max_bytes=1)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []  # neither output, nor table, nor temporaries
    # a previous complete output survives a failed rerun untouched
    monkeypatch.setattr(F, "_write_grouped", real)
    _export(cases, "syn", "ragged", out)
    before = out.read_bytes()
    calls.clear()
    monkeypatch.setattr(F, "_write_grouped", failing)
    with pytest.raises(KeyboardInterrupt):
        _export(cases, "syn", "ragged", out, max_bytes=1)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["h.fa"]


def test_writer_thread_error_propagates(cases, tmp_path: Path, monkeypatch) -> None:
    class Boom:
        def write(self, _):
            msg = "disk full"
            raise OSError(msg)

        def close(self):
            pass

    monkeypatch.setattr(F, "_open_sink", lambda path, compress: Boom())
    out = tmp_path / "h.fa"
    with pytest.raises(OSError, match="disk full"):
        _export(cases, "syn", "ragged", out, max_bytes=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["ragged", "center_tss", "left"])
def test_iter_unique_threads_identical(cases, mode: str) -> None:
    vcf, fa, bed, _ = cases["syn"]
    g = read_genotypes(vcf, "chr1")
    ref = Reference(fa)
    regions = read_bed_regions(bed)
    kw = {"mode": mode, "length": None if mode == "ragged" else 321, "reverse_complement_minus": True}
    one = list(iter_unique_haplotypes(g, ref, regions, threads=1, **kw))
    many = list(iter_unique_haplotypes(g, ref, regions, threads=4, max_pairs=20, **kw))
    assert len(one) == len(many) == len(regions)
    for a, b in zip(one, many, strict=True):
        assert a.sequences == b.sequences
        assert np.array_equal(a.index, b.index)
        assert a.stats.keys() == b.stats.keys()
        assert all(np.array_equal(a.stats[k], b.stats[k]) for k in a.stats)
    full1 = build_haplotypes(g, ref, regions, threads=1, **kw)
    full3 = build_haplotypes(g, ref, regions, threads=3, **kw)
    assert [r.sequences for r in full1] == [r.sequences for r in full3]
    for u, r in zip(one, full1, strict=True):  # dedup reconstructs every haplotype
        assert [u.sequence(s, h) for s in range(g.n_samples) for h in (0, 1)] == r.sequences


def test_threads_validated(cases, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        _export(cases, "syn", "ragged", tmp_path / "h.fa", threads=0)
