"""Expression head: planted signal, shuffled control, pairwise loss, no leaks, determinism, checkpoints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sklearn.base import clone

from expredict.config import HeadConfig, config_from_dict
from expredict.errors import ConfigError, ModelLoadError
from expredict.head import (
    GeneData,
    GeneHeadFit,
    HeadRegressor,
    MultiGeneHeadRegressor,
    head_loss,
    pairwise_loss,
    pearson_r,
    train_gene,
    train_multi_gene,
)
from expredict.head.estimator import FORMAT, FORMAT_VERSION
from expredict.splits import make_individual_split, split_indices

SMALL = HeadConfig(d_model=32, n_layers=1, n_heads=2, dim_feedforward=64, max_epochs=200, patience=20)
FAST = HeadConfig(d_model=16, n_layers=1, n_heads=2, dim_feedforward=32, max_epochs=15, patience=5)


def with_(config: HeadConfig, **changes) -> HeadConfig:
    """``config`` with ``changes``, validated (``model_copy(update=...)`` would skip validation)."""
    return HeadConfig(**{**config.model_dump(), **changes})


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
def trained(gene):
    emb, index, y = gene
    return train_gene("ENSG1.1", emb, index, y, ROWS, SMALL, samples=SAMPLES, random_weights_embeddings=True)


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
    # pairwise-dominant default: the loss mostly rewards between-individual differences (what r scores)
    assert c.pairwise_weight > c.mse_weight
    assert HeadConfig.model_validate(c.model_dump()) == c
    assert "seed" not in c.model_dump()  # the run's seed is passed separately
    with pytest.raises(ValidationError, match=r"n_layers\n.*greater than or equal to 1"):
        HeadConfig(n_layers=0)
    with pytest.raises(ValidationError, match=r"d_model\n.*divisible by head\.n_heads \(4\)"):
        HeadConfig(d_model=30, n_heads=4)
    with pytest.raises(ValidationError, match=r"depth\n.*Extra inputs are not permitted"):
        HeadConfig(depth=3)
    with pytest.raises(ValidationError, match=r"pairwise_weight\n.*not both be 0"):
        HeadConfig(mse_weight=0, pairwise_weight=0)
    assert HeadConfig(batch_size=0).batch_size == 0  # 0 = all training individuals in one batch
    with pytest.raises(ValidationError, match=r"batch_size\n.*pairs need two"):
        HeadConfig(batch_size=1)
    with pytest.raises(ValidationError):  # frozen: one validated value per run
        c.d_model = 8  # type: ignore[misc]


def test_config_errors_name_the_key():
    data = {"vcf": "a.vcf.gz", "fasta": "r.fa", "genes": "g.bed", "expression": "e.bed"}
    with pytest.raises(ConfigError) as e:
        config_from_dict({"data": data, "head": {"d_model": 30}})
    assert "head.d_model: must be divisible by head.n_heads (4)" in str(e.value)
    with pytest.raises(ConfigError, match=r"head\.batch_size: must be >= 2"):
        config_from_dict({"data": data, "head": {"batch_size": 1}})
    with pytest.raises(ConfigError, match=r"head\.pairwise_weight: mse_weight and pairwise_weight must not both be 0"):
        config_from_dict({"data": data, "head": {"mse_weight": 0, "pairwise_weight": 0}})
    cfg = config_from_dict({"data": data, "head": {"batch_size": 32, "early_stopping_metric": "r"}})
    assert cfg.head.batch_size == 32 and cfg.head.dim_feedforward == 128 and cfg.head.max_epochs == 100


def test_batch_size_zero_is_one_batch(gene):
    emb, index, y = gene
    tr = ROWS["train"]
    one = HeadRegressor(with_(FAST, max_epochs=3)).fit(emb, index[tr], y[tr]).predict(emb, index)
    big = HeadRegressor(with_(FAST, max_epochs=3, batch_size=10_000)).fit(emb, index[tr], y[tr]).predict(emb, index)
    small = HeadRegressor(with_(FAST, max_epochs=3, batch_size=16)).fit(emb, index[tr], y[tr]).predict(emb, index)
    assert np.array_equal(one, big)
    assert not np.array_equal(one, small)


# -- learning -------------------------------------------------------------------------------------
def test_head_learns_planted_signal(trained):
    assert isinstance(trained, GeneHeadFit)
    rec = trained.record
    assert rec["test_r"] > 0.6, rec
    assert rec["n_train"] == 150 and rec["n_val"] == 45 and rec["n_test"] == 105
    assert 1 <= rec["best_epoch"] <= rec["epochs"] <= SMALL.max_epochs
    assert rec["random_weights_embeddings"] is True
    assert set(rec) >= {"gene_id", "val_r", "seconds"} and "checkpoint" not in rec
    assert trained.estimator.n_epochs_ == rec["epochs"] and trained.estimator.config_ == SMALL


def test_shuffled_labels_stay_near_zero(gene, tmp_path, monkeypatch):
    emb, index, y = gene
    y_shuf = np.random.default_rng(7).permutation(y)
    monkeypatch.chdir(tmp_path)
    rec = train_gene("shuffled", emb, index, y_shuf, ROWS, SMALL).record
    assert abs(rec["test_r"]) < 0.25, rec
    assert list(tmp_path.iterdir()) == []  # the library writes nothing


# -- no leaks -------------------------------------------------------------------------------------
def test_test_individuals_never_used_in_fit(gene):
    emb, index, y = gene
    corrupted = y.copy()
    corrupted[ROWS["test"]] = np.random.default_rng(3).normal(size=len(ROWS["test"])) * 1e3
    a = train_gene("a", emb, index, y, ROWS, FAST)
    b = train_gene("b", emb, index, corrupted, ROWS, FAST)
    pa, pb = a.predictions["y_pred"].to_numpy(), b.predictions["y_pred"].to_numpy()
    assert np.array_equal(pa, pb)  # identical model: test targets touched no fit, normaliser included
    assert a.record["epochs"] == b.record["epochs"] and a.record["test_r"] != b.record["test_r"]
    m = a.estimator
    assert np.isclose(m.normalizer_.mean_[0], y[ROWS["train"]].mean())
    assert m.n_train_ == len(ROWS["train"]) and m.n_val_ == len(ROWS["val"])


def test_validation_individuals_only_steer_early_stopping(gene):
    emb, index, y = gene
    tr, va = ROWS["train"], ROWS["val"]
    cfg = with_(FAST, max_epochs=8, patience=100)
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
    p1 = HeadRegressor(FAST, seed=4).fit(emb, index[tr], y[tr], val=(index[va], y[va])).predict(emb, index)
    p2 = HeadRegressor(FAST, seed=4).fit(emb, index[tr], y[tr], val=(index[va], y[va])).predict(emb, index)
    p3 = HeadRegressor(FAST, seed=5).fit(emb, index[tr], y[tr], val=(index[va], y[va])).predict(emb, index)
    assert np.array_equal(p1, p2)
    assert not np.array_equal(p1, p3)
    q4 = train_gene("g", emb, index, y, ROWS, FAST, seed=4).predictions["y_pred"].to_numpy()
    assert np.array_equal(q4, p1)  # train_gene's seed is the estimator's seed
    with pytest.raises(TypeError, match="HeadConfig"):
        HeadRegressor({"d_model": 16}).fit(emb, index[tr], y[tr])


def test_save_load_identical_predictions(gene, trained, tmp_path):
    emb, index, y = gene
    rec, table = trained.record, trained.predictions
    path = trained.estimator.save(tmp_path / "ENSG1.1.pt")
    assert path == tmp_path / "ENSG1.1.pt" and sorted(p.name for p in tmp_path.iterdir()) == ["ENSG1.1.pt"]
    m = HeadRegressor.load(path)
    assert m.random_weights_embeddings is True and m.metadata["gene_id"] == "ENSG1.1"
    assert m.config_ == SMALL and m.seed_ == 0 and m.n_epochs_ == rec["epochs"]
    assert m.score(emb[:], index[ROWS["test"]], y[ROWS["test"]]) == pytest.approx(rec["test_r"])
    assert table.columns == ["sample", "split", "y", "y_pred"] and table.height == len(SAMPLES)
    assert table["sample"].to_list() == SAMPLES
    for k in ("train", "val", "test"):
        assert np.array_equal(np.flatnonzero(table["split"].to_numpy() == k), ROWS[k])
    assert np.array_equal(table["y"].to_numpy(), y)
    # predictions for the same individuals from the checkpoint equal those made during evaluation
    assert np.array_equal(m.predict(emb, index), table["y_pred"].to_numpy())
    assert pearson_r(table["y_pred"].to_numpy()[ROWS["test"]], y[ROWS["test"]]) == rec["test_r"]
    # a new cohort whose haplotype rows are ordered differently gives the same per-individual values
    perm = np.random.default_rng(0).permutation(len(emb))
    inv = np.argsort(perm)
    assert np.allclose(m.predict(emb[perm], inv[index]), m.predict(emb, index), atol=1e-5)
    m.save(tmp_path / "again.pt")
    assert np.array_equal(HeadRegressor.load(tmp_path / "again.pt").predict(emb, index), m.predict(emb, index))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError):
        HeadRegressor.load(tmp_path / "bad.pt")


def test_checkpoint_stores_config_dump_and_seed_and_reads_older_layout(gene, tmp_path):
    emb, index, y = gene
    tr = ROWS["train"]
    cfg = with_(FAST, max_epochs=2)
    m = HeadRegressor(cfg, seed=9).fit(emb, index[tr], y[tr])
    ck = torch.load(m.save(tmp_path / "new.pt"), weights_only=True)
    assert ck["format"] == FORMAT and ck["format_version"] == FORMAT_VERSION
    assert ck["config"] == cfg.model_dump() and ck["seed"] == 9
    # before the config merge the seed lived in the config and batch_size 0 was stored as None
    old = {k: v for k, v in ck.items() if k != "seed"}
    old["config"] = {k: v for k, v in ck["config"].items() if k not in ("device", "multi_gene")}
    old["config"].update(seed=9, batch_size=None)
    torch.save(old, tmp_path / "old.pt")
    o = HeadRegressor.load(tmp_path / "old.pt")
    assert o.config_ == cfg and o.seed_ == 9 and o.seed == 9
    assert np.array_equal(o.predict(emb, index), m.predict(emb, index))
    torch.save({**ck, "config": {**ck["config"], "d_model": 15}}, tmp_path / "invalid.pt")
    with pytest.raises(ModelLoadError, match="d_model"):
        HeadRegressor.load(tmp_path / "invalid.pt")


def test_haplotype_order_does_not_matter_and_concat_mode(gene):
    emb, index, y = gene
    tr = ROWS["train"]
    for combine in ("average", "concat"):
        cfg = with_(FAST, combine=combine, max_epochs=3, batch_size=64)
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
    cfg = with_(FAST, max_epochs=2)
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
    cfg = with_(SMALL, max_epochs=40, patience=10, genes_per_step=3)
    est, recs = train_multi_gene(genes, rows, classes, cfg)
    assert list(tmp_path.iterdir()) == []
    by = {r["gene_id"]: r for r in recs}
    assert set(by) == {f"G{i}" for i in (0, 1, 2, 3, 4, 6, 7)}
    assert {by[g]["gene_class"] for g in ("G6", "G7")} == {"unseen"}
    assert by["G6"]["n_train"] == 0
    assert np.mean([by[f"G{i}"]["test_r"] for i in range(5)]) > 0.5
    assert np.mean([by[g]["test_r"] for g in ("G6", "G7")]) > 0.2  # a shared rule transfers to new genes
    m = MultiGeneHeadRegressor.load(est.save(tmp_path / "multigene.pt"))
    assert m.config_ == cfg and m.seed_ == est.seed_ == 0 and m.gene_ids_ == est.gene_ids_
    for g in ("G0", "G6"):  # a seen and an unseen gene
        d = genes[g]
        pred = m.predict(g, d.embeddings, d.index, reference_index=d.index[rows["train"]])
        assert np.array_equal(pred, est.predict(g, d.embeddings, d.index, reference_index=d.index[rows["train"]]))
        assert pearson_r(pred[rows["test"]], d.y[rows["test"]]) == pytest.approx(by[g]["test_r"], abs=1e-6)


def test_pearson_r_helper():
    a = np.array([1.0, 2.0, 3.0, np.nan])
    assert pearson_r(a, np.array([2.0, 4.0, 6.0, 1.0])) == pytest.approx(1.0)
    assert np.isnan(pearson_r(np.ones(3), np.arange(3.0)))
