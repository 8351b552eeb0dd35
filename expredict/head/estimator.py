"""scikit-learn-style head estimators, per-gene training and the multi-gene mode.

Inputs, for one gene:

``embeddings``
    float32 ``(n_unique, n_tokens, d)``: one row per *distinct* haplotype of the gene (binned token
    means or tiles from the embedding cache, e.g. ``ArrayCache.get(hashes)`` stacked in the order
    of ``iter_unique_haplotypes(...).sequences``).
``index``
    int ``(n_individuals, 2)``: each individual's two haplotypes as rows of ``embeddings``
    (``iter_unique_haplotypes(...).index``).
``y``
    float ``(n_individuals,)``: expression of the same individuals (NaN = missing, ignored).

Hyperparameters come as the validated config section :class:`expredict.config.HeadConfig`; the
seed (the run's top-level ``seed``) is a separate argument. The training functions return objects
(:class:`GeneHeadFit`, :class:`MultiGeneHeadFit`) and write nothing: where checkpoints and tables go
is the caller's business.

Checkpoints (``torch.save``; read with ``weights_only=True``): ``format``/``format_version``, the
``HeadConfig`` as ``model_dump()`` and the ``seed``, ``d_in``/``n_tokens``, model ``state_dict``,
input mean/scale, the target normaliser state, training summary and ``metadata`` (incl.
``random_weights_embeddings``: whether the embeddings came from a randomly initialised stand-in
model, a label carried into every result). Written atomically (temporary sibling, then replace).
Checkpoints written before the config merge (seed inside the config, ``batch_size`` null) load too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl
import torch
from numpy.typing import NDArray
from pydantic import ValidationError
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from expredict.atomic import atomic_path
from expredict.config import HeadConfig
from expredict.errors import ModelLoadError
from expredict.head.model import HaplotypeHead
from expredict.head.train import (
    Task,
    deterministic,
    fit_tasks,
    input_stats,
    pearson_r,
    predict_task,
    standardize,
)
from expredict.splits import SPLITS
from expredict.targets import TargetNormalizer

FORMAT = "expredict.head"
MULTI_FORMAT = "expredict.head.multigene"
FORMAT_VERSION = 1


# -- validation helpers ---------------------------------------------------------------------------
def _check_inputs(embeddings: NDArray, index: NDArray, y: NDArray | None = None, where: str = "fit") -> tuple:
    e = np.asarray(embeddings)
    if e.ndim == 2:  # one pooled vector per haplotype: a single token
        e = e[:, None, :]
    if e.ndim != 3 or e.shape[0] == 0:
        msg = (
            f"HeadRegressor.{where}: embeddings must have shape (n_unique, n_tokens, d) or (n_unique, d); got {e.shape}"
        )
        raise ValueError(msg)
    if not np.isfinite(e).all():
        msg = f"HeadRegressor.{where}: embeddings contain NaN or inf"
        raise ValueError(msg)
    idx = np.asarray(index)
    if idx.ndim != 2 or idx.shape[1] != 2 or not np.issubdtype(idx.dtype, np.integer):
        msg = f"HeadRegressor.{where}: index must be int of shape (n_individuals, 2); got {idx.dtype} {idx.shape}"
        raise ValueError(msg)
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= e.shape[0]):
        msg = f"HeadRegressor.{where}: index values must be in [0, {e.shape[0]}); got [{idx.min()}, {idx.max()}]"
        raise ValueError(msg)
    if y is None:
        return e, idx
    yy = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(yy) != len(idx):
        msg = f"HeadRegressor.{where}: y has {len(yy)} values for {len(idx)} individuals in index"
        raise ValueError(msg)
    return e, idx, yy


def _atomic_torch_save(obj: dict, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def _load_checkpoint(path: str | os.PathLike[str], fmt: str) -> dict:
    p = Path(path)
    if not p.exists():
        msg = f"{p}: head checkpoint not found"
        raise ModelLoadError(msg)
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the path
        msg = f"{p}: not a readable head checkpoint ({exc.__class__.__name__}: {exc})"
        raise ModelLoadError(msg) from exc
    if not isinstance(ck, dict) or ck.get("format") != fmt:
        msg = f"{p}: not an {fmt} checkpoint (format {ck.get('format') if isinstance(ck, dict) else None!r})"
        raise ModelLoadError(msg)
    if ck.get("format_version") != FORMAT_VERSION:
        msg = f"{p}: checkpoint format_version {ck.get('format_version')}, this expredict reads {FORMAT_VERSION}"
        raise ModelLoadError(msg)
    return ck


def _checkpoint_config(ck: dict, path: str | os.PathLike[str]) -> tuple[HeadConfig, int]:
    """The checkpoint's ``HeadConfig`` and seed (older checkpoints kept the seed in the config)."""
    raw = dict(ck["config"])
    old_seed = raw.pop("seed", 0)
    seed = int(ck.get("seed", old_seed))
    if "batch_size" in raw and raw["batch_size"] is None:  # older checkpoints: None = one batch
        raw["batch_size"] = 0
    try:
        return HeadConfig.model_validate(raw), seed
    except ValidationError as exc:
        msg = f"{path}: checkpoint head config is not valid: {exc}"
        raise ModelLoadError(msg) from exc


# -- per-gene estimator ---------------------------------------------------------------------------
class _HeadParams(BaseEstimator):
    """Constructor parameters shared by the single- and multi-gene heads (sklearn: ``__init__`` only stores)."""

    def __init__(
        self,
        config: HeadConfig | None = None,
        *,
        seed: int = 0,
        device: str = "cpu",
        n_threads: int | None = 1,
        random_weights_embeddings: bool = False,
        metadata: Mapping | None = None,
    ) -> None:
        self.config = config
        self.seed = seed
        self.device = device
        self.n_threads = n_threads
        self.random_weights_embeddings = random_weights_embeddings
        self.metadata = metadata

    def _cfg(self) -> HeadConfig:
        if self.config is None:
            return HeadConfig()
        if not isinstance(self.config, HeadConfig):
            msg = (
                f"{type(self).__name__}: config must be an expredict.config.HeadConfig (or None for the defaults); "
                f"got {type(self.config).__name__}"
            )
            raise TypeError(msg)
        return self.config


class HeadRegressor(_HeadParams):
    """Transformer head for one gene, with sklearn's estimator contract.

    Parameters
    ----------
    config : expredict.config.HeadConfig, default=None
        Hyperparameters (``None`` = ``HeadConfig()`` defaults). ``config.device`` and
        ``config.multi_gene`` are for the run layer; the estimator uses ``device``.
    seed : int, default=0
        Seeds torch (initialisation, dropout) and the numpy generator (shuffling) for ``fit`` and
        ``predict``; the run passes its top-level ``seed``.
    device : str, default="cpu"
        Torch device for training and prediction (a resolved device, not ``"auto"``).
    n_threads : int, default=1
        ``torch.set_num_threads`` while training and predicting (restored afterwards); ``None``
        leaves torch's setting. One thread is fastest for these tiny heads on CPU; parallelise
        over genes instead.
    random_weights_embeddings : bool, default=False
        Label: the embeddings come from a randomly initialised stand-in model. Stored in the
        checkpoint metadata and carried into records; it changes nothing in training.
    metadata : mapping, default=None
        Extra JSON-like metadata stored in checkpoints (gene id, model id, layer, window ...).

    Attributes
    ----------
    model_ : HaplotypeHead
    config_ : HeadConfig
    seed_ : int
    normalizer_ : TargetNormalizer
        Per-gene target normaliser fitted on the training individuals of ``fit``.
    input_mean_, input_scale_ : ndarray
        Input standardisation from the training individuals' haplotypes.
    d_in_, n_tokens_, n_train_, n_val_, n_epochs_, best_epoch_ : int
    history_ : list of dict
        Per-epoch ``train_loss`` / ``val_loss`` / ``val_r``.
    """

    def _task(self, e: NDArray, index: NDArray, y: NDArray | None) -> Task:
        x = torch.as_tensor(standardize(e, self.input_mean_, self.input_scale_), device=self.device)
        yy = np.zeros(len(index), np.float32) if y is None else np.asarray(y, np.float32)
        return Task(x=x, index=index, y=yy)

    def fit(
        self,
        embeddings: NDArray,
        index: NDArray,
        y: NDArray,
        val: tuple[NDArray, NDArray] | None = None,
    ) -> HeadRegressor:
        """Train on the individuals of ``index``/``y``; early-stop on ``val=(index_val, y_val)``.

        ``index_val`` indexes the same ``embeddings``. Only the training individuals' targets fit
        the normaliser and only their haplotypes the input statistics; validation individuals are
        used for early stopping alone. Individuals with NaN targets are dropped.
        """
        cfg = self._cfg()
        e, idx, yy = _check_inputs(embeddings, index, y)
        keep = np.isfinite(yy)
        idx, yy = idx[keep], yy[keep]
        if len(yy) < 2:
            msg = f"HeadRegressor.fit: needs >= 2 training individuals with finite targets; got {len(yy)}"
            raise ValueError(msg)
        if e.shape[1] > cfg.max_tokens:
            msg = f"HeadRegressor.fit: {e.shape[1]} tokens exceed head.max_tokens={cfg.max_tokens}"
            raise ValueError(msg)
        self.d_in_, self.n_tokens_ = int(e.shape[2]), int(e.shape[1])
        self.normalizer_ = TargetNormalizer(inverse_normal=cfg.inverse_normal).fit(yy)
        self.input_mean_, self.input_scale_ = input_stats(e, idx, cfg.input_standardize, cfg.input_scale_floor)
        train = [self._task(e, idx, self.normalizer_.transform(yy))]
        val_tasks = []
        self.n_val_ = 0
        if val is not None:
            _, vidx, vy = _check_inputs(embeddings, val[0], val[1], where="fit(val=...)")
            ok = np.isfinite(vy)
            self.n_val_ = int(ok.sum())
            if ok.sum() >= 2:
                val_tasks = [self._task(e, vidx[ok], self.normalizer_.transform(vy[ok]))]
        seed = int(self.seed)
        with deterministic(seed, self.n_threads):
            self.model_ = HaplotypeHead(self.d_in_, cfg).to(self.device)
            res = fit_tasks(self.model_, train, val_tasks, cfg, seed=seed)
        self.n_train_ = len(yy)
        self.n_epochs_, self.best_epoch_, self.history_ = res.epochs, res.best_epoch, res.history
        self.config_, self.seed_ = cfg, seed
        return self

    def predict(self, embeddings: NDArray, index: NDArray, *, normalized: bool = False) -> NDArray[np.float64]:
        """Predict ``(n_individuals,)``, in target units (``normalized=True``: training z-units)."""
        check_is_fitted(self, "model_")
        e, idx = _check_inputs(embeddings, index, where="predict")
        if e.shape[2] != self.d_in_:
            msg = f"HeadRegressor.predict: embeddings have d={e.shape[2]}; the head was fitted on d={self.d_in_}"
            raise ValueError(msg)
        with deterministic(self.seed_, self.n_threads):
            z = predict_task(self.model_, self._task(e, idx, None)).astype(np.float64)
        return z if normalized else self.normalizer_.inverse_transform(z)

    def score(self, embeddings: NDArray, index: NDArray, y: NDArray) -> float:
        """Cross-individual Pearson r between predictions and ``y`` (the project's metric, not R^2)."""
        return pearson_r(self.predict(embeddings, index), y)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint (atomic); returns its path."""
        check_is_fitted(self, "model_")
        meta = dict(self.metadata or {})
        meta["random_weights_embeddings"] = bool(self.random_weights_embeddings)
        ck = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": self.config_.model_dump(),
            "seed": self.seed_,
            "d_in": self.d_in_,
            "n_tokens": self.n_tokens_,
            "device": str(self.device),
            "state_dict": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
            "input_mean": torch.from_numpy(np.ascontiguousarray(self.input_mean_)),
            "input_scale": torch.from_numpy(np.ascontiguousarray(self.input_scale_)),
            "normalizer": self.normalizer_.get_state(),
            "training": {
                "n_train": self.n_train_,
                "n_val": self.n_val_,
                "epochs": self.n_epochs_,
                "best_epoch": self.best_epoch_,
                "history": self.history_,
            },
            "metadata": meta,
        }
        return _atomic_torch_save(ck, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> HeadRegressor:
        """Load a checkpoint written by :meth:`save`; predictions equal the saved model's."""
        ck = _load_checkpoint(path, FORMAT)
        cfg, seed = _checkpoint_config(ck, path)
        meta = dict(ck["metadata"])
        obj = cls(
            cfg,
            seed=seed,
            device=device,
            random_weights_embeddings=bool(meta.pop("random_weights_embeddings", False)),
            metadata=meta,
        )
        obj.config_, obj.seed_ = cfg, seed
        obj.d_in_, obj.n_tokens_ = int(ck["d_in"]), int(ck["n_tokens"])
        obj.model_ = HaplotypeHead(obj.d_in_, cfg).to(device)
        try:
            obj.model_.load_state_dict(ck["state_dict"])
        except RuntimeError as exc:
            msg = f"{path}: checkpoint weights do not match the head architecture: {exc}"
            raise ModelLoadError(msg) from exc
        obj.model_.eval()
        obj.input_mean_ = ck["input_mean"].numpy()
        obj.input_scale_ = ck["input_scale"].numpy()
        obj.normalizer_ = TargetNormalizer.from_state(ck["normalizer"])
        t = ck["training"]
        obj.n_train_, obj.n_val_, obj.n_epochs_ = t["n_train"], t["n_val"], t["epochs"]
        obj.best_epoch_, obj.history_ = t["best_epoch"], t["history"]
        return obj


# -- per-gene training ----------------------------------------------------------------------------
def split_rows(splits: Mapping[str, NDArray] | Sequence[str] | NDArray, n: int) -> dict[str, NDArray[np.int64]]:
    """Row indices per split from ``{"train": idx, ...}`` or a label per individual (length ``n``)."""
    if isinstance(splits, Mapping):
        out = {k: np.asarray(splits.get(k, []), dtype=np.int64).reshape(-1) for k in SPLITS}
    else:
        labels = np.asarray(splits, dtype=object)
        if len(labels) != n:
            msg = f"splits has {len(labels)} labels for {n} individuals"
            raise ValueError(msg)
        out = {k: np.flatnonzero(labels == k) for k in SPLITS}
    for k, v in out.items():
        if v.size and (v.min() < 0 or v.max() >= n):
            msg = f"splits[{k!r}] has indices outside [0, {n})"
            raise ValueError(msg)
    seen = np.concatenate(list(out.values()))
    if len(np.unique(seen)) != len(seen):
        msg = "splits: an individual is in more than one split"
        raise ValueError(msg)
    return out


class GeneHeadFit(NamedTuple):
    """What :func:`train_gene` returns; nothing is written to disk.

    ``estimator``: the fitted head (``estimator.save(path)`` writes its checkpoint).
    ``predictions``: one row per individual, columns ``sample`` (str), ``split`` (str:
    ``train``/``val``/``test``/``other``, ``""`` when in no split), ``y`` (the target as given, NaN =
    missing) and ``y_pred`` (target units). ``record``: the summary, ``gene_id, n_train, n_val,
    n_test, epochs, best_epoch, train_r, val_r, test_r, seconds, random_weights_embeddings``.
    """

    estimator: HeadRegressor
    predictions: pl.DataFrame
    record: dict


def train_gene(
    gene_id: str,
    embeddings: NDArray,
    index: NDArray,
    y: NDArray,
    splits: Mapping[str, NDArray] | Sequence[str] | NDArray,
    config: HeadConfig | None,
    *,
    seed: int = 0,
    samples: Sequence[str] | None = None,
    random_weights_embeddings: bool = False,
    metadata: Mapping | None = None,
    device: str = "cpu",
) -> GeneHeadFit:
    """Train one gene's head on train individuals, early-stop on val, evaluate on test.

    Parameters
    ----------
    gene_id : str
    embeddings : float32 (n_unique, n_tokens, d)
    index : int (n_individuals, 2)
    y : float (n_individuals,)
        Expression (already transformed matrix-wide, e.g. log1p); normalised per gene here on the
        training individuals only. NaN = missing.
    splits : mapping split -> int row indices, or one label (train/val/test/other) per individual
        Individuals in no split are predicted but used nowhere.
    config : expredict.config.HeadConfig or None (defaults)
    seed : int, default=0
        The run's seed (see :class:`HeadRegressor`).
    samples : sequence of str, default=None
        Sample IDs of the rows (default: row numbers as strings).
    metadata : mapping, default=None
        Stored in the estimator's checkpoint metadata, after ``gene_id``.

    Returns
    -------
    GeneHeadFit
        ``(estimator, predictions, record)``; nothing is written.
    """
    t0 = time.perf_counter()
    e, idx, yy = _check_inputs(embeddings, index, y, where="train_gene")
    n = len(idx)
    names = [str(s) for s in samples] if samples is not None else [str(i) for i in range(n)]
    if len(names) != n:
        msg = f"train_gene: {len(names)} samples for {n} individuals"
        raise ValueError(msg)
    rows = split_rows(splits, n)
    finite = np.isfinite(yy)
    tr, va, te = (rows[k][finite[rows[k]]] for k in SPLITS)
    meta = {"gene_id": str(gene_id), **dict(metadata or {})}
    est = HeadRegressor(
        config, seed=seed, device=device, random_weights_embeddings=random_weights_embeddings, metadata=meta
    )
    est.fit(e, idx[tr], yy[tr], val=(idx[va], yy[va]) if len(va) else None)
    pred = est.predict(e, idx)
    labels = np.full(n, "", dtype=object)
    for k in SPLITS:
        labels[rows[k]] = k
    predictions = pl.DataFrame(
        {"sample": names, "split": labels.tolist(), "y": yy, "y_pred": pred},
        schema={"sample": pl.String, "split": pl.String, "y": pl.Float64, "y_pred": pl.Float64},
    )
    record = {
        "gene_id": str(gene_id),
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(te),
        "epochs": est.n_epochs_,
        "best_epoch": est.best_epoch_,
        "train_r": pearson_r(pred[tr], yy[tr]),
        "val_r": pearson_r(pred[va], yy[va]),
        "test_r": pearson_r(pred[te], yy[te]),
        "seconds": time.perf_counter() - t0,
        "random_weights_embeddings": bool(random_weights_embeddings),
    }
    return GeneHeadFit(est, predictions, record)


# -- multi-gene mode ------------------------------------------------------------------------------
class GeneData(NamedTuple):
    """One gene's inputs for the multi-gene mode (same individual order for every gene)."""

    embeddings: NDArray  # float32 (n_unique, n_tokens, d); n_tokens may differ between genes
    index: NDArray  # int (n_individuals, 2)
    y: NDArray  # float (n_individuals,), NaN = missing


class MultiGeneHeadRegressor(_HeadParams):
    """One head shared by many genes, with a learned gene embedding.

    Trained on the training genes' training individuals (targets z-scored per gene on those
    individuals), early-stopped on the same genes' validation individuals. A gene not seen in
    ``fit`` uses the "unknown gene" embedding (trained through ``config.gene_dropout``) and input
    statistics computed from the haplotypes of ``reference_index`` (inputs only, never targets);
    its predictions are in z-units (Pearson r is what is evaluated).

    Parameters are as for :class:`HeadRegressor`.
    """

    def _stats(self, gene_id: str, e: NDArray, ref_index: NDArray | None) -> tuple[NDArray, NDArray]:
        if gene_id in self.input_stats_:
            return self.input_stats_[gene_id]
        if ref_index is None:
            msg = f"MultiGeneHeadRegressor: gene {gene_id!r} was not in fit; pass reference_index (training rows)"
            raise ValueError(msg)
        return input_stats(e, ref_index, self.config_.input_standardize, self.config_.input_scale_floor)

    def fit(
        self,
        genes: Mapping[str, GeneData],
        train_rows: NDArray,
        val_rows: NDArray | None = None,
    ) -> MultiGeneHeadRegressor:
        """Train on ``genes`` (the training genes) using individuals ``train_rows``; early-stop on ``val_rows``."""
        cfg = self._cfg()
        if not genes:
            msg = "MultiGeneHeadRegressor.fit: no genes given"
            raise ValueError(msg)
        tr = np.asarray(train_rows, dtype=np.int64)
        va = np.asarray(val_rows if val_rows is not None else [], dtype=np.int64)
        self.gene_ids_ = [str(g) for g in genes]
        self.gene_rows_ = {g: i + 1 for i, g in enumerate(self.gene_ids_)}
        self.normalizers_: dict[str, TargetNormalizer] = {}
        self.input_stats_: dict[str, tuple[NDArray, NDArray]] = {}
        self.config_, self.seed_ = cfg, int(self.seed)
        d_in = None
        train, val = [], []
        for g, data in genes.items():
            e, idx, yy = _check_inputs(data.embeddings, data.index, data.y, where=f"fit[{g}]")
            if d_in is None:
                d_in = e.shape[2]
            elif e.shape[2] != d_in:
                msg = f"MultiGeneHeadRegressor.fit: gene {g} has d={e.shape[2]}, others d={d_in}"
                raise ValueError(msg)
            t_ok = tr[np.isfinite(yy[tr])]
            v_ok = va[np.isfinite(yy[va])]
            if len(t_ok) < 2:
                continue
            norm = TargetNormalizer(inverse_normal=cfg.inverse_normal).fit(yy[t_ok])
            self.normalizers_[str(g)] = norm
            self.input_stats_[str(g)] = input_stats(e, idx[t_ok], cfg.input_standardize, cfg.input_scale_floor)
            x = torch.as_tensor(standardize(e, *self.input_stats_[str(g)]), device=self.device)
            gid = self.gene_rows_[str(g)]
            train.append(Task(x, idx[t_ok], norm.transform(yy[t_ok]).astype(np.float32), gid))
            if len(v_ok) >= 2:
                val.append(Task(x, idx[v_ok], norm.transform(yy[v_ok]).astype(np.float32), gid))
        self.d_in_ = int(d_in)
        with deterministic(self.seed_, self.n_threads):
            self.model_ = HaplotypeHead(self.d_in_, cfg, n_genes=len(self.gene_ids_)).to(self.device)
            res = fit_tasks(self.model_, train, val, cfg, seed=self.seed_, gene_dropout=cfg.gene_dropout)
        self.n_epochs_, self.best_epoch_, self.history_ = res.epochs, res.best_epoch, res.history
        return self

    def predict(
        self, gene_id: str, embeddings: NDArray, index: NDArray, *, reference_index: NDArray | None = None
    ) -> NDArray[np.float64]:
        """Predict one gene's individuals; target units for fitted genes, z-units for new genes."""
        check_is_fitted(self, "model_")
        e, idx = _check_inputs(embeddings, index, where="predict")
        g = str(gene_id)
        mean, scale = self._stats(g, e, reference_index)
        x = torch.as_tensor(standardize(e, mean, scale), device=self.device)
        task = Task(x, idx, np.zeros(len(idx), np.float32), self.gene_rows_.get(g, 0))
        with deterministic(self.seed_, self.n_threads):
            z = predict_task(self.model_, task)
        z = z.astype(np.float64)
        return self.normalizers_[g].inverse_transform(z) if g in self.normalizers_ else z

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a multi-gene checkpoint (atomic)."""
        check_is_fitted(self, "model_")
        meta = dict(self.metadata or {})
        meta["random_weights_embeddings"] = bool(self.random_weights_embeddings)
        ck = {
            "format": MULTI_FORMAT,
            "format_version": FORMAT_VERSION,
            "config": self.config_.model_dump(),
            "seed": self.seed_,
            "d_in": self.d_in_,
            "gene_ids": self.gene_ids_,
            "state_dict": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
            "input_stats": {
                g: [torch.from_numpy(np.ascontiguousarray(a)) for a in s] for g, s in self.input_stats_.items()
            },
            "normalizers": {g: n.get_state() for g, n in self.normalizers_.items()},
            "training": {"epochs": self.n_epochs_, "best_epoch": self.best_epoch_, "history": self.history_},
            "metadata": meta,
        }
        return _atomic_torch_save(ck, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> MultiGeneHeadRegressor:
        """Load a checkpoint written by :meth:`save`."""
        ck = _load_checkpoint(path, MULTI_FORMAT)
        cfg, seed = _checkpoint_config(ck, path)
        meta = dict(ck["metadata"])
        rw = bool(meta.pop("random_weights_embeddings", False))
        obj = cls(cfg, seed=seed, device=device, random_weights_embeddings=rw, metadata=meta)
        obj.config_, obj.seed_ = cfg, seed
        obj.d_in_, obj.gene_ids_ = int(ck["d_in"]), list(ck["gene_ids"])
        obj.gene_rows_ = {g: i + 1 for i, g in enumerate(obj.gene_ids_)}
        obj.model_ = HaplotypeHead(obj.d_in_, cfg, n_genes=len(obj.gene_ids_)).to(device)
        try:
            obj.model_.load_state_dict(ck["state_dict"])
        except RuntimeError as exc:
            msg = f"{path}: checkpoint weights do not match the head architecture: {exc}"
            raise ModelLoadError(msg) from exc
        obj.model_.eval()
        obj.input_stats_ = {g: tuple(t.numpy() for t in s) for g, s in ck["input_stats"].items()}
        obj.normalizers_ = {g: TargetNormalizer.from_state(s) for g, s in ck["normalizers"].items()}
        t = ck["training"]
        obj.n_epochs_, obj.best_epoch_, obj.history_ = t["epochs"], t["best_epoch"], t["history"]
        return obj


class MultiGeneHeadFit(NamedTuple):
    """What :func:`train_multi_gene` returns; nothing is written to disk.

    ``estimator``: the shared head (``estimator.save(path)`` writes its checkpoint). ``records``:
    one per evaluated gene, ``gene_id, gene_class, n_train, n_val, n_test, epochs, best_epoch,
    val_r, test_r, seconds`` (``seconds`` = shared training time), ``random_weights_embeddings``.
    """

    estimator: MultiGeneHeadRegressor
    records: list[dict]


def train_multi_gene(
    genes: Mapping[str, GeneData],
    splits: Mapping[str, NDArray] | Sequence[str] | NDArray,
    gene_classes: Mapping[str, str],
    config: HeadConfig | None,
    *,
    seed: int = 0,
    random_weights_embeddings: bool = False,
    metadata: Mapping | None = None,
    device: str = "cpu",
) -> MultiGeneHeadFit:
    """Multi-gene mode: train on ``seen`` genes, evaluate every gene on the test individuals.

    ``gene_classes`` maps gene id -> ``seen``/``unseen``/``buffer`` (``genes.tsv``); ``buffer``
    genes are skipped. The model is trained on the seen genes' train individuals and early-stopped
    on their val individuals; unseen genes get the unknown-gene embedding and input statistics from
    their training individuals' haplotypes (no targets). ``seed`` is the run's seed. Returns
    ``(estimator, records)`` (:class:`MultiGeneHeadFit`); nothing is written.
    """
    t0 = time.perf_counter()
    n = len(next(iter(genes.values())).index)
    rows = split_rows(splits, n)
    seen = {g: d for g, d in genes.items() if gene_classes.get(g) == "seen"}
    est = MultiGeneHeadRegressor(
        config, seed=seed, device=device, random_weights_embeddings=random_weights_embeddings, metadata=metadata
    ).fit(seen, rows["train"], rows["val"])
    fit_seconds = time.perf_counter() - t0
    records = []
    for g, d in genes.items():
        cls = gene_classes.get(g)
        if cls not in ("seen", "unseen"):
            continue
        idx = np.asarray(d.index, dtype=np.int64)
        yy = np.asarray(d.y, dtype=np.float64)
        pred = est.predict(g, d.embeddings, idx, reference_index=idx[rows["train"]])
        tr, va, te = (rows[k][np.isfinite(yy[rows[k]])] for k in SPLITS)
        records.append(
            {
                "gene_id": str(g),
                "gene_class": cls,
                "n_train": len(tr) if cls == "seen" else 0,
                "n_val": len(va),
                "n_test": len(te),
                "epochs": est.n_epochs_,
                "best_epoch": est.best_epoch_,
                "val_r": pearson_r(pred[va], yy[va]),
                "test_r": pearson_r(pred[te], yy[te]),
                "seconds": fit_seconds,
                "random_weights_embeddings": bool(random_weights_embeddings),
            }
        )
    return MultiGeneHeadFit(est, records)
