"""Shared fixtures: paths to the small real GEUVADIS slice in tests/data and config writers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def fixture_paths() -> dict[str, Path]:
    """The real fixture files (60 individuals, chr22:19.99-20.25 Mb, 12 genes)."""
    return {
        "vcf": DATA / "geuvadis_slice.vcf.gz",
        "fasta": DATA / "grch37_chr22_slice.fa",
        "bed": DATA / "geuvadis_slice.bed",
        "covariates": DATA / "covariates_slice.txt",
    }


@pytest.fixture()
def write_config(tmp_path: Path, fixture_paths: dict[str, Path]):
    """Write a config over the fixture (overridable per key) and return its path."""

    def _write(**data_overrides) -> Path:
        data = {
            "vcf": str(fixture_paths["vcf"]),
            "fasta": str(fixture_paths["fasta"]),
            "genes": str(fixture_paths["bed"]),
            "expression": str(fixture_paths["bed"]),
            "covariates": str(fixture_paths["covariates"]),
            "covariate_names": "svd_PC",
            "n_covariates": 5,
            "contig_aliases": {"chr22": "22"},
        }
        data.update({k: (str(v) if isinstance(v, Path) else v) for k, v in data_overrides.items()})
        cfg = {"name": "t", "out_dir": str(tmp_path / "out"), "data": data}
        p = tmp_path / "config.yaml"
        p.write_text(yaml.safe_dump(cfg))
        return p

    return _write
