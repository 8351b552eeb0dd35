"""Expression head: planted signal, shuffled control, pairwise loss, no leaks, determinism, checkpoints."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
import torch
from sklearn.base import clone

from expredict.errors import ConfigError, ModelLoadError
from expredict.head import (
    GeneData,
    HeadConfig,
    HeadRegressor,
    MultiGeneHeadRegressor,
    head_loss,
    pairwise_loss,
    pearson_r,
    train_gene,
    train_multi_gene,
)
from expredict.splits import make_individual_split, split_indices

SMALL = HeadConfig(d_model=32, n_layers=1, n_heads=2, dim_feedforward=64, max_epochs=200, patience=20)
FAST = HeadConfig(d_model=16, n_layers=1, n_heads=2, dim_feedforward=32, max_epochs=15, patience=5)


def synthetic_gene(n=300, n_var=6, n_tokens=8, d=16, noise=0.6, seed=0, w=None):
    """A gene whose distinct haplotypes get embeddings; expression = f(two variants) + noise.

    Each variant shifts the embedding of one token by its own random direction (plus a little
    per-haplotype jitter, as a frozen model would); expression is ``dos0 - 0.8 dos1`` (or, with a
    shared direction ``w``, each variant's effect is its direction projected on ``w``).
    """
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.25, 0.5, n_var)
    haps = (rng.random((2 * n, n_var)) < p).astype(np.int8)
    uniq, inv = np.unique(haps, axis=0, return_inverse=True)
    emb = np.repeat(rng.normal(size=(n_tokens, d))[None], len(uniq), 0)
    dirs = rng.normal(size=(n_var, d)) * 0.3
    pos = rng.choice(n_tokens, n_var, replace=False)
    for v in range(n_var):
        emb[:, pos[v], :] += uniq[:, v : v + 1] * dirs[v]
    emb += rng.normal(size=emb.shape) * 0.02
    dos = haps.reshape(n, 2, n_var).sum(1)
    effect = np.array([1.0, -0.8] + [0.0] * (n_var - 2)) if w is None else dirs @ w
    g = dos @ effect
    y = g / g.std() + rng.normal(size=n) * noise + 5.0
    return emb.astype(np.float32), inv.reshape(n, 2).astype(np.int64), y


SAMPLES = [f"S{i:03d}" for i in range(300)]
ROWS = split_indices(make_individual_split(SAMPLES, seed=1, fractions=(0.5, 0.15, 0.35)), SAMPLES)


@pytest.fixture(scope="module")
def gene():
    return synthetic_gene()


@pytest.fixture(scope="module")
def trained(gene, tmp_path_factory):
    out = tmp_path_factory.mktemp("heads")
    emb, index, y = gene
    rec = train_gene("ENSG1.1", emb, index, y, ROWS, SMALL, out, samples=SAMPLES, random_weights_embeddings=True)
    return rec, out


# -- loss -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 17])
def test_pairwise_loss_matches_brute_force(n):
    g = torch.Generator().manual_seed(n)
    pred = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    pairs = list(itertools.combinations(range(n), 2))
    brute = sum(((y[i] - y[j]) - (pred[i] - pred[j])) ** 2 for i, j in pairs) / len(pairs)
    fast = pairwise_loss(pred, y)
    assert torch.allclose(fast, brute)
    (g1,) = torch.autograd.grad(fast, pred)
    (g2,) = torch.autograd.grad(brute, pred)
    assert torch.allclose(g1, g2)
    mixed = head_loss(pred, y, 0.25, 2.0)
    assert torch.allclose(mixed, 0.25 * torch.mean((pred - y) ** 2) + 2.0 * brute)
    # invariant to a constant offset: only between-individual differences count
    assert torch.allclose(pairwise_loss(pred + 3.0, y), fast)
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_loss(pred[:1], y[:1])


def test_config_validation_and_defaults():
    c = HeadConfig()
    assert c.pairwise_weight > c.mse_weight  # pairwise-dominant default (science.md §5)
    assert HeadConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match=r"head\.n_layers: must be >= 1; got 0"):
        HeadConfig(n_layers=0)
    with pytest.raises(ConfigError, match="divisible"):
        HeadConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="unknown keys"):
        HeadConfig.from_dict({"depth": 3})
    assert HeadConfig(batch_size=0).batch_size is None  # 0 = one batch, as in the YAML config
    with pytest.raises(ConfigError, match="batch_size"):
        HeadConfig(batch_size=1)


# -- learning -------------------------------------------------------------------------------------
def test_head_learns_planted_signal(trained):
    rec, out = trained
    assert rec["test_r"] > 0.6, rec
    assert rec["n_train"] == 150 and rec["n_val"] == 45 and rec["n_test"] == 105
    assert 1 <= rec["best_epoch"] <= rec["epochs"] <= SMALL.max_epochs
    assert rec["random_weights_embeddings"] is True
    assert set(rec) >= {"gene_id", "val_r", "seconds", "checkpoint"}


def test_shuffled_labels_stay_near_zero(gene, tmp_path):
    emb, index, y = gene
    y_shuf = np.random.default_rng(7).permutation(y)
    rec = train_gene("shuffled", emb, index, y_shuf, ROWS, SMALL, tmp_path)
    assert abs(rec["test_r"]) < 0.25, rec


# -- no leaks -------------------------------------------------------------------------------------
def test_test_individuals_never_used_in_fit(gene, tmp_path):
    emb, index, y = gene
    corrupted = y.copy()
    corrupted[ROWS["test"]] = np.random.default_rng(3).normal(size=len(ROWS["test"])) * 1e3
    a = train_gene("a", emb, index, y, ROWS, FAST, tmp_path / "a")
    b = train_gene("b", emb, index, corrupted, ROWS, FAST, tmp_path / "b")
    pa = pl.read_csv(tmp_path / "a" / "a.predictions.tsv", separator="\t")["y_pred"].to_numpy()
    pb = pl.read_csv(tmp_path / "b" / "b.predictions.tsv", separator="\t")["y_pred"].to_numpy()
    assert np.array_equal(pa, pb)  # identical model: test targets touched no fit, normaliser included
    assert a["epochs"] == b["epochs"] and a["test_r"] != b["test_r"]
    m = HeadRegressor.load(tmp_path / "a" / "a.pt")
    assert np.isclose(m.normalizer_.mean_[0], y[ROWS["train"]].mean())
    assert m.n_train_ == len(ROWS["train"]) and m.n_val_ == len(ROWS["val"])


def test_validation_individuals_only_steer_early_stopping(gene):
    emb, index, y = gene
    tr, va = ROWS["train"], ROWS["val"]
    cfg = HeadConfig(**{**FAST.to_dict(), "max_epochs": 8, "patience": 100})
    a = HeadRegressor(cfg).fit(emb, index[tr], y[tr], val=(index[va], y[va]))
    b = HeadRegressor(cfg).fit(emb, index[tr], y[tr], val=(index[va], -y[va]))
    # without early stopping kicking in, both train the same epochs; the kept epoch may differ
    assert a.n_epochs_ == b.n_epochs_ == 8
    assert np.array_equal(a.normalizer_.mean_, b.normalizer_.mean_)
    assert np.array_equal(a.input_mean_, b.input_mean_)


# -- determinism and checkpoints ------------------------------------------------------------------
def test_same_seed_same_predictions(gene):
    emb, index, y = gene
    tr, va = ROWS["train"], ROWS["val"]
    p1 = HeadRegressor(FAST, random_state=4).fit(emb, index[tr], y[tr], val=(index[va], y[va])).predict(emb, index)
    p2 = HeadRegressor(FAST, random_state=4).fit(emb, index[tr], y[tr], val=(index[va], y[va])).predict(emb, index)
    p3 = HeadRegressor(FAST, random_state=5).fit(emb, index[tr], y[tr], val=(index[va], y[va])).predict(emb, index)
    assert np.array_equal(p1, p2)
    assert not np.array_equal(p1, p3)


def test_save_load_identical_predictions(gene, trained, tmp_path):
    emb, index, y = gene
    rec, out = trained
    m = HeadRegressor.load(rec["checkpoint"])
    assert m.random_weights_embeddings is True and m.metadata["gene_id"] == "ENSG1.1"
    assert m.score(emb[:], index[ROWS["test"]], y[ROWS["test"]]) == pytest.approx(rec["test_r"])
    table = pl.read_csv(out / "ENSG1.1.predictions.tsv", separator="\t")
    assert table["sample"].to_list() == SAMPLES
    # predictions for the same individuals from the checkpoint equal those made during evaluation
    assert np.allclose(m.predict(emb, index), table["y_pred"].to_numpy(), rtol=0, atol=1e-12)
    # a new cohort whose haplotype rows are ordered differently gives the same per-individual values
    perm = np.random.default_rng(0).permutation(len(emb))
    inv = np.argsort(perm)
    assert np.allclose(m.predict(emb[perm], inv[index]), m.predict(emb, index), atol=1e-5)
    m.save(tmp_path / "again.pt")
    assert np.array_equal(HeadRegressor.load(tmp_path / "again.pt").predict(emb, index), m.predict(emb, index))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError):
        HeadRegressor.load(tmp_path / "bad.pt")


def test_haplotype_order_does_not_matter_and_concat_mode(gene):
    emb, index, y = gene
    tr = ROWS["train"]
    for combine in ("average", "concat"):
        cfg = HeadConfig(**{**FAST.to_dict(), "combine": combine, "max_epochs": 3, "batch_size": 64})
        m = HeadRegressor(cfg).fit(emb, index[tr], y[tr])
        assert m.n_epochs_ == 3
        assert np.allclose(m.predict(emb, index), m.predict(emb, index[:, ::-1]), atol=1e-5)
    assert clone(m).get_params()["config"] == m.config
    with pytest.raises(ValueError, match="index values"):
        m.predict(emb, index + len(emb))


def test_pooled_2d_embeddings_are_one_token(gene):
    emb, index, y = gene
    tr = ROWS["train"]
    pooled = emb.mean(1)
    cfg = HeadConfig(**{**FAST.to_dict(), "max_epochs": 2})
    m = HeadRegressor(cfg).fit(pooled, index[tr], y[tr])
    assert m.n_tokens_ == 1 and m.predict(pooled, index).shape == (len(index),)


# -- multi-gene mode ------------------------------------------------------------------------------
def test_multi_gene_mode_trains_on_seen_evaluates_unseen(tmp_path):
    w = np.random.default_rng(9).normal(size=16)
    genes = {f"G{i}": GeneData(*synthetic_gene(n=200, n_var=5, seed=10 + i, noise=0.5, w=w)) for i in range(8)}
    classes = {g: "unseen" if i >= 6 else "seen" for i, g in enumerate(genes)}
    classes["G5"] = "buffer"
    samples = SAMPLES[:200]
    rows = split_indices(make_individual_split(samples, seed=1), samples)
    cfg = HeadConfig(**{**SMALL.to_dict(), "max_epochs": 40, "patience": 10, "genes_per_step": 3})
    recs = train_multi_gene(genes, rows, classes, cfg, tmp_path)
    by = {r["gene_id"]: r for r in recs}
    assert set(by) == {f"G{i}" for i in (0, 1, 2, 3, 4, 6, 7)}
    assert {by[g]["gene_class"] for g in ("G6", "G7")} == {"unseen"}
    assert by["G6"]["n_train"] == 0
    assert np.mean([by[f"G{i}"]["test_r"] for i in range(5)]) > 0.5
    assert np.mean([by[g]["test_r"] for g in ("G6", "G7")]) > 0.2  # a shared rule transfers to new genes
    m = MultiGeneHeadRegressor.load(tmp_path / "multigene.pt")
    g6 = genes["G6"]
    pred = m.predict("G6", g6.embeddings, g6.index, reference_index=g6.index[rows["train"]])
    assert pearson_r(pred[rows["test"]], g6.y[rows["test"]]) == pytest.approx(by["G6"]["test_r"], abs=1e-6)


def test_pearson_r_helper():
    a = np.array([1.0, 2.0, 3.0, np.nan])
    assert pearson_r(a, np.array([2.0, 4.0, 6.0, 1.0])) == pytest.approx(1.0)
    assert np.isnan(pearson_r(np.ones(3), np.arange(3.0)))
