"""Config schema: defaults, path resolution, errors with key paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from expredict.config import config_to_yaml, load_config
from expredict.errors import ConfigError

REPO = Path(__file__).parents[2]


@pytest.mark.parametrize("name", ["geuvadis_chr22.yaml", "fixture.yaml", "gpu_full_cohort.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.data.vcf.is_absolute()
    assert yaml.safe_load(config_to_yaml(cfg))["data"]["vcf"] == str(cfg.data.vcf)


def test_relative_paths_and_overrides(tmp_path):
    p = tmp_path / "sub" / "c.yaml"
    p.parent.mkdir()
    p.write_text(
        yaml.safe_dump({"data": {"vcf": "x.vcf.gz", "fasta": "/abs/r.fa", "genes": "g.bed", "expression": "e.bed"}})
    )
    cfg = load_config(p, {"out_dir": str(tmp_path / "o"), "head.n_layers": 3})
    assert cfg.data.vcf == p.parent / "x.vcf.gz"
    assert cfg.data.fasta == Path("/abs/r.fa")
    assert cfg.out_dir == tmp_path / "o" and cfg.head.n_layers == 3
    assert cfg.haplotypes.mode == "center_tss" and cfg.enet.alpha == 0.5


def test_errors_name_key_paths(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "data": {"vcf": "a", "fasta": "b", "genes": "c", "expression": "d"},
                "head": {"n_layers": 0, "typo": 1},
                "split": {"fractions": [0.5, 0.5, 0.5]},
            }
        )
    )
    with pytest.raises(ConfigError) as e:
        load_config(p)
    text = str(e.value)
    assert "head.n_layers: Input should be greater than or equal to 1" in text
    assert "head.typo: Extra inputs are not permitted" in text
    assert "split.fractions" in text and "sum to 1" in text
    p.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="data: Field required"):
        p.write_text("name: x\n")
        load_config(p)
