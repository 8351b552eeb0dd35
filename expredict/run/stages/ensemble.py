"""Stage ``ensemble``: per gene, a non-negative linear stack of other methods' predictions; method ``ensemble``.

For each gene the members' predictions (by default the elastic net and the per-gene sequence
head; each optional) are combined as ``b0 + sum_m w_m * p_m`` with every ``w_m >= 0``, fitted by
non-negative least squares on the **validation** individuals only (their targets were never used
to train a member), then applied to every individual, so the test individuals are scored like
any other method. Non-negative weights keep the stack interpretable: ``w_m`` is how much of
member ``m`` the gene uses, and a member that does not help gets 0. Weights and intercepts go to
``trained/ensemble/weights.parquet``.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
from numpy.typing import NDArray

from expredict.config import Config
from expredict.errors import ConfigError
from expredict.run.engine import RunContext, Stage
from expredict.run.layout import MethodLabels
from expredict.run.method import Method

_log = logging.getLogger(__name__)
MIN_VAL = 5
"""Fewest validation individuals with every member's prediction for a gene to get a stack."""


def fit_stack(p_val: NDArray[np.float64], y_val: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
    """Non-negative weights ``w`` and intercept ``b0`` minimising ``||y - b0 - P w||^2`` (``w >= 0``).

    The intercept is free: predictions and targets are centred, NNLS solves for ``w``, and
    ``b0 = mean(y) - mean(P) w``.
    """
    from scipy.optimize import nnls

    mu_p, mu_y = p_val.mean(axis=0), float(y_val.mean())
    w, _ = nnls(p_val - mu_p, y_val - mu_y)
    return w, mu_y - float(mu_p @ w)


def check_members(config: Config) -> None:
    """Every member must be another method of the run (checked before any stage runs)."""
    from expredict.run.registry import METHODS

    unknown = [m for m in config.ensemble.members if m not in METHODS or m == "ensemble"]
    if unknown:
        msg = f"ensemble.members: unknown method(s) {unknown}; choose from {', '.join(m for m in METHODS if m != 'ensemble')}"
        raise ConfigError(msg)


def run(ctx: RunContext) -> dict:
    """Fit one stack per gene on the validation individuals and predict every individual."""
    out, members = ctx.out, list(ctx.config.ensemble.members)
    present = out.methods_with_predictions(members)
    missing = [m for m in members if m not in present]
    if missing:
        _log.info(f"[ensemble] members without predictions, left out: {', '.join(missing)}")
    if not present:
        _log.warning("[ensemble] no member has predictions; nothing to stack (run the members' stages first)")
        return {"n_genes": 0}
    samples, split, targets = out.read_targets()
    label = dict(zip(samples, split, strict=True))
    frames = [out.read_predictions(m).select("gene_id", "sample", pl.col("prediction").alias(m)) for m in present]
    wide = frames[0]
    for f in frames[1:]:
        wide = wide.join(f, on=["gene_id", "sample"], how="full", coalesce=True)
    observed = targets.drop("split").unpivot(index="sample", variable_name="gene_id", value_name="y")
    wide = wide.join(observed, on=["gene_id", "sample"], how="left").with_columns(
        pl.col("sample").replace_strict(label, return_dtype=pl.String).alias("split"))
    parts = wide.partition_by("gene_id", as_dict=True, maintain_order=True)
    weights, rows = [], []
    for gene_id in ctx.genes()["gene_id"].to_list():
        part = parts.get((gene_id,))
        if part is None:
            continue
        val = part.filter(pl.col("split") == "val")
        p_val = val.select(present).to_numpy().astype(np.float64)
        y_val = val["y"].to_numpy().astype(np.float64)
        # a member without validation predictions for this gene (e.g. no model) drops out
        used = [m for j, m in enumerate(present) if np.isfinite(p_val[:, j]).sum() >= MIN_VAL]
        p_val = p_val[:, [present.index(m) for m in used]]
        ok = np.isfinite(p_val).all(axis=1) & np.isfinite(y_val)
        if not used or ok.sum() < MIN_VAL:
            continue
        w, b0 = fit_stack(p_val[ok], y_val[ok])
        weights += [(gene_id, m, float(wm), b0, int(ok.sum())) for m, wm in zip(used, w, strict=True)]
        full = part.select(used).to_numpy().astype(np.float64)
        pred = b0 + np.where(np.isfinite(full), full, 0.0) @ w
        finite = np.isfinite(full[:, w > 0]).all(axis=1)
        rows.append(part.select("gene_id", "sample", "split", pl.Series("prediction", np.where(finite, pred, np.nan))))
    table = pl.DataFrame(weights, schema={"gene_id": pl.String, "member": pl.String, "weight": pl.Float64,
                                          "intercept": pl.Float64, "n_val": pl.Int64}, orient="row")
    out.write_parquet(out.trained("ensemble", "weights.parquet"), table)
    if not rows:
        _log.warning("[ensemble] no gene had enough validation individuals to fit a stack")
        return {"n_genes": 0}
    frame = pl.concat(rows)
    random_members = [m for m in present if out.read_labels(m).random_weights]
    share = table.group_by("member").agg((pl.col("weight") > 0).mean().alias("share")).sort("member")
    used_text = ", ".join(f"{m} in {100 * s:.0f}% of genes" for m, s in share.iter_rows())
    note = (f"ensemble: a non-negative stack of {', '.join(present)} fitted per gene on the validation individuals "
            f"({len(rows)} genes); members with a non-zero weight: {used_text}.")
    out.write_predictions("ensemble", frame, MethodLabels(random_weights=bool(random_members), notes=(note,)))
    _log.info(f"[ensemble] {note}")
    return {"n_genes": len(rows), "members": present}


def _key(config: Config) -> list:
    return [config.ensemble.model_dump(mode="json")]


STAGE = Stage(
    name="ensemble", run=run, version=1, key_parts=_key, needs=("prepare",), outputs=("trained/ensemble",),
    methods=(Method("ensemble", "a per-gene non-negative stack of other methods, fitted on validation individuals"),),
    per_gene=True, enabled=lambda config: config.ensemble.enabled, scores_methods=True, check=check_members,
)
