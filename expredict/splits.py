"""Splits by individual and gene classes, fixed by seed and saved to disk.

Splits are by individual, made once from a fixed seed: every method (head, elastic net, Enformer)
and any outside tool reads the same split files, so the same test individuals are held out for
every gene. Whatever is fitted (target normalisers, elastic net, head) sees only the ``train``
individuals; ``val`` individuals are for early stopping only.

Gene classes name the question a score answers: (a) seen genes, new individuals (genes trained on,
scored on held-out individuals; the main number); (b) seen genes, new population (train on some
populations, test on another: a population split); (c) unseen genes (genes never trained on).
The files:

``OUT/splits/individuals.tsv``
    columns ``sample`` (str) and ``split`` (``train`` / ``val`` / ``test``), one row per individual,
    in the order the samples were given.
``OUT/splits/genes.tsv``
    columns ``gene_id``, ``contig``, ``tss`` (0-based), ``block`` (int, the contiguous position
    block or ``-1`` for whole held-out contigs) and ``gene_class``: ``seen`` (genes trained on; the
    class (a) question), ``unseen`` (held-out genes, never trained on; class (c)) or ``buffer``
    (seen-side genes within ``buffer_bp`` of an unseen gene's TSS, left out of both so train and
    test genes share fewer cis variants).

Both files are written atomically (temporary sibling, then :func:`os.replace`). Everything is a
pure function of its inputs and ``seed``: the same call gives the same split on any machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from expredict.atomic import atomic_path
from expredict.errors import ConfigError, InputFileError, SampleMismatchError

SPLITS = ("train", "val", "test")
GENE_CLASSES = ("seen", "unseen", "buffer")
INDIVIDUALS_FILE = "individuals.tsv"
GENES_FILE = "genes.tsv"


class Splits(NamedTuple):
    """Split tables read back from ``OUT/splits`` (``genes`` is ``None`` when no gene file exists)."""

    individuals: pl.DataFrame
    genes: pl.DataFrame | None


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        msg = f"splits.fractions: must be (train, val, test); got {tuple(fractions)}"
        raise ConfigError(msg)
    f = tuple(float(x) for x in fractions)
    if any(x < 0 for x in f) or not np.isclose(sum(f), 1.0) or f[0] == 0:
        msg = f"splits.fractions: must be non-negative, sum to 1 and have train > 0; got {f}"
        raise ConfigError(msg)
    return f  # type: ignore[return-value]


def _check_samples(samples: Sequence[str]) -> list[str]:
    samples = [str(s) for s in samples]
    if not samples:
        msg = "make_individual_split: no samples given"
        raise SampleMismatchError(msg)
    seen: set[str] = set()
    dups = [s for s in samples if s in seen or seen.add(s)]  # type: ignore[func-returns-value]
    if dups:
        msg = f"make_individual_split: duplicate sample IDs {dups[:5]}; each individual must appear once"
        raise SampleMismatchError(msg)
    return samples


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Train/val/test counts summing to ``n``; a non-zero fraction gets at least one when n allows."""
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if fractions[1] > 0 and n_val == 0 and n >= 3:
        n_val = 1
    if fractions[2] > 0 and n_test == 0 and n >= 2:
        n_test = 1
    n_train = n - n_val - n_test
    if n_train < 1:
        msg = f"make_individual_split: {n} individuals are too few for fractions {fractions}"
        raise ConfigError(msg)
    return n_train, n_val, n_test


def _random_labels(n: int, fractions: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    n_train, n_val, _ = _counts(n, fractions)
    order = rng.permutation(n)
    labels = np.empty(n, dtype=object)
    labels[order[:n_train]] = "train"
    labels[order[n_train : n_train + n_val]] = "val"
    labels[order[n_train + n_val :]] = "test"
    return labels


def make_individual_split(
    samples: Sequence[str],
    *,
    seed: int,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    populations: Sequence[str] | Mapping[str, str] | None = None,
    test_populations: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Split individuals into train / val / test, fixed by ``seed``.

    Parameters
    ----------
    samples : sequence of str
        Individual IDs (unique). The output keeps this order.
    seed : int
        Seed of the split; the same seed and samples always give the same split.
    fractions : (float, float, float), default=(0.7, 0.1, 0.2)
        Train, validation and test fractions of a random split (rounded to whole individuals; a
        non-zero fraction gets at least one individual). In a population split only the ratio of
        the first two is used, to divide the non-test populations into train and val.
    populations : sequence of str or mapping sample -> str, default=None
        Population label per sample (aligned with ``samples`` or keyed by sample). When given, the
        split is a population split: every individual of ``test_populations`` is ``test`` and the
        others are randomly divided into ``train``/``val`` (the new-population question, class (b)).
    test_populations : sequence of str, default=None
        Populations held out for testing. ``None`` with ``populations`` given picks whole
        populations in a seeded random order until at least ``fractions[2]`` of the individuals are
        held out (always leaving one population for training).

    Returns
    -------
    polars.DataFrame
        Columns ``sample`` (str) and ``split`` (``train``/``val``/``test``).
    """
    samples = _check_samples(samples)
    f = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    n = len(samples)
    if populations is None:
        if test_populations is not None:
            msg = "make_individual_split: test_populations needs population labels (populations=...)"
            raise ConfigError(msg)
        labels = _random_labels(n, f, rng)
    else:
        if isinstance(populations, Mapping):
            missing = [s for s in samples if s not in populations]
            if missing:
                msg = f"make_individual_split: no population label for {len(missing)} samples, e.g. {missing[:5]}"
                raise SampleMismatchError(msg)
            pops = np.array([str(populations[s]) for s in samples], dtype=object)
        else:
            if len(populations) != n:
                msg = f"make_individual_split: populations has {len(populations)} labels for {n} samples"
                raise SampleMismatchError(msg)
            pops = np.array([str(p) for p in populations], dtype=object)
        names = sorted(set(pops.tolist()))
        if test_populations is None:
            if len(names) < 2:
                msg = f"make_individual_split: a population split needs >= 2 populations; got {names}"
                raise ConfigError(msg)
            chosen: list[str] = []
            for i in rng.permutation(len(names)):
                if len(chosen) == len(names) - 1 or np.isin(pops, chosen).sum() >= f[2] * n:
                    break
                chosen.append(names[i])
            test_set = set(chosen)
        else:
            test_set = {str(p) for p in test_populations}
            unknown = sorted(test_set - set(names))
            if unknown:
                msg = f"make_individual_split: test_populations {unknown} absent from the labels {names}"
                raise ConfigError(msg)
        is_test = np.array([p in test_set for p in pops])
        if is_test.all() or not is_test.any():
            msg = f"make_individual_split: test populations {sorted(test_set)} leave no train or no test individual"
            raise ConfigError(msg)
        labels = np.empty(n, dtype=object)
        labels[is_test] = "test"
        rest = np.flatnonzero(~is_test)
        share = f[1] / (f[0] + f[1])
        labels[rest] = _random_labels(len(rest), (1 - share, share, 0.0), rng)
    return pl.DataFrame({"sample": samples, "split": labels.tolist()}, schema={"sample": pl.String, "split": pl.String})


def make_gene_split(
    genes_table: pl.DataFrame,
    *,
    seed: int,
    heldout_contigs: Sequence[str] | None = None,
    n_blocks: int = 10,
    heldout_fraction: float = 0.2,
    buffer_bp: int = 0,
) -> pl.DataFrame:
    """Assign gene classes for the unseen-gene question (class (c): genes never trained on).

    Parameters
    ----------
    genes_table : polars.DataFrame
        Needs ``gene_id``, ``contig`` and ``tss`` (0-based), as from
        :func:`expredict.io.annotation.read_genes`.
    seed : int
        Seed for choosing held-out contigs or blocks.
    heldout_contigs : sequence of str, default=None
        Contigs whose genes are all ``unseen``. ``None``: with several contigs, whole contigs are
        picked in a seeded random order until ``heldout_fraction`` of the genes are held out; with
        one contig, genes are sorted by TSS and cut into ``n_blocks`` contiguous blocks of (nearly)
        equal gene count, and ``round(heldout_fraction * n_blocks)`` blocks (at least one) are held
        out, so train and test genes share few cis variants.
    n_blocks : int, default=10
        Number of contiguous position blocks for the one-contig case.
    heldout_fraction : float, default=0.2
        Target fraction of held-out genes.
    buffer_bp : int, default=0
        Seen genes whose TSS lies within this many bp of an unseen gene's TSS (same contig) become
        ``buffer`` and should be used neither for training nor for evaluation.

    Returns
    -------
    polars.DataFrame
        ``gene_id``, ``contig``, ``tss``, ``block`` (int64; ``-1`` when whole contigs are held out)
        and ``gene_class`` in ``seen``/``unseen``/``buffer``, sorted by contig and TSS.
    """
    missing = {"gene_id", "contig", "tss"} - set(genes_table.columns)
    if missing:
        msg = f"make_gene_split: genes_table lacks columns {sorted(missing)}; needs gene_id, contig, tss"
        raise ConfigError(msg)
    if not 0 < heldout_fraction < 1:
        msg = f"splits.heldout_fraction: must be in (0, 1); got {heldout_fraction}"
        raise ConfigError(msg)
    if n_blocks < 2:
        msg = f"splits.n_blocks: must be >= 2; got {n_blocks}"
        raise ConfigError(msg)
    g = genes_table.select(
        pl.col("gene_id").cast(pl.String), pl.col("contig").cast(pl.String), pl.col("tss").cast(pl.Int64)
    ).sort(["contig", "tss", "gene_id"])
    if g["gene_id"].is_duplicated().any():
        msg = "make_gene_split: duplicate gene_id in genes_table"
        raise ConfigError(msg)
    n = g.height
    if n < 2:
        msg = f"make_gene_split: need >= 2 genes; got {n}"
        raise ConfigError(msg)
    rng = np.random.default_rng(seed)
    contigs = g["contig"].to_numpy()
    contig_names = sorted(set(contigs.tolist()))
    block = np.full(n, -1, dtype=np.int64)
    if heldout_contigs is not None:
        held = {str(c) for c in heldout_contigs}
        unknown = sorted(held - set(contig_names))
        if unknown:
            msg = f"make_gene_split: heldout_contigs {unknown} have no genes (contigs: {contig_names})"
            raise ConfigError(msg)
        unseen = np.isin(contigs, list(held))
    elif len(contig_names) > 1:
        chosen: list[str] = []
        for i in rng.permutation(len(contig_names)):
            if len(chosen) == len(contig_names) - 1 or np.isin(contigs, chosen).sum() >= heldout_fraction * n:
                break
            chosen.append(contig_names[i])
        unseen = np.isin(contigs, chosen)
    else:
        k = min(n_blocks, n)
        block = (np.arange(n) * k) // n
        n_held = min(k - 1, max(1, int(round(heldout_fraction * k))))
        held_blocks = rng.choice(k, size=n_held, replace=False)
        unseen = np.isin(block, held_blocks)
    if unseen.all() or not unseen.any():
        msg = "make_gene_split: the held-out genes leave no seen or no unseen gene"
        raise ConfigError(msg)
    cls = np.where(unseen, "unseen", "seen").astype(object)
    if buffer_bp > 0:
        tss = g["tss"].to_numpy()
        for c in contig_names:
            on_c = contigs == c
            u = np.sort(tss[on_c & unseen])
            if len(u) == 0:
                continue
            idx = np.flatnonzero(on_c & ~unseen)
            pos = np.searchsorted(u, tss[idx])
            left = np.abs(tss[idx] - u[np.clip(pos - 1, 0, len(u) - 1)])
            right = np.abs(u[np.clip(pos, 0, len(u) - 1)] - tss[idx])
            cls[idx[np.minimum(left, right) <= buffer_bp]] = "buffer"
    return g.with_columns(
        pl.Series("block", block, dtype=pl.Int64), pl.Series("gene_class", cls.tolist(), dtype=pl.String)
    )


def _atomic_write_tsv(df: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.write_csv(tmp, separator="\t")


def write_splits(out_dir: str | os.PathLike[str], individuals: pl.DataFrame, genes: pl.DataFrame | None = None) -> Path:
    """Write ``OUT/splits/individuals.tsv`` (and ``genes.tsv`` when ``genes`` is given) atomically.

    Returns the ``OUT/splits`` directory.
    """
    if set(individuals.columns) < {"sample", "split"}:
        msg = f"write_splits: individuals needs columns sample, split; got {individuals.columns}"
        raise ConfigError(msg)
    bad = sorted(set(individuals["split"].to_list()) - set(SPLITS))
    if bad:
        msg = f"write_splits: split values must be train/val/test; got {bad}"
        raise ConfigError(msg)
    d = Path(out_dir) / "splits"
    d.mkdir(parents=True, exist_ok=True)
    _atomic_write_tsv(individuals.select("sample", "split"), d / INDIVIDUALS_FILE)
    if genes is not None:
        _atomic_write_tsv(genes, d / GENES_FILE)
    return d


def read_splits(out_dir: str | os.PathLike[str]) -> Splits:
    """Read the split files written by :func:`write_splits` (``OUT`` or ``OUT/splits`` accepted)."""
    d = Path(out_dir)
    if not (d / INDIVIDUALS_FILE).exists():
        d = d / "splits"
    path = d / INDIVIDUALS_FILE
    if not path.exists():
        msg = f"{path}: split file not found; create it with expredict.splits.write_splits"
        raise InputFileError(msg)
    ind = pl.read_csv(path, separator="\t", schema_overrides={"sample": pl.String, "split": pl.String})
    if ind.columns[:2] != ["sample", "split"] or not set(ind["split"].to_list()) <= set(SPLITS):
        msg = f"{path}: expected columns sample, split with values train/val/test"
        raise InputFileError(msg)
    gpath = d / GENES_FILE
    genes = None
    if gpath.exists():
        genes = pl.read_csv(
            gpath, separator="\t", schema_overrides={"gene_id": pl.String, "contig": pl.String, "gene_class": pl.String}
        )
    return Splits(ind, genes)


def split_indices(individuals: pl.DataFrame, samples: Sequence[str]) -> dict[str, np.ndarray]:
    """Map each split to the int64 row indices of ``samples`` (e.g. the VCF/expression order).

    Samples absent from the split table belong to no split (e.g. new individuals to predict).
    """
    lookup = dict(zip(individuals["sample"].to_list(), individuals["split"].to_list(), strict=True))
    labels = np.array([lookup.get(str(s), "") for s in samples], dtype=object)
    return {name: np.flatnonzero(labels == name) for name in SPLITS}
