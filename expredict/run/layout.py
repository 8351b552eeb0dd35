"""``RunDir``: the one place that knows the names and formats of a run folder ``OUT/``.

Every file a run writes or reads back goes through this class; stages, ``expredict predict``,
evaluation and the report never build a path under ``OUT/`` themselves. Writes are atomic
(temporary sibling, then rename), so an interrupted run leaves whole files only.

Layout (``LAYOUT_VERSION`` 2)::

    config.yaml  manifest.json  logs/run.log
    genes.parquet  genes_dropped.parquet          genes whose sequence window fits the reference
    splits/individuals.tsv  splits/genes.tsv      the one split every method uses
    targets.parquet                               sample, split, one normalised column per gene
    haplotypes/<gene>.npz  haplotypes/summary.parquet
    models/<name>/                                tiny random-weight stand-ins built for the run
    embedding.json  cache/embeddings/             embedding cache spec and location (embedding.random.json: the control)
    trained/<method>/...                          each method's trained models and fit records
    predictions/<method>.parquet                  the standard frame: gene_id, sample, split, prediction
    predictions/<method>.json                     the method's labels (random weights, notes)
    metrics/per_gene.parquet  metrics/summary.parquet  metrics/head_to_head.parquet
    report.html  report.md
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from expredict.atomic import atomic_write_bytes, atomic_write_parquet, atomic_write_text
from expredict.errors import ConfigError, InputFileError

LAYOUT_VERSION = 2
"""Bumped whenever a file under ``OUT/`` changes name or format; older folders are refused."""

PREDICTION_SCHEMA = {"gene_id": pl.String, "sample": pl.String, "split": pl.String, "prediction": pl.Float64}
"""The standard prediction frame every method writes: one row per (gene, individual) it predicts."""


def safe_name(gene_id: str) -> str:
    """A gene id usable as a file name (alphanumerics and ``._-`` kept, the rest ``_``)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(gene_id))


@dataclass(frozen=True)
class MethodLabels:
    """What a method's stage states about its predictions, shown by evaluate and the report.

    ``random_weights``: the model had random weights (plumbing check, labelled everywhere);
    ``gene_classes``: score per gene class (seen / unseen genes) as well; ``notes``: caveats
    printed near the top of the report; ``control_of``: this method is the random-weight control
    of that method (the report shows what pretraining adds, gene by gene).
    """

    random_weights: bool = False
    gene_classes: bool = False
    notes: tuple[str, ...] = ()
    control_of: str | None = None


@dataclass(frozen=True)
class GeneHaplotypes:
    """One gene's distinct sequences as stored in ``haplotypes/<gene>.npz``.

    ``index`` (n_samples, 2) maps each individual's two haplotypes to rows of ``sequences``;
    ``hashes`` are the embedding-cache keys of ``sequences``.
    """

    index: np.ndarray
    hashes: list[str]
    sequences: list[str]
    samples: list[str]


class RunDir:
    """The run folder ``OUT/`` (see the module docstring for its layout)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def path(self, *parts: str) -> Path:
        """A path under ``OUT/`` (for entries this class does not name, e.g. a stage's folder)."""
        return self.root.joinpath(*parts)

    def require(self, *names: str, hint: str) -> None:
        """Raise a clear error when one of ``names`` (relative paths) is missing."""
        for name in names:
            if not self.path(name).exists():
                msg = f"{self.root}: missing {name}; {hint}"
                raise InputFileError(msg)

    # ------------------------------------------------------------------ run metadata
    @property
    def config_file(self) -> Path:
        return self.path("config.yaml")

    @property
    def manifest_file(self) -> Path:
        return self.path("manifest.json")

    @property
    def log_file(self) -> Path:
        return self.path("logs", "run.log")

    def write_config(self, yaml_text: str) -> None:
        atomic_write_text(self.config_file, yaml_text)

    def read_config(self):
        """The run's configuration as written at its start (``config.yaml``)."""
        import yaml

        from expredict.config import config_from_dict

        return config_from_dict(yaml.safe_load(self.config_file.read_text()), self.root, str(self.config_file))

    def read_manifest(self) -> dict[str, Any]:
        """``manifest.json`` (empty when absent); refuses folders written in an older layout."""
        if not self.manifest_file.exists():
            return {"layout": LAYOUT_VERSION, "stages": {}}
        data = json.loads(self.manifest_file.read_text())
        layout = data.get("layout") if isinstance(data.get("stages"), dict) else 1
        if layout != LAYOUT_VERSION:
            msg = (
                f"{self.root}: this run folder was written by an older expredict (run layout {layout}; this version "
                f"writes layout {LAYOUT_VERSION}: one predictions/ folder in a long frame, trained models under "
                "trained/<method>/); its outputs cannot be resumed. Run into a new --out folder, or delete this one"
            )
            raise ConfigError(msg)
        return data

    def write_manifest(self, stages: dict[str, Any]) -> None:
        atomic_write_text(self.manifest_file, json.dumps({"layout": LAYOUT_VERSION, "stages": stages}, indent=2, sort_keys=True))

    def clear(self, entries: Iterable[str]) -> None:
        """Delete files or folders under ``OUT/`` (a stage starting afresh)."""
        for name in entries:
            p = self.path(name)
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ genes, splits, targets
    def write_genes(self, genes: pl.DataFrame, dropped: dict[str, str]) -> None:
        atomic_write_parquet(genes, self.path("genes.parquet"))
        frame = pl.DataFrame({"gene_id": list(dropped), "reason": list(dropped.values())},
                             schema={"gene_id": pl.String, "reason": pl.String})
        atomic_write_parquet(frame, self.path("genes_dropped.parquet"))

    def read_genes(self) -> pl.DataFrame:
        """Every gene of the run (``gene_id, contig, tss, strand, ...``)."""
        return pl.read_parquet(self.path("genes.parquet"))

    def read_dropped_genes(self) -> dict[str, str]:
        p = self.path("genes_dropped.parquet")
        return dict(pl.read_parquet(p).iter_rows()) if p.exists() else {}

    def write_splits(self, individuals: pl.DataFrame, genes: pl.DataFrame | None) -> None:
        from expredict.splits import write_splits

        write_splits(self.root, individuals, genes)

    def read_gene_classes(self) -> pl.DataFrame:
        """``gene_id, gene_class`` from ``splits/genes.tsv``."""
        from expredict.splits import read_splits

        return read_splits(self.root).genes.select("gene_id", "gene_class")

    def write_targets(self, targets: pl.DataFrame) -> None:
        atomic_write_parquet(targets, self.path("targets.parquet"))

    def read_targets(self) -> tuple[list[str], list[str], pl.DataFrame]:
        """``(samples, split label per sample, targets table)``; the table has ``sample, split`` then one column per gene."""
        df = pl.read_parquet(self.path("targets.parquet"))
        return df["sample"].to_list(), df["split"].to_list(), df

    def observed(self, split: str = "test") -> pl.DataFrame:
        """Long ``gene_id, sample, observed``: the normalised targets of one split's individuals."""
        _, _, targets = self.read_targets()
        part = targets.filter(pl.col("split") == split).drop("split")
        return part.unpivot(index="sample", variable_name="gene_id", value_name="observed").select("gene_id", "sample", "observed")

    # ------------------------------------------------------------------ haplotypes
    def haplotypes_file(self, gene_id: str) -> Path:
        return self.path("haplotypes", f"{safe_name(gene_id)}.npz")

    def write_gene_haplotypes(self, gene_id: str, hap: GeneHaplotypes) -> None:
        """Store one gene's distinct sequences (bytes concatenated, with offsets) and its index."""
        data = np.frombuffer("".join(hap.sequences).encode("ascii"), np.uint8)
        offsets = np.zeros(len(hap.sequences) + 1, np.int64)
        np.cumsum([len(s) for s in hap.sequences], out=offsets[1:])
        p = self.haplotypes_file(gene_id)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp.npz")
        np.savez(tmp, index=np.asarray(hap.index, np.int32), hashes=np.array(hap.hashes), data=data, offsets=offsets,
                 samples=np.array(hap.samples))
        tmp.replace(p)

    def read_gene_haplotypes(self, gene_id: str) -> GeneHaplotypes:
        with np.load(self.haplotypes_file(gene_id)) as z:
            data, offsets = z["data"], z["offsets"]
            seqs = [data[offsets[i] : offsets[i + 1]].tobytes().decode("ascii") for i in range(len(offsets) - 1)]
            return GeneHaplotypes(z["index"], z["hashes"].tolist(), seqs, z["samples"].tolist())

    def haplotype_counts(self, gene_id: str) -> tuple[int, int]:
        """``(n haplotypes, n distinct)`` of a stored gene, without decoding its sequences."""
        with np.load(self.haplotypes_file(gene_id)) as z:
            return int(z["index"].size), int(z["hashes"].size)

    # ------------------------------------------------------------------ models and caches
    def tiny_model_dir(self, name: str) -> Path:
        """Where a tiny random-weight stand-in model of the run is built (``models/<name>``)."""
        return self.path("models", name)

    def cache_dir(self, name: str) -> Path:
        """A resumable cache of the run (``cache/<name>``), e.g. ``embeddings`` or ``enformer``."""
        return self.path("cache", name)

    def embedding_spec_file(self, arm: str = "pretrained") -> Path:
        """``embedding.json`` (the configured model) or ``embedding.<arm>.json`` (e.g. its random twin)."""
        return self.path("embedding.json" if arm == "pretrained" else f"embedding.{arm}.json")

    def write_embedding_spec(self, info: dict[str, Any], arm: str = "pretrained") -> None:
        atomic_write_text(self.embedding_spec_file(arm), json.dumps(info, indent=2, default=str))

    def read_embedding_spec(self, arm: str = "pretrained") -> dict[str, Any]:
        """``cache_dir``, ``spec``, ``key``, ``random_weights`` of an embedding arm the run filled."""
        p = self.embedding_spec_file(arm)
        if not p.exists():
            msg = f"{self.root}: no embedding cache recorded ({p.name}); run the stage that embeds it first"
            raise InputFileError(msg)
        return json.loads(p.read_text())

    def trained(self, method: str, *parts: str) -> Path:
        """A file of ``method``'s trained models and records: ``trained/<method>/<parts...>``."""
        return self.path("trained", method, *parts)

    def write_json(self, path: Path, obj: Any) -> None:
        atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default))

    def read_json(self, path: Path) -> Any:
        return json.loads(Path(path).read_text())

    def write_parquet(self, path: Path, df: pl.DataFrame) -> None:
        atomic_write_parquet(df, path)

    # ------------------------------------------------------------------ predictions (the standard frame)
    def predictions_file(self, method: str) -> Path:
        return self.path("predictions", f"{method}.parquet")

    def write_predictions(self, method: str, frame: pl.DataFrame, labels: MethodLabels) -> None:
        """Store a method's predictions as the standard frame, with its labels beside it.

        ``frame``: ``gene_id, sample, split, prediction`` for every individual the method
        predicts (at least the test individuals). Rows are sorted by gene, then sample order.
        """
        missing = [c for c in PREDICTION_SCHEMA if c not in frame.columns]
        if missing:
            msg = f"predictions of {method}: missing columns {missing}; need {list(PREDICTION_SCHEMA)}"
            raise ValueError(msg)
        frame = frame.select([pl.col(c).cast(t) for c, t in PREDICTION_SCHEMA.items()])
        atomic_write_parquet(frame, self.predictions_file(method))
        meta = {"random_weights": labels.random_weights, "gene_classes": labels.gene_classes, "notes": list(labels.notes),
                "control_of": labels.control_of}
        atomic_write_text(self.path("predictions", f"{method}.json"), json.dumps(meta, indent=2))

    def remove_predictions(self, method: str) -> None:
        self.clear([f"predictions/{method}.parquet", f"predictions/{method}.json"])

    def read_predictions(self, method: str, split: str | None = None) -> pl.DataFrame:
        """A method's standard frame, optionally one split's rows only."""
        df = pl.read_parquet(self.predictions_file(method))
        return df if split is None else df.filter(pl.col("split") == split)

    def read_labels(self, method: str) -> MethodLabels:
        d = json.loads(self.path("predictions", f"{method}.json").read_text())
        return MethodLabels(bool(d["random_weights"]), bool(d["gene_classes"]), tuple(d["notes"]), d.get("control_of"))

    def methods_with_predictions(self, order: Iterable[str]) -> list[str]:
        """Methods (in ``order``) whose predictions exist."""
        return [m for m in order if self.predictions_file(m).exists()]

    # ------------------------------------------------------------------ metrics and report
    def write_metrics(self, per_gene: pl.DataFrame, summary: pl.DataFrame, head_to_head: pl.DataFrame) -> None:
        atomic_write_parquet(per_gene, self.path("metrics", "per_gene.parquet"))
        atomic_write_parquet(summary, self.path("metrics", "summary.parquet"))
        atomic_write_parquet(head_to_head, self.path("metrics", "head_to_head.parquet"))

    def read_per_gene(self) -> pl.DataFrame:
        return pl.read_parquet(self.path("metrics", "per_gene.parquet"))

    @property
    def report_file(self) -> Path:
        return self.path("report.html")

    def write_report(self, html: str, markdown: str) -> Path:
        atomic_write_bytes(self.path("report.md"), markdown.encode("utf-8"))
        atomic_write_bytes(self.report_file, html.encode("utf-8"))
        return self.report_file


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)
