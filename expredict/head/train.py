"""Training loop of the expression head: MSE + pairwise loss, AdamW, early stopping, seeds.

The loop is shared by the per-gene estimator and the multi-gene mode: it trains on a list of
:class:`Task` (one per gene; each holds that gene's standardised distinct-haplotype embeddings, the
training individuals' haplotype index and normalised targets) and early-stops on validation tasks.
Pairs in the pairwise term are always two individuals of the same gene.

Determinism: :func:`deterministic` seeds torch (inside :func:`torch.random.fork_rng`, so the
caller's global RNG state is restored), turns on ``torch.use_deterministic_algorithms`` (warn only)
and restores the previous setting afterwards. Shuffling uses a ``numpy`` generator from the seed.
Same seed, data and thread count give identical weights on CPU. The seed is the run's top-level
seed, passed separately from the :class:`~expredict.config.HeadConfig` hyperparameters.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray

from expredict.config import HeadConfig
from expredict.head.model import HaplotypeHead


# -- losses ---------------------------------------------------------------------------------------
def pairwise_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over pairs i < j of ``((y_i - y_j) - (yhat_i - yhat_j))^2``.

    With ``d = yhat - y`` the sum over pairs is ``n * sum(d^2) - sum(d)^2``, so the mean over the
    ``n (n - 1) / 2`` pairs equals ``2 * var(d)`` with the unbiased variance: O(n), no pair matrix.
    Needs ``n >= 2``.
    """
    d = (pred - target).reshape(-1)
    n = d.numel()
    if n < 2:
        msg = f"pairwise_loss: needs at least 2 individuals; got {n}"
        raise ValueError(msg)
    return 2.0 * ((d - d.mean()) ** 2).sum() / (n - 1)


def head_loss(pred: torch.Tensor, target: torch.Tensor, mse_weight: float, pairwise_weight: float) -> torch.Tensor:
    """``mse_weight * MSE + pairwise_weight * pairwise_loss``.

    The pairwise term only sees differences between individuals, so it is blind to the gene's
    overall level and rewards what the evaluation measures (the ranking and spread of individuals,
    i.e. the Pearson r across them); the MSE term keeps the predictions on the target scale.
    """
    loss = pred.new_zeros(())
    if mse_weight:
        loss = loss + mse_weight * torch.mean((pred - target) ** 2)
    if pairwise_weight:
        loss = loss + pairwise_weight * pairwise_loss(pred, target)
    return loss


def pearson_r(a: NDArray, b: NDArray) -> float:
    """Pearson r of two 1-D arrays, ignoring non-finite pairs; NaN when undefined."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return float("nan")
    a = a[ok] - a[ok].mean()
    b = b[ok] - b[ok].mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


# -- determinism ----------------------------------------------------------------------------------
@contextmanager
def deterministic(seed: int, num_threads: int | None = None) -> Iterator[None]:
    """Seed torch and enable deterministic algorithms for the block; restore both afterwards.

    ``num_threads`` (e.g. 1: the head is tiny and intra-op threads only add contention on a busy
    CPU) sets ``torch.set_num_threads`` for the block; ``None`` leaves it alone.
    """
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        torch.use_deterministic_algorithms(True, warn_only=True)
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
            if num_threads is not None:
                torch.set_num_threads(prev_threads)


# -- input standardisation ----------------------------------------------------------------------
def input_stats(
    embeddings: NDArray, index: NDArray, mode: str = "token", floor: float = 0.05
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Mean and scale of the inputs over the haplotypes of the given (training) individuals.

    Each distinct haplotype is weighted by how often ``index`` uses it (the cohort's haplotype
    frequencies). ``mode="token"`` gives (n_tokens, d) statistics, ``"feature"`` (1, d) and
    ``"none"`` zeros/ones. In token mode the sd is floored at ``floor`` times the feature's sd over
    all tokens.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    n_tokens, d = e.shape[1], e.shape[2]
    if mode == "none":
        return np.zeros((1, d), np.float32), np.ones((1, d), np.float32)
    w = np.bincount(np.asarray(index).ravel(), minlength=e.shape[0]).astype(np.float64)
    w /= w.sum()
    mean_t = np.einsum("u,utd->td", w, e)
    var_t = np.einsum("u,utd->td", w, (e - mean_t) ** 2)
    mean_f = mean_t.mean(0, keepdims=True)
    var_f = (var_t + (mean_t - mean_f) ** 2).mean(0, keepdims=True)
    sd_f = np.sqrt(var_f)
    sd_f = np.where(sd_f > 1e-12, sd_f, 1.0)
    if mode == "feature":
        return mean_f.astype(np.float32), sd_f.astype(np.float32)
    sd_t = np.sqrt(var_t + (floor * sd_f) ** 2)
    return mean_t.astype(np.float32), np.broadcast_to(sd_t, (n_tokens, d)).astype(np.float32)


def standardize(embeddings: NDArray, mean: NDArray, scale: NDArray) -> NDArray[np.float32]:
    """``(embeddings - mean) / scale`` as float32, checking the token count in token mode."""
    e = np.asarray(embeddings, dtype=np.float32)
    if mean.shape[0] not in (1, e.shape[1]) or mean.shape[1] != e.shape[2]:
        msg = (
            f"embeddings of shape {e.shape} do not match the head's input statistics {mean.shape} "
            "(n_tokens and d must equal those used in fit)"
        )
        raise ValueError(msg)
    return (e - mean) / scale


# -- loop -----------------------------------------------------------------------------------------
@dataclass
class Task:
    """One gene's training (or validation) data, already standardised and normalised."""

    x: torch.Tensor  # (n_unique, n_tokens, d_in) float32
    index: NDArray[np.int64]  # (n, 2) rows of x
    y: NDArray[np.float32]  # (n,) normalised targets
    gene: int | None = None  # gene embedding row (multi-gene mode)
    mask: torch.Tensor | None = None  # (n_unique, n_tokens) bool


@dataclass
class FitResult:
    """Outcome of :func:`fit_tasks`."""

    epochs: int
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)


def _forward(model: HaplotypeHead, task: Task, rows: NDArray | None, gene: int | None) -> torch.Tensor:
    """Predict the individuals ``rows`` of ``task``, encoding only the haplotypes they use."""
    idx = task.index if rows is None else task.index[rows]
    uniq, inv = np.unique(idx.ravel(), return_inverse=True)
    u = torch.as_tensor(uniq, device=task.x.device)
    mask = None if task.mask is None else task.mask[u]
    inv_t = torch.as_tensor(inv.reshape(-1, 2), device=task.x.device)
    return model(task.x[u], inv_t, mask, gene)


def predict_task(model: HaplotypeHead, task: Task, batch_size: int = 4096) -> NDArray[np.float32]:
    """Eval-mode predictions for every individual of ``task`` (chunks of ``batch_size``)."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(task.index), batch_size):
            out.append(_forward(model, task, np.arange(s, min(s + batch_size, len(task.index))), task.gene))
    model.train(was_training)
    if not out:
        return np.zeros(0, np.float32)
    return torch.cat(out).cpu().numpy()


def _chunks(n: int, batch_size: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    if not batch_size or batch_size >= n:  # 0: all individuals in one batch (no shuffling draw)
        return [np.arange(n)]
    perm = rng.permutation(n)
    parts = [perm[s : s + batch_size] for s in range(0, n, batch_size)]
    if len(parts) > 1 and len(parts[-1]) < 2:
        parts[-2] = np.concatenate([parts[-2], parts.pop()])
    return parts


def _score(model: HaplotypeHead, tasks: Sequence[Task], cfg: HeadConfig) -> tuple[float, float, float]:
    """(early-stopping score (lower is better), mean loss, mean r) over validation tasks."""
    losses, rs = [], []
    for t in tasks:
        if len(t.y) < 2:
            continue
        p = predict_task(model, t)
        losses.append(float(head_loss(torch.as_tensor(p), torch.as_tensor(t.y), cfg.mse_weight, cfg.pairwise_weight)))
        rs.append(pearson_r(p, t.y))
    loss = float(np.mean(losses)) if losses else float("nan")
    r = float(np.nanmean(rs)) if rs and not np.all(np.isnan(rs)) else float("nan")
    score = loss if cfg.early_stopping_metric == "loss" else (-r if np.isfinite(r) else 0.0)
    return score, loss, r


def fit_tasks(
    model: HaplotypeHead,
    train: Sequence[Task],
    val: Sequence[Task] | None,
    cfg: HeadConfig,
    *,
    seed: int,
    gene_dropout: float = 0.0,
    log: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train ``model`` in place with AdamW; keep the weights of the best validation epoch.

    Each epoch visits every training task once, in minibatches of ``cfg.batch_size`` individuals
    (``0``: all of a gene's training individuals at once), ``cfg.genes_per_step`` (gene,
    minibatch) pieces per optimiser step; the step loss is the mean of the pieces' losses. Without
    validation tasks the model trains for ``cfg.max_epochs`` and the last epoch is kept. ``seed``
    drives the shuffling and gene dropout; call inside :func:`deterministic` (same seed) for
    reproducible results.
    """
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    val = [t for t in (val or []) if len(t.y) >= 2]
    ys = [torch.as_tensor(t.y, device=t.x.device) for t in train]
    best_score, best_epoch, best_state = math.inf, 0, None
    history: list[dict] = []
    epoch = 0
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        pieces = [(i, rows) for i, t in enumerate(train) for rows in _chunks(len(t.y), cfg.batch_size, rng)]
        order = rng.permutation(len(pieces))
        total = 0.0
        for s in range(0, len(order), cfg.genes_per_step):
            opt.zero_grad(set_to_none=True)
            group = [pieces[k] for k in order[s : s + cfg.genes_per_step]]
            loss = 0.0
            for i, rows in group:
                t = train[i]
                gene = t.gene
                if gene is not None and gene_dropout > 0 and rng.random() < gene_dropout:
                    gene = 0
                pred = _forward(model, t, rows, gene)
                loss = loss + head_loss(
                    pred, ys[i][torch.as_tensor(rows, device=ys[i].device)], cfg.mse_weight, cfg.pairwise_weight
                )
            loss = loss / len(group)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(group)
        rec = {"epoch": epoch, "train_loss": total / max(len(pieces), 1)}
        if val:
            score, vloss, vr = _score(model, val, cfg)
            rec.update(val_loss=vloss, val_r=vr)
            if score < best_score - cfg.min_delta or best_state is None:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
        history.append(rec)
        if log is not None:
            log(rec)
        if val and epoch - best_epoch >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch, best_score = epoch, history[-1]["train_loss"] if history else math.nan
    model.eval()
    return FitResult(epochs=epoch, best_epoch=best_epoch, best_score=float(best_score), history=history)
