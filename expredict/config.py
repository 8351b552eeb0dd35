"""The one YAML configuration schema, validated with pydantic, every default visible here.

Relative paths in a config file are resolved against the directory that holds the file.
Unknown keys are errors (a typo must not silently fall back to a default); every error names the
key path, e.g. ``head.n_layers: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from expredict.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Input files. ``contig_aliases`` maps VCF/BED contig names to FASTA names (``chr22: "22"``); without
    an alias ``chr22`` and ``22`` are matched between the VCF, the FASTA and the genes when unambiguous."""

    vcf: Path
    fasta: Path
    genes: Path
    expression: Path
    genes_format: Literal["auto", "bed", "gtf", "tsv"] = "auto"
    expression_format: Literal["auto", "bed", "tsv", "parquet"] = "auto"
    covariates: Path | None = None
    covariate_names: str | None = Field(None, description="keep covariate rows whose name contains this")
    n_covariates: int | None = Field(None, ge=0, description="keep the first n covariate rows (after the name filter)")
    populations: Path | None = Field(None, description="TSV with columns sample, population")
    contig_aliases: dict[str, str] = Field(default_factory=dict)
    genome_build: Literal["GRCh37", "GRCh38"] | None = Field(
        None, description="the VCF's build (PredictDB keys _b37 / _b38); None: read from the VCF header"
    )
    drop_unmatched_samples: bool = False
    genes_subset: list[str] | None = None
    max_genes: int | None = Field(None, ge=1)


class ExpressionConfig(_Section):
    """Target preparation: a stateless transform, then (fitted on training individuals only)
    covariate regression and per-gene z-scores."""

    transform: Literal["none", "log1p", "log2p1", "inverse_normal"] = "log2p1"
    regress_covariates: bool = True
    min_nonzero_fraction: float = Field(0.5, ge=0, le=1, description="drop genes zero in more than this fraction")


class HaplotypeConfig(_Section):
    """Personal sequences around each TSS (see expredict.haplotypes)."""

    mode: Literal["center_tss", "left", "ragged"] = "center_tss"
    length: int = Field(5994, ge=6, description="bp; NT v1 takes <= 5,994 bp per pass, v2 <= 12,282")
    reverse_complement_minus: bool = False
    unphased: Literal["ignore", "iupac", "error"] = Field(
        "ignore", description="unphased het calls; `expredict run` stops when over 1 % of the calls in the windows "
        "are unphased unless this is set explicitly"
    )
    ref_mismatch: Literal["error", "skip"] = "error"
    snv_only: bool = False


class EmbeddingConfig(_Section):
    """Frozen Nucleotide Transformer. ``model`` is a hub id or a local directory; ``tiny: v1|v2``
    builds a tiny random-weight model of that architecture (offline demo; results are labelled)."""

    model: str = "InstaDeepAI/nucleotide-transformer-500m-1000g"
    revision: str | None = None
    tiny: Literal["v1", "v2"] | None = None
    layer: int = -1
    intermediate_layer: int | None = None
    pooling: Literal["mean", "bins"] = "bins"
    n_bins: int = Field(16, ge=1)
    batch_size: int = Field(16, ge=1)
    device: str = "auto"
    cache_dir: Path | None = None
    random_control: bool = Field(
        False,
        description="also train the head on a random-weight twin of the model (same architecture, same haplotypes): "
        "method nt_random, the control that shows what pretraining adds",
    )
    random_control_seed: int = Field(1, description="seed of the random twin's initialisation")


class HeadConfig(_Section):
    """The expression head: a small transformer over each haplotype's embedding tokens.

    One head per gene (``multi_gene: true`` adds one head shared by all seen genes). Inputs are
    standardised, passed through ``Linear(d_in, d_model)`` plus a learned positional embedding, a
    pre-norm transformer encoder, masked mean pooling and a ``LayerNorm``; the two haplotypes of an
    individual are then combined (``combine``) into one prediction.

    Loss: ``mse_weight * MSE + pairwise_weight * mean over pairs of individuals i < j of
    ((y_i - y_j) - (yhat_i - yhat_j))^2``, on targets z-scored per gene over the training
    individuals. The default is pairwise-dominant: the project scores a gene by the Pearson r
    across individuals, and the pairwise term rewards exactly that, getting the *differences*
    between individuals right, whatever the gene's overall level; the small MSE term only keeps
    the predictions on the target scale. The z-score-only negative control is
    ``pairwise_weight: 0, mse_weight: 1``.

    AdamW (``lr``, ``weight_decay``), early stopping on the validation individuals. The seed is
    not part of this section: the run's top-level ``seed`` is passed to the head separately.
    """

    # -- model --
    d_model: int = Field(64, ge=4, description="transformer width; must be divisible by n_heads")
    n_layers: int = Field(2, ge=1, description="transformer encoder layers")
    n_heads: int = Field(4, ge=1, description="attention heads")
    dim_feedforward: int = Field(128, ge=1, description="feed-forward width of each encoder layer")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout in the encoder layers")
    max_tokens: int = Field(1024, ge=1, description="size of the learned positional table; n_tokens must not exceed it")
    combine: Literal["average", "concat"] = Field(
        "average",
        description="average: one linear output per haplotype, the two averaged, so each haplotype's copy of "
        "the gene contributes additively (as its cis-regulatory sequence acts on its own copy) and the result "
        "does not depend on the arbitrary phase order; concat: a linear output on the two pooled vectors "
        "concatenated, symmetrised over the order, (f([a, b]) + f([b, a])) / 2, which can learn dominance",
    )
    input_standardize: Literal["token", "feature", "none"] = Field(
        "token",
        description="token: centre and scale every (token, feature) over the training individuals' haplotypes, "
        "which exposes the small between-haplotype differences of frozen embeddings; feature: per feature over "
        "all tokens; none",
    )
    input_scale_floor: float = Field(
        0.05,
        description="token mode: floor on the per-(token, feature) sd, as a fraction of that feature's sd over "
        "all tokens, so that invariant positions are not blown up",
    )
    gene_embedding_dim: int = Field(
        0, ge=0, description="multi-gene mode: width of the gene embedding added to every token (0 = d_model)"
    )
    gene_dropout: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="multi-gene mode: probability of replacing a training gene's id by the 'unknown gene' id, "
        "which is what genes not seen in training use",
    )
    # -- training --
    mse_weight: float = Field(0.1, ge=0, description="weight of the MSE term of the loss")
    pairwise_weight: float = Field(
        1.0, ge=0, description="weight of the pairwise term of the loss (mse_weight and pairwise_weight not both 0)"
    )
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(1e-3, ge=0, description="AdamW weight decay")
    max_epochs: int = Field(100, ge=1, description="most training epochs")
    patience: int = Field(10, ge=1, description="stop after this many epochs without an improvement > min_delta")
    min_delta: float = Field(1e-4, description="smallest change of the early-stopping score that counts")
    early_stopping_metric: Literal["loss", "r"] = Field(
        "loss", description="loss: the training loss on the validation individuals; r: their Pearson r"
    )
    batch_size: int = Field(
        0, ge=0, description="individuals per step; 0 = all training individuals in one batch, else >= 2"
    )
    genes_per_step: int = Field(8, ge=1, description="multi-gene mode: (gene, batch) pieces per optimiser step")
    grad_clip: float = Field(1.0, description="max gradient norm (0 = off)")
    inverse_normal: bool = Field(
        False, description="inverse-normal transform the targets before the z-score (fitted on training individuals)"
    )
    # -- run --
    device: str = Field("auto", description="torch device for the head (auto = CUDA when available)")
    multi_gene: bool = Field(
        False, description="also train one head shared by the seen genes (gene embedding) and score unseen genes"
    )

    @field_validator("batch_size")
    @classmethod
    def _pairs_need_two(cls, v: int) -> int:
        if v == 1:
            kind, msg = "head_rule", "must be >= 2 (pairs need two individuals), or 0 for one batch"
            raise PydanticCustomError(kind, msg)
        return v

    @model_validator(mode="after")
    def _cross_field_rules(self) -> HeadConfig:
        errors = []
        if self.d_model % self.n_heads:
            msg = "must be divisible by head.n_heads ({n_heads})"
            errors.append(("d_model", self.d_model, msg, {"n_heads": self.n_heads}))
        if self.mse_weight + self.pairwise_weight <= 0:
            msg = "mse_weight and pairwise_weight must not both be 0"
            errors.append(("pairwise_weight", self.pairwise_weight, msg, {}))
        if errors:  # raised as a ValidationError so that each error names its key, not just the section
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    {"type": PydanticCustomError("head_rule", msg, ctx), "loc": (key,), "input": value}
                    for key, value, msg, ctx in errors
                ],
            )
        return self


class EnetConfig(_Section):
    """PrediXcan-style elastic net (glmnet alpha = 0.5, lambda.min, nested CV for export)."""

    window: int = Field(1_000_000, ge=0, description="bp on each side of gene start/end")
    matched_window: int | None = Field(
        None, ge=0, description="second fit on the sequence model's window (bp each side)"
    )
    maf: float = Field(0.01, ge=0, le=0.5, description="least minor-allele frequency, among training individuals")
    drop_ambiguous: bool = Field(True, description="drop strand-ambiguous A/T and C/G SNPs, as PredictDB does")
    alpha: float = Field(0.5, gt=0, le=1)
    n_lambda: int = Field(100, ge=2)
    n_folds: int = Field(10, ge=2)
    n_outer_folds: int = Field(5, ge=2)
    nested_cv: bool = True
    backend: Literal["auto", "numba", "glmnet", "sklearn"] = Field(
        "auto",
        description="path solver: auto = numba (glmnet's algorithm, a gene's nested-CV fits in lockstep); "
        "glmnet = python-glmnet's Fortran; sklearn = scikit-learn (same paths, folds and lambda.min)",
    )
    path_stop: bool = Field(
        True,
        description="end each lambda path (every fold computes its own, as in cv.glmnet) where glmnet ends it "
        "(dev.ratio > 0.999 or gaining < 1e-5 of itself, after 5 values), as PredictDB's cv.glmnet does; false solves "
        "all n_lambda values",
    )
    export: bool = True


class EnformerConfig(_Section):
    """Enformer on personal sequences. ``tiny: true`` uses a tiny random-weight model (labelled)."""

    enabled: bool = True
    model: str = "EleutherAI/enformer-official-rough"
    tiny: bool = False
    length: int = Field(196_608, ge=128)
    target_length: int = Field(896, description="output bins; -1 disables the crop (tiny models use their own)")
    track: int = Field(5110, ge=0)
    n_center_bins: Literal[3, 10] = 3
    rc_average: bool = False
    batch_size: int = Field(2, ge=1)
    device: str = "auto"
    tuned: bool = False
    max_genes: int | None = Field(None, ge=1, description="run Enformer on the first n genes only (CPU demos)")


class EnsembleConfig(_Section):
    """A per-gene non-negative stack of other methods' predictions, fitted on the validation individuals."""

    enabled: bool = True
    members: list[str] = Field(
        default_factory=lambda: ["enet", "nt_head"],
        min_length=1,
        description="methods to stack; members without predictions in the run are left out (logged)",
    )


class SplitConfig(_Section):
    """Individuals split once, shared by every method."""

    kind: Literal["random", "population"] = "random"
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    test_populations: list[str] | None = None
    gene_heldout_fraction: float = Field(0.2, ge=0, lt=1)
    gene_blocks: int = Field(10, ge=1)

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if abs(sum(v) - 1) > 1e-6 or min(v) < 0:
            msg = f"train/val/test fractions must be >= 0 and sum to 1; got {v}"
            raise ValueError(msg)
        return v


class ExecutorConfig(_Section):
    """Where per-gene work runs: a local process pool or Dask distributed."""

    backend: Literal["local", "dask"] = "local"
    n_workers: int = Field(2, ge=1)
    scheduler_address: str | None = None


class Config(_Section):
    """Top-level configuration."""

    name: str = "expredict-run"
    out_dir: Path = Path("runs/expredict")
    seed: int = 0
    data: DataConfig
    expression: ExpressionConfig = ExpressionConfig()
    haplotypes: HaplotypeConfig = HaplotypeConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    head: HeadConfig = HeadConfig()
    enet: EnetConfig = EnetConfig()
    enformer: EnformerConfig = EnformerConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    split: SplitConfig = SplitConfig()
    executor: ExecutorConfig = ExecutorConfig()


_PATH_KEYS = {
    "out_dir": None,
    "data": ("vcf", "fasta", "genes", "expression", "covariates", "populations"),
    "embedding": ("cache_dir",),
}


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(raw)

    def fix(v: Any) -> Any:
        if v is None or not isinstance(v, str | os.PathLike):
            return v
        p = Path(os.path.expanduser(str(v)))
        return p if p.is_absolute() else Path(os.path.normpath(base / p))

    if "out_dir" in out:
        out["out_dir"] = fix(out["out_dir"])
    for section, keys in _PATH_KEYS.items():
        if keys and isinstance(out.get(section), dict):
            sec = dict(out[section])
            for k in keys:
                if k in sec:
                    sec[k] = fix(sec[k])
            out[section] = sec
    emb = out.get("embedding")
    if isinstance(emb, dict) and isinstance(emb.get("model"), str) and emb["model"].startswith((".", "/", "~")):
        emb = dict(emb)
        emb["model"] = str(fix(emb["model"]))
        out["embedding"] = emb
    return out


def config_from_dict(raw: dict[str, Any], base_dir: str | os.PathLike[str] = ".", source: str = "config") -> Config:
    """Validate a config mapping; relative paths are taken against ``base_dir``."""
    if not isinstance(raw, dict):
        msg = f"{source}: the top level must be a mapping of sections"
        raise ConfigError(msg)
    try:
        return Config.model_validate(_resolve_paths(raw, Path(base_dir)))
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            lines.append(f"{key}: {err['msg']}")
        msg = f"{source}: invalid configuration:\n  " + "\n  ".join(lines)
        raise ConfigError(msg) from None


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a YAML config file; ``overrides`` are dotted keys (``{"out_dir": ...}``)."""
    p = Path(path)
    if not p.exists():
        msg = f"{p}: config file not found"
        raise ConfigError(msg)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        msg = f"{p}: not valid YAML ({e})"
        raise ConfigError(msg) from None
    for key, value in (overrides or {}).items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = str(value) if isinstance(value, Path) else value
    return config_from_dict(raw, p.parent.resolve(), str(p))


def config_to_yaml(config: Config) -> str:
    """The exact, fully expanded configuration as YAML (for reports and manifests)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
