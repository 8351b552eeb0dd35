"""Reference access: offsets, aliases, case, N padding, clear errors."""

from __future__ import annotations

import gzip

import pytest

from expredict.errors import InputFileError, ReferenceMismatchError
from expredict.io.reference import Reference, decompress_if_gzip


def test_offset_record_and_alias(fixture_paths):
    ref = Reference(fixture_paths["fasta"], {"chr22": "22"})
    assert ref.contig_bounds("chr22") == (19_990_000, 20_250_000)
    lines = fixture_paths["fasta"].read_text().splitlines()
    assert ref.fetch("chr22", 19_990_000, 19_990_060) == lines[1].upper()
    assert ref.fetch("22", 19_990_060, 19_990_070) == lines[2][:10].upper()


def test_case_and_padding(tmp_path):
    fa = tmp_path / "r.fa"
    fa.write_text(">c\nacgtNNACGT\n")
    ref = Reference(fa)
    assert ref.fetch("c", 0, 4) == "ACGT"
    assert Reference(fa, uppercase=False).fetch("c", 0, 4) == "acgt"
    assert ref.fetch("c", 8, 12, pad=True) == "GTNN"
    assert ref.fetch("c", -2, 2, pad=True) == "NNAC"
    with pytest.raises(ReferenceMismatchError, match=r"c:9-12 runs off the reference, which covers c:1-10"):
        ref.fetch("c", 8, 12)


def test_missing_contig_names_the_fix(fixture_paths):
    ref = Reference(fixture_paths["fasta"])
    assert ref.fetch("chr22", 19_990_000, 19_990_010) == ref.fetch("22", 19_990_000, 19_990_010)  # chr prefix matched
    with pytest.raises(ReferenceMismatchError, match=r"contig 'chr21' not found, nor '21'.*data.contig_aliases"):
        ref.fetch("chr21", 19_990_000, 19_990_010)
    with pytest.raises(ReferenceMismatchError, match=r"contig 'chr22' not in the reference.*alias 'x'"):
        Reference(fixture_paths["fasta"], {"chr22": "x"}).fetch("chr22", 19_990_000, 19_990_010)


def test_missing_and_plain_gzip(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        Reference(tmp_path / "none.fa")
    gz = tmp_path / "r.fa.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(">c\nACGT\n")
    with pytest.raises(InputFileError, match="plain gzip FASTA.*bgzip"):
        Reference(gz)
    plain = decompress_if_gzip(gz, tmp_path / "r.fa")
    assert Reference(plain).fetch("c", 1, 3) == "CG"
