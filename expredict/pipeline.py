"""The end-to-end run: stages, their caching manifest, and the fan-out over genes.

Stages, in order (``expredict run CONFIG``)::

    prepare     splits by individual + leak-free targets (fitted on training individuals)
    haplotypes  distinct personal sequences per gene (center_tss, NT window)
    embed       frozen NT embeddings of every distinct sequence (resumable cache)
    train       one transformer head per gene; predictions for every individual
    enet        PrediXcan elastic net; PredictDB .db + covariances
    enformer    Enformer CAGE readout on personal haplotypes
    evaluate    per-gene metrics on the shared test individuals
    report      OUT/report.html and OUT/report.md

Each stage has a content key (its config section, the keys of the stages it reads, input file
fingerprints). ``OUT/manifest.json`` records the key a stage finished with; a stage whose key is
unchanged is skipped, and a stage whose key changed starts afresh. Per-gene outputs are written
atomically one gene at a time, so a killed run resumes where it stopped. This is the only module
that fans work out (through :mod:`expredict.executor`); workers get file paths and gene ids, never
matrices.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from expredict.atomic import atomic_write_parquet, atomic_write_text
from expredict.config import Config, config_from_dict, config_to_yaml
from expredict.errors import ConfigError, ReferenceMismatchError

STAGES = ("prepare", "haplotypes", "embed", "train", "enet", "enformer", "evaluate", "report")
METHOD_STAGES = {"train": "nt_head", "enet": "enet", "enformer": "enformer"}
MANIFEST = "manifest.json"
RANDOM_WEIGHTS_NOTE = "random weights: plumbing check, not a scientific result"

Log = Callable[[str], None]


# ---------------------------------------------------------------------------- small helpers
def digest(obj: Any) -> str:
    """SHA-256 (hex, 16 chars) of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_fingerprint(path: Path | None) -> Any:
    """Path, size and mtime of an input file (cheap; content hashes would cost minutes on real cohorts)."""
    if path is None:
        return None
    st = Path(path).stat()
    return [str(path), st.st_size, st.st_mtime_ns]


class Progress:
    """Logs ``label: done/total``, the wall seconds per item and the time left, at most every
    ``every`` seconds and once at the end, for stages whose genes take minutes in all."""

    def __init__(self, log: Log, label: str, total: int, every: float = 30.0) -> None:
        self.log, self.label, self.total, self.every = log, label, total, every
        self.done = 0
        self.t0 = self.last = time.perf_counter()

    def step(self) -> None:
        """One item finished."""
        self.done += 1
        now = time.perf_counter()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        each = (now - self.t0) / self.done
        if self.done < self.total:
            left = each * (self.total - self.done) / 60
            self.log(f"{self.label}: {self.done}/{self.total}, {each:.1f} s each, about {left:.1f} min left")
        else:
            self.log(f"{self.label}: {self.done}/{self.total} in {now - self.t0:.1f} s ({each:.1f} s each)")


def safe_name(gene_id: str) -> str:
    """A gene id usable as a file name."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in gene_id)


def parse_chunk(chunk: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (1-based i) -> ``(i, N)``; None passes through."""
    if chunk is None:
        return None
    try:
        i, n = (int(x) for x in chunk.split("/"))
    except ValueError:
        msg = f"--chunk must look like i/N (e.g. 3/10); got {chunk!r}"
        raise ConfigError(msg) from None
    if not 1 <= i <= n:
        msg = f"--chunk {chunk}: need 1 <= i <= N"
        raise ConfigError(msg)
    return i, n


# ---------------------------------------------------------------------------- manifest
@dataclass
class Manifest:
    """``OUT/manifest.json``: per stage, the key it finished with and when."""

    path: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, out: Path) -> Manifest:
        """Read the manifest (empty when absent)."""
        p = out / MANIFEST
        return cls(p, json.loads(p.read_text()) if p.exists() else {})

    def done(self, stage: str, key: str) -> bool:
        """True when ``stage`` finished with exactly ``key``."""
        rec = self.stages.get(stage)
        return bool(rec and rec.get("key") == key and rec.get("complete"))

    def started_with(self, stage: str) -> str | None:
        """The key of the last (possibly unfinished) attempt at ``stage``."""
        rec = self.stages.get(stage)
        return rec.get("key") if rec else None

    def mark(self, stage: str, key: str, *, complete: bool, **info: Any) -> None:
        """Record a stage's state and write the manifest atomically."""
        self.stages[stage] = {"key": key, "complete": complete, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        atomic_write_text(self.path, json.dumps(self.stages, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------- run context
@dataclass
class Run:
    """Everything the stages share: config, output directory, gene selection, keys, log."""

    config: Config
    out: Path
    log: Log
    genes_subset: list[str] | None = None
    chunk: tuple[int, int] | None = None
    scheduler_address: str | None = None
    manifest: Manifest = field(init=False)
    keys: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _cohort: Any = None

    def __post_init__(self) -> None:
        self.manifest = Manifest.load(self.out)

    # -- data
    @property
    def cohort(self):
        """The cohort, loaded on first use (a fully cached run never parses the VCF)."""
        if self._cohort is None:
            from expredict.cohort import load_cohort

            self._cohort = load_cohort(self.config, log=self.log)
        return self._cohort

    def path(self, *parts: str) -> Path:
        """A path under the output directory."""
        return self.out.joinpath(*parts)

    def genes(self) -> pl.DataFrame:
        """The run's genes (``OUT/genes.parquet``, written by ``prepare``), after --genes/--chunk."""
        genes = pl.read_parquet(self.path("genes.parquet"))
        if self.genes_subset:
            unknown = [g for g in self.genes_subset if g not in set(genes["gene_id"].to_list())]
            if unknown:
                dropped = dict(pl.read_parquet(self.path("genes_dropped.parquet")).iter_rows())
                why = dropped.get(unknown[0], "not in the expression matrix and gene table")
                msg = (
                    f"--genes: {len(unknown)} gene(s) cannot be run, e.g. {unknown[0]}: {why}; the run's genes "
                    f"are listed in {self.path('genes.parquet')}"
                )
                raise ConfigError(msg)
            genes = genes.filter(pl.col("gene_id").is_in(self.genes_subset))
        if self.chunk:
            i, n = self.chunk
            bounds = np.linspace(0, genes.height, n + 1).astype(int)
            genes = genes.slice(bounds[i - 1], bounds[i] - bounds[i - 1])
        return genes

    def executor(self):
        """The configured executor (local process pool or Dask)."""
        from expredict.executor import get_executor

        ex = self.config.executor
        backend = "dask" if self.scheduler_address else ex.backend
        return get_executor(backend, ex.n_workers, scheduler_address=self.scheduler_address or ex.scheduler_address)


# ---------------------------------------------------------------------------- stage keys
def stage_keys(config: Config) -> dict[str, str]:
    """The content key of every stage (what, if changed, forces it to run again)."""
    from expredict.baselines.enet import resolve_backend

    d = config.data
    inputs = [file_fingerprint(p) for p in (d.vcf, d.fasta, d.genes, d.expression, d.covariates, d.populations)]
    data = config.data.model_dump(mode="json", exclude={"genes_subset", "max_genes"})
    k: dict[str, str] = {}
    k["prepare"] = digest(["prepare", 2, inputs, data, config.expression.model_dump(mode="json"),
                           config.split.model_dump(mode="json"), config.seed, d.max_genes,
                           config.haplotypes.length])
    hap = config.haplotypes.model_dump(mode="json")
    k["haplotypes"] = digest(["haplotypes", 1, k["prepare"], hap])
    emb = config.embedding.model_dump(mode="json", exclude={"batch_size", "device"})
    k["embed"] = digest(["embed", 1, k["haplotypes"], emb])
    k["train"] = digest(["train", 1, k["embed"], config.head.model_dump(mode="json", exclude={"device"}), config.seed])
    # the resolved solver is part of the key: "auto" changing meaning refits instead of reusing old fits
    # version 5: float32 working-set Grams in the numba kernel (results move by < 1e-8; refit, not reused)
    solver = resolve_backend(config.enet.backend)
    k["enet"] = digest(["enet", 5, k["prepare"], config.enet.model_dump(mode="json"), solver, config.seed])
    enf = config.enformer.model_dump(mode="json", exclude={"batch_size", "device"})
    k["enformer"] = digest(["enformer", 1, k["prepare"], enf, {x: hap[x] for x in ("reverse_complement_minus", "unphased", "ref_mismatch", "snv_only")}])
    k["evaluate"] = digest(["evaluate", 1, k["train"], k["enet"], k["enformer"]])
    k["report"] = digest(["report", 1, k["evaluate"]])
    return k


# ---------------------------------------------------------------------------- entry point
def run_pipeline(
    config: Config,
    stages: Sequence[str] | None = None,
    *,
    chunk: str | None = None,
    scheduler_address: str | None = None,
    log: Log = print,
) -> Path:
    """Run (or resume) the pipeline; return the path of the HTML report (or the output dir)."""
    wanted = list(stages) if stages else list(STAGES)
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        msg = f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}"
        raise ConfigError(msg)
    if not config.enformer.enabled and "enformer" in wanted and stages is None:
        wanted.remove("enformer")
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logger = _file_logger(out / "logs" / "run.log", log)
    run = Run(config, out, logger, config.data.genes_subset, parse_chunk(chunk), scheduler_address)
    run.keys = stage_keys(config)
    atomic_write_text(out / "config.yaml", config_to_yaml(config))
    if config.data.genes_subset or chunk:
        run.config = config.model_copy(update={"data": config.data.model_copy(update={"genes_subset": None})})
    # a stage needs the ones before it; run them when their outputs are missing or stale
    needed = _with_prerequisites(wanted, config)
    t_all = time.perf_counter()
    for stage in STAGES:
        if stage not in needed:
            continue
        key = run.keys[stage]
        if stage in ("evaluate", "report"):  # depends on which method stages have finished, and how
            finished = {m: run.manifest.stages.get(m, {}).get("key") for m in METHOD_STAGES if run.manifest.done(m, run.keys[m])}
            key = digest([key, finished])
        partial = bool(run.genes_subset or run.chunk) and stage not in ("prepare", "evaluate", "report")
        if run.manifest.done(stage, key) and not partial:
            logger(f"[{stage}] up to date (key {key}), skipped")
            continue
        if run.manifest.started_with(stage) not in (None, key):
            logger(f"[{stage}] settings changed since the last run: starting this stage afresh")
            _clear_stage(run, stage)
        logger(f"[{stage}] running")
        t0 = time.perf_counter()
        run.manifest.mark(stage, key, complete=False)
        info = STAGE_FUNCS[stage](run) or {}
        run.timings[stage] = time.perf_counter() - t0
        run.manifest.mark(stage, key, complete=not partial, elapsed_s=round(run.timings[stage], 2), stats=info)
        logger(f"[{stage}] done in {run.timings[stage]:.1f} s")
    logger(f"pipeline finished in {time.perf_counter() - t_all:.1f} s; outputs in {out}")
    report = out / "report.html"
    return report if report.exists() else out


def _with_prerequisites(wanted: list[str], config: Config) -> set[str]:
    deps = {
        "prepare": [],
        "haplotypes": ["prepare"],
        "embed": ["haplotypes"],
        "train": ["embed"],
        "enet": ["prepare"],
        "enformer": ["prepare"],
        "evaluate": ["prepare"],
        "report": ["evaluate"],
    }
    need: set[str] = set()
    stack = list(wanted)
    while stack:
        s = stack.pop()
        if s not in need:
            need.add(s)
            stack.extend(deps[s])
    return need


def _file_logger(path: Path, echo: Log) -> Log:
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        echo(msg)
        with path.open("a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    return log


STAGE_DIRS = {
    "prepare": [],
    "haplotypes": ["haplotypes"],
    "embed": [],
    "train": ["heads"],
    "enet": ["enet"],
    "enformer": ["enformer"],
    "evaluate": ["metrics", "predictions"],
    "report": [],
}


def _clear_stage(run: Run, stage: str) -> None:
    for d in STAGE_DIRS[stage]:
        p = run.path(d)
        if p.exists():
            shutil.rmtree(p)
    method = METHOD_STAGES.get(stage)
    if method:
        run.path("stage_predictions", f"{method}.parquet").unlink(missing_ok=True)


# ---------------------------------------------------------------------------- prepare
def stage_prepare(run: Run) -> dict:
    """Genes whose windows fit, splits by individual, and leak-free normalised targets."""
    from expredict.cohort import genes_fitting_reference
    from expredict.splits import make_gene_split, make_individual_split, write_splits
    from expredict.targets import TargetNormalizer

    cfg = run.config
    cohort = run.cohort
    half = cfg.haplotypes.length // 2
    genes, dropped = genes_fitting_reference(cohort.genes, cohort.reference, half)
    explicit = [g for g in (cfg.data.genes_subset or run.genes_subset or []) if g in dropped]
    if explicit:
        msg = f"{cfg.data.fasta}: requested gene {explicit[0]}: {dropped[explicit[0]]}; choose another gene or a larger reference"
        raise ReferenceMismatchError(msg)
    if genes.height == 0:
        msg = f"{cfg.data.fasta}: no gene's +/-{half} bp window fits inside the reference (e.g. {next(iter(dropped.items()), ('', ''))})"
        raise ReferenceMismatchError(msg)
    run.log(f"[prepare] {genes.height} genes with a +/-{half:,} bp window inside the reference; {len(dropped)} dropped")
    atomic_write_parquet(genes, run.path("genes.parquet"))
    atomic_write_parquet(
        pl.DataFrame({"gene_id": list(dropped), "reason": list(dropped.values())}, schema={"gene_id": pl.String, "reason": pl.String}),
        run.path("genes_dropped.parquet"),
    )
    populations = None
    if cfg.data.populations is not None:
        pops = pl.read_csv(cfg.data.populations, separator="\t")
        populations = dict(zip(pops["sample"].to_list(), pops["population"].to_list(), strict=True))
    individuals = make_individual_split(
        cohort.samples, seed=cfg.seed, fractions=cfg.split.fractions,
        populations=populations if cfg.split.kind == "population" else None,
        test_populations=cfg.split.test_populations,
    )
    gene_split = make_gene_split(genes, seed=cfg.seed, heldout_fraction=cfg.split.gene_heldout_fraction, n_blocks=cfg.split.gene_blocks)
    write_splits(run.out, individuals, gene_split)
    labels = dict(zip(individuals["sample"].to_list(), individuals["split"].to_list(), strict=True))
    train = np.array([labels[s] == "train" for s in cohort.samples])
    expr = cohort.expression.subset(genes["gene_id"].to_list())
    y = expr.values.T  # (n_samples, n_genes)
    cov = cohort.covariates if cfg.expression.regress_covariates else None
    norm = TargetNormalizer(inverse_normal=False, regress_covariates=cov is not None)
    norm.fit(y[train], covariates=None if cov is None else cov[train])
    targets = norm.transform(y, covariates=cov)
    df = pl.DataFrame({"sample": cohort.samples, "split": [labels[s] for s in cohort.samples]}).hstack(
        pl.DataFrame(targets, schema=expr.gene_ids, orient="row")
    )
    atomic_write_parquet(df, run.path("targets.parquet"))
    counts = {k: int(sum(v == k for v in labels.values())) for k in ("train", "val", "test")}
    run.log(f"[prepare] individuals: {counts}; targets normalised on the {counts['train']} training individuals only")
    return {"n_genes": genes.height, "n_dropped": len(dropped), **counts}


def read_targets(out: Path) -> tuple[list[str], list[str], pl.DataFrame]:
    """``(samples, split labels, targets table)`` from ``OUT/targets.parquet``."""
    df = pl.read_parquet(out / "targets.parquet")
    return df["sample"].to_list(), df["split"].to_list(), df


# ---------------------------------------------------------------------------- haplotypes
def _regions(genes: pl.DataFrame, length: int):
    from expredict.coords import Region

    half = length // 2
    return [
        Region(contig, max(0, tss - half), max(0, tss - half) + length, gid, tss, strand)
        for gid, contig, tss, strand in genes.select("gene_id", "contig", "tss", "strand").iter_rows()
    ]


def iter_gene_haplotypes(run: Run, genes: pl.DataFrame, length: int):
    """Distinct center_tss haplotypes of each gene for the run's samples (haplotype engine)."""
    from expredict.haplotypes import iter_unique_haplotypes

    cfg = run.config.haplotypes
    cohort = run.cohort
    for contig, sub in genes.group_by("contig", maintain_order=True):
        yield from iter_unique_haplotypes(
            cohort.genotypes[contig[0]], cohort.reference, _regions(sub, length), mode="center_tss", length=length,
            reverse_complement_minus=cfg.reverse_complement_minus, unphased=cfg.unphased,
            ref_mismatch=cfg.ref_mismatch, snv_only=cfg.snv_only,
        )


def stage_haplotypes(run: Run) -> dict:
    """Write ``OUT/haplotypes/<gene>.npz``: distinct sequences, their hashes and the (sample, hap) index."""
    from expredict.cache import sequence_hash

    genes = run.genes()
    todo = genes.filter(~pl.col("gene_id").map_elements(lambda g: run.path("haplotypes", f"{safe_name(g)}.npz").exists(), return_dtype=pl.Boolean))
    n_hap = n_unique = 0
    for hs in iter_gene_haplotypes(run, todo, run.config.haplotypes.length):
        seqs = hs.sequences
        data = np.frombuffer("".join(seqs).encode("ascii"), np.uint8)
        offsets = np.zeros(len(seqs) + 1, np.int64)
        np.cumsum([len(s) for s in seqs], out=offsets[1:])
        p = run.path("haplotypes", f"{safe_name(hs.region.name)}.npz")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp.npz")
        np.savez(tmp, index=np.asarray(hs.index, np.int32), hashes=np.array([sequence_hash(s) for s in seqs]),
                 data=data, offsets=offsets, samples=np.array(hs.samples))
        tmp.replace(p)
        n_hap += 2 * len(hs.samples)
        n_unique += len(seqs)
    rows = []
    for gid in genes["gene_id"].to_list():
        with np.load(run.path("haplotypes", f"{safe_name(gid)}.npz")) as z:
            rows.append((gid, int(z["index"].size), int(z["hashes"].size)))
    summary = pl.DataFrame(rows, schema={"gene_id": pl.String, "n_haplotypes": pl.Int64, "n_unique": pl.Int64}, orient="row")
    atomic_write_parquet(summary, run.path("haplotypes", "summary.parquet"))
    factor = summary["n_haplotypes"].sum() / max(summary["n_unique"].sum(), 1)
    run.log(f"[haplotypes] {summary['n_haplotypes'].sum()} haplotypes -> {summary['n_unique'].sum()} distinct sequences "
            f"(dedup factor {factor:.1f}x); {todo.height} genes computed now")
    return {"dedup_factor": round(float(factor), 2), "n_unique": int(summary["n_unique"].sum())}


def load_gene_haplotypes(out: Path, gene_id: str) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """``(index (n_samples, 2), sequence hashes, sequences, samples)`` of one gene."""
    with np.load(out / "haplotypes" / f"{safe_name(gene_id)}.npz") as z:
        data, offsets = z["data"], z["offsets"]
        seqs = [data[offsets[i] : offsets[i + 1]].tobytes().decode("ascii") for i in range(len(offsets) - 1)]
        return z["index"], z["hashes"].tolist(), seqs, z["samples"].tolist()


# ---------------------------------------------------------------------------- embeddings
def nt_model_source(run: Run) -> str:
    """Hub id / directory of the NT model; builds the tiny stand-in under OUT/models when configured."""
    emb = run.config.embedding
    if emb.tiny is None:
        return emb.model
    from expredict.embed.model import make_tiny_nt

    _quiet_transformers()
    d = run.path("models", f"tiny-nt-{emb.tiny}")
    if not (d / "config.json").exists():
        make_tiny_nt(emb.tiny, d)
    return str(d)


def _quiet_transformers() -> None:
    """Silence transformers' per-load tables and progress bars (our loader does its own strict check)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def build_embedder(config: Config, model_source: str):
    """The configured frozen NT embedder (layers, pooling into bins, device, batch size)."""
    import math

    from expredict.embed import Embedder, Pooling, load_nt

    _quiet_transformers()
    emb = config.embedding
    layers = (emb.layer,) if emb.intermediate_layer is None else (emb.intermediate_layer, emb.layer)
    if emb.pooling == "bins":
        n_tokens = math.ceil(config.haplotypes.length / 6)
        pooling = Pooling("bins", bin_tokens=math.ceil(n_tokens / emb.n_bins), n_bins=emb.n_bins)
    else:
        pooling = Pooling("mean")
    return Embedder(load_nt(model_source, revision=emb.revision), layers=layers, pooling=pooling,
                    device=emb.device, batch_size=emb.batch_size)


def as_head_input(values: np.ndarray) -> np.ndarray:
    """Cache items ``(n, n_layers[, n_bins], H)`` -> head input ``(n, n_tokens, n_layers * H)``."""
    if values.ndim == 3:  # mean pooling: one token
        values = values[:, :, None, :]
    n, n_layers, n_bins, h = values.shape
    return np.ascontiguousarray(values.transpose(0, 2, 1, 3).reshape(n, n_bins, n_layers * h), dtype=np.float32)


def stage_embed(run: Run) -> dict:
    """Embed the distinct sequences of every gene (cache misses only); record the cache spec."""
    from expredict.embed import embed_sequences, open_embedding_cache

    emb = run.config.embedding
    embedder = build_embedder(run.config, nt_model_source(run))
    cache_dir = emb.cache_dir or run.path("cache", "embeddings")
    cache = open_embedding_cache(cache_dir, embedder)
    seqs: list[str] = []
    n_haplotypes = 0
    for gid in run.genes()["gene_id"].to_list():
        index, _, gene_seqs, _ = load_gene_haplotypes(run.out, gid)
        seqs.extend(gene_seqs)
        n_haplotypes += index.size
    stats = embed_sequences(seqs, cache, embedder, progress=True)
    run.log(f"[embed] {n_haplotypes} haplotypes -> {stats.n_unique} distinct sequences to embed "
            f"(dedup factor {n_haplotypes / max(stats.n_unique, 1):.1f}x)")
    info = {"cache_dir": str(cache_dir), "spec": cache.spec, "key": cache.key, "random_weights": bool(stats.random_weights),
            "weights_label": stats.weights_label}
    atomic_write_text(run.path("embed_spec.json"), json.dumps(info, indent=2, default=str))
    run.log(f"[embed] {stats.summary()}")
    return {k: v for k, v in stats.to_dict().items() if isinstance(v, int | float | bool)}


def _open_embedding_cache(out: Path):
    from expredict.cache import ArrayCache

    info = json.loads((out / "embed_spec.json").read_text())
    return ArrayCache(info["cache_dir"], info["spec"]), bool(info["random_weights"])


# ---------------------------------------------------------------------------- head training
def train_gene_task(out_dir: str, gene_id: str) -> dict:
    """Worker: train one gene's head from files under ``out_dir`` (picklable arguments only)."""
    import torch

    from expredict.device import resolve_device
    from expredict.head.estimator import train_gene
    from expredict.head.model import HeadConfig

    torch.set_num_threads(1)
    out = Path(out_dir)
    cfg = _read_run_config(out)
    cache, random_weights = _open_embedding_cache(out)
    index, hashes, _, samples = load_gene_haplotypes(out, gene_id)
    tsamples, split, targets = read_targets(out)
    if tsamples != samples:
        msg = f"{out}: haplotype samples of {gene_id} differ from the targets' samples; rerun the haplotypes stage"
        raise ConfigError(msg)
    embeddings = as_head_input(cache.get(hashes))
    y = targets[gene_id].to_numpy()
    head_cfg = HeadConfig.from_dict({**cfg.head.model_dump(exclude={"device", "multi_gene"}), "seed": cfg.seed})
    device = str(resolve_device(cfg.head.device))
    rec = train_gene(gene_id, embeddings, index, y, split, head_cfg, out / "heads", samples=samples,
                     random_weights_embeddings=random_weights, device=device)
    return rec


def _read_run_config(out: Path) -> Config:
    import yaml

    return config_from_dict(yaml.safe_load((out / "config.yaml").read_text()), out, str(out / "config.yaml"))


def stage_train(run: Run) -> dict:
    """One head per gene (in parallel through the executor); records and test predictions."""
    genes = run.genes()["gene_id"].to_list()
    todo = [g for g in genes if not run.path("heads", f"{safe_name(g)}.json").exists()]
    run.log(f"[train] {len(genes)} genes, {len(genes) - len(todo)} already trained")
    with run.executor() as ex:
        for rec in ex.map_unordered(functools.partial(train_gene_task, str(run.out)), todo):
            atomic_write_text(run.path("heads", f"{safe_name(rec['gene_id'])}.json"), json.dumps(rec, default=str))
            run.log(f"[train] {rec['gene_id']}: val r {rec['val_r']:.3f}, test r {rec['test_r']:.3f}, "
                    f"{rec['epochs']} epochs, {rec['seconds']:.1f} s")
    records = [json.loads(run.path("heads", f"{safe_name(g)}.json").read_text()) for g in genes]
    atomic_write_parquet(pl.DataFrame(records), run.path("heads", "records.parquet"))
    preds = []
    for g in genes:
        df = pl.read_csv(run.path("heads", f"{safe_name(g)}.predictions.tsv"), separator="\t")
        preds.append(df.filter(pl.col("split") == "test").select(pl.lit(g).alias("gene_id"), "sample", pl.col("y_pred").alias("prediction")))
    _write_method_predictions(run, "nt_head", pl.concat(preds) if preds else None)
    if run.config.head.multi_gene and (run.chunk or run.genes_subset):
        run.log("[train] multi-gene head skipped: it needs every gene (no --chunk / --genes)")
    elif run.config.head.multi_gene:
        _train_multi_gene(run, genes)
    return {"n_genes": len(genes)}


def _train_multi_gene(run: Run, genes: list[str]) -> None:
    """One head shared by all genes (learned gene embedding), trained on the 'seen' genes of
    ``splits/genes.tsv`` and evaluated on every gene, the held-out 'unseen' genes included."""
    from expredict.head.estimator import GeneData, MultiGeneHeadRegressor, train_multi_gene
    from expredict.head.model import HeadConfig
    from expredict.splits import read_splits

    cfg = run.config
    cache, random_weights = _open_embedding_cache(run.out)
    samples, split, targets = read_targets(run.out)
    data = {}
    for g in genes:
        index, hashes, _, _ = load_gene_haplotypes(run.out, g)
        data[g] = GeneData(as_head_input(cache.get(hashes)), index, targets[g].to_numpy())
    classes = dict(read_splits(run.out).genes.select("gene_id", "gene_class").iter_rows())
    head_cfg = HeadConfig.from_dict({**cfg.head.model_dump(exclude={"device", "multi_gene"}), "seed": cfg.seed})
    records = train_multi_gene(data, split, classes, head_cfg, run.path("heads"), random_weights_embeddings=random_weights)
    atomic_write_parquet(pl.DataFrame(records), run.path("heads", "multigene_records.parquet"))
    est = MultiGeneHeadRegressor.load(run.path("heads", "multigene.pt"))
    labels = np.array(split)
    test, train = np.flatnonzero(labels == "test"), np.flatnonzero(labels == "train")
    rows = []
    for rec in records:
        d = data[rec["gene_id"]]
        idx = np.asarray(d.index, np.int64)
        pred = est.predict(rec["gene_id"], d.embeddings, idx, reference_index=idx[train])
        rows.append(pl.DataFrame({"gene_id": rec["gene_id"], "sample": [samples[i] for i in test], "prediction": pred[test]}))
    _write_method_predictions(run, "nt_head_multigene", pl.concat(rows) if rows else None)
    unseen = [r for r in records if r["gene_class"] == "unseen"]
    run.log(f"[train] multi-gene head: {len(records) - len(unseen)} seen and {len(unseen)} unseen genes evaluated")


def _write_method_predictions(run: Run, method: str, df: pl.DataFrame | None) -> None:
    if df is None:
        return
    df = df.with_columns(pl.col("sample").cast(pl.String), pl.col("prediction").cast(pl.Float64))
    atomic_write_parquet(df, run.path("stage_predictions", f"{method}.parquet"))


# ---------------------------------------------------------------------------- stubs replaced below
def _enet_config(cfg: Config, window: int):
    from expredict.baselines.enet import EnetConfig

    e = cfg.enet
    return EnetConfig(alpha=e.alpha, n_lambda=e.n_lambda, n_folds=e.n_folds, n_outer_folds=e.n_outer_folds,
                      nested_cv=e.nested_cv, maf_min=e.maf, drop_ambiguous=e.drop_ambiguous, backend=e.backend,
                      seed=cfg.seed, window=window, path_stop=e.path_stop)


def enet_gene_task(out_dir: str, variant: str, gene_id: str) -> dict:
    """Worker: fit one gene's elastic net from files (its cis window is read from the VCF here).

    Writes ``OUT/enet/<variant>/genes/<gene>.{summary.json,weights.parquet,cov.parquet,test.parquet}``;
    the summary file, written last, marks the gene done.
    """
    from threadpoolctl import threadpool_limits

    from expredict.baselines.enet import cis_window, fit_enet_gene
    from expredict.io.genotypes import read_genotypes

    out = Path(out_dir)
    cfg = _read_run_config(out)
    window = cfg.enet.window if variant == "enet" else int(cfg.enet.matched_window or 0)
    ecfg = _enet_config(cfg, window)
    genes = pl.read_parquet(out / "genes.parquet").filter(pl.col("gene_id") == gene_id)
    row = genes.row(0, named=True)
    samples, split, targets = read_targets(out)
    labels = np.array(split)
    train_idx, test_idx = np.flatnonzero(labels == "train"), np.flatnonzero(labels == "test")
    y = targets[gene_id].to_numpy()
    anchor = "gene" if variant == "enet" else "tss"
    lo, hi = cis_window(row["tss"], start=row["start"], end=row["end"], window=window, anchor=anchor)
    geno = read_genotypes(cfg.data.vcf, row["contig"], lo, hi, samples=samples)
    ok = np.isfinite(y[train_idx])
    with threadpool_limits(1):
        fit = fit_enet_gene(gene_id, geno, y[train_idx][ok], train_idx[ok], test_idx, config=ecfg,
                            y_test=y[test_idx], gene_name=row.get("gene_name") or gene_id)
    d = out / "enet" / variant / "genes"
    d.mkdir(parents=True, exist_ok=True)
    name = safe_name(gene_id)
    atomic_write_parquet(fit.weights, d / f"{name}.weights.parquet")
    atomic_write_parquet(fit.covariance, d / f"{name}.cov.parquet")
    atomic_write_parquet(pl.DataFrame({"gene_id": [gene_id] * len(test_idx), "sample": [samples[i] for i in test_idx],
                                       "prediction": np.asarray(fit.test_pred, np.float64)}), d / f"{name}.test.parquet")
    atomic_write_text(d / f"{name}.summary.json", json.dumps(fit.summary, default=_json_default))
    return {"gene_id": gene_id, "reason": fit.reason, "test_r": fit.summary.get("test_r"), "n_snps": fit.summary.get("n_snps_in_model")}


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def stage_enet(run: Run) -> dict:
    """PrediXcan elastic net per gene (+/- window of the TSS, and the sequence model's window when set).

    Exports ``OUT/enet/model.db`` (PredictDB) and ``OUT/enet/covariances.txt.gz`` for the main window.
    """
    from expredict.baselines.enet import EnetCohortResult

    variants = ["enet"] + (["enet_matched"] if run.config.enet.matched_window else [])
    genes = run.genes()["gene_id"].to_list()
    info: dict[str, Any] = {}
    for variant in variants:
        d = run.path("enet", variant, "genes")
        todo = [g for g in genes if not (d / f"{safe_name(g)}.summary.json").exists()]
        run.log(f"[enet] {variant}: {len(genes)} genes, {len(genes) - len(todo)} already fitted")
        progress = Progress(run.log, f"[enet] {variant}: genes fitted", len(todo))
        with run.executor() as ex:
            for rec in ex.map_unordered(functools.partial(enet_gene_task, str(run.out), variant), todo):
                if rec["reason"]:
                    run.log(f"[enet] {variant} {rec['gene_id']}: no model ({rec['reason']})")
                progress.step()
        done = [g for g in genes if (d / f"{safe_name(g)}.summary.json").exists()]
        summary = pl.DataFrame([json.loads((d / f"{safe_name(g)}.summary.json").read_text()) for g in done], infer_schema_length=None)
        weights = pl.concat([pl.read_parquet(d / f"{safe_name(g)}.weights.parquet") for g in done], how="diagonal_relaxed")
        cov = pl.concat([pl.read_parquet(d / f"{safe_name(g)}.cov.parquet") for g in done], how="diagonal_relaxed")
        preds = pl.concat([pl.read_parquet(d / f"{safe_name(g)}.test.parquet") for g in done])
        atomic_write_parquet(summary, run.path("enet", variant, "summary.parquet"))
        _write_method_predictions(run, variant, preds.filter(pl.col("prediction").is_not_nan()))
        n_model = int((summary["n_snps_in_model"] > 0).sum()) if "n_snps_in_model" in summary.columns else 0
        info[variant] = {"n_genes": len(done), "n_with_model": n_model}
        run.log(f"[enet] {variant}: {n_model} of {len(done)} genes have a model")
        if variant == "enet" and run.config.enet.export:
            cohort = EnetCohortResult(summary=summary, weights=weights, covariances=cov, test_predictions=pl.DataFrame(),
                                      config=_enet_config(run.config, run.config.enet.window),
                                      contig=",".join(sorted(run.genes()["contig"].unique().to_list())),
                                      n_train=int(summary["n_train"].max()) if "n_train" in summary.columns else 0)
            cohort.to_predictdb(str(run.path("enet", "model.db")), str(run.path("enet", "covariances.txt.gz")))
            run.log(f"[enet] PredictDB export: {run.path('enet', 'model.db')}, {run.path('enet', 'covariances.txt.gz')}")
    return info


def enformer_model_source(run: Run) -> str:
    """Hub id / directory of Enformer; builds the tiny stand-in under OUT/models when configured."""
    enf = run.config.enformer
    if not enf.tiny:
        return enf.model
    from expredict.baselines.enformer import make_tiny_enformer

    d = run.path("models", "tiny-enformer")
    if not (d / "config.json").exists():
        make_tiny_enformer(d)
    return str(d)


def stage_enformer(run: Run) -> dict:
    """Enformer CAGE readout on the personal center_tss haplotypes of the test individuals.

    Only test individuals are run (the untuned readout fits nothing); with ``enformer.tuned`` the
    training individuals are run too, for the linear map over all tracks.
    """
    from expredict.baselines.enformer import estimate_cpu_seconds, load_enformer, predict_enformer, tuned_enformer

    enf = run.config.enformer
    samples, split, _ = read_targets(run.out)
    keep = {"test", "train"} if enf.tuned else {"test"}
    chosen = [s for s, k in zip(samples, split, strict=True) if k in keep]
    genes = run.genes()
    half = enf.length // 2
    from expredict.cohort import genes_fitting_reference

    genes, dropped = genes_fitting_reference(genes, run.cohort.reference, half)
    if enf.max_genes is not None:
        genes = genes.head(enf.max_genes)
    model = load_enformer(enformer_model_source(run), device=enf.device)
    if model.device.type == "cpu" and not model.random_weights:
        est = estimate_cpu_seconds(genes.height * 2 * len(chosen), enf.length, full_size=True)
        run.log(f"[enformer] WARNING: full-size Enformer on CPU: roughly {est / 3600:.1f} h for at most "
                f"{genes.height * 2 * len(chosen)} haplotypes; use a GPU, a tiny model or fewer genes")
    run.log(f"[enformer] {genes.height} genes at {enf.length:,} bp ({len(dropped)} do not fit), {len(chosen)} individuals"
            + (f" [{RANDOM_WEIGHTS_NOTE}]" if model.random_weights else ""))
    cohort = run.cohort
    sub = {c: g.subset_samples(chosen) for c, g in cohort.genotypes.items()}
    hap_cfg = run.config.haplotypes

    def sets():
        from expredict.haplotypes import iter_unique_haplotypes

        for contig, part in genes.group_by("contig", maintain_order=True):
            yield from iter_unique_haplotypes(
                sub[contig[0]], cohort.reference, _regions(part, enf.length), mode="center_tss", length=enf.length,
                reverse_complement_minus=hap_cfg.reverse_complement_minus, unphased=hap_cfg.unphased,
                ref_mismatch=hap_cfg.ref_mismatch, snv_only=hap_cfg.snv_only,
            )

    res = predict_enformer(
        sets(), model, run.path("cache", "enformer"), track=enf.track, n_center_bins=enf.n_center_bins,
        target_length=None if enf.tiny else enf.target_length, rc_average=enf.rc_average, batch_size=enf.batch_size,
        return_features=enf.tuned,
    )
    preds = res.predictions
    if enf.tuned:
        _, _, targets = read_targets(run.out)
        long = targets.drop("split").unpivot(index="sample", variable_name="gene_id", value_name="expression")
        train = [s for s, k in zip(samples, split, strict=True) if k == "train"]
        preds = tuned_enformer(res.features, long, train, target_col="expression", random_state=run.config.seed)
    test = {s for s, k in zip(samples, split, strict=True) if k == "test"}
    preds = preds.filter(pl.col("sample").is_in(list(test)))
    run.path("enformer").mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.path("enformer", "metadata.json"), json.dumps(res.metadata, indent=2, default=str))
    _write_method_predictions(run, "enformer", preds)
    return {"n_genes": genes.height, "random_weights": bool(model.random_weights),
            "n_distinct": int(res.metadata.get("n_distinct", 0))}


def observed_test_targets(out: Path) -> pl.DataFrame:
    """Long ``gene_id, sample, observed``: the normalised targets of the test individuals."""
    _, _, targets = read_targets(out)
    test = targets.filter(pl.col("split") == "test").drop("split")
    return test.unpivot(index="sample", variable_name="gene_id", value_name="observed").select("gene_id", "sample", "observed")


def method_predictions(out: Path) -> dict[str, pl.DataFrame]:
    """Test-individual predictions of every method that has run, by method name."""
    found = {}
    for method in ("nt_head", "nt_head_multigene", "enet", "enet_matched", "enformer"):
        p = out / "stage_predictions" / f"{method}.parquet"
        if p.exists():
            found[method] = pl.read_parquet(p)
    return found


def random_weight_methods(out: Path) -> list[str]:
    """Methods whose model had random weights (labelled in every report)."""
    methods = []
    spec = out / "embed_spec.json"
    if spec.exists() and json.loads(spec.read_text()).get("random_weights"):
        methods += ["nt_head", "nt_head_multigene"]
    meta = out / "enformer" / "metadata.json"
    if meta.exists() and json.loads(meta.read_text()).get("random_weights"):
        methods.append("enformer")
    return methods


def stage_evaluate(run: Run) -> dict:
    """Per-gene metrics of every method on the same test individuals; metrics and prediction tables."""
    from expredict.evaluate import per_gene_metrics, summarize_methods
    from expredict.report import write_metrics

    observed = observed_test_targets(run.out)
    preds = method_predictions(run.out)
    if not preds:
        msg = f"{run.out}: no method has predictions yet; run the train, enet or enformer stage first"
        raise ConfigError(msg)
    from expredict.splits import read_splits

    classes = read_splits(run.out).genes.select("gene_id", "gene_class")
    per_gene = pl.concat(
        [per_gene_metrics(df, observed, m, annotations=classes if m == "nt_head_multigene" else None) for m, df in preds.items()],
        how="diagonal_relaxed",
    )
    write_metrics(run.out, per_gene, preds)
    summary = summarize_methods(per_gene)
    for row in summary.iter_rows(named=True):
        label = " [random weights]" if row["method"] in random_weight_methods(run.out) else ""
        run.log(f"[evaluate] {row['method']}: {row['n_scored']} genes, mean r {row['mean_r']:.3f}, "
                f"median r {row['median_r']:.3f}, {100 * row['frac_r_negative']:.0f}% r < 0{label}")
    return {"methods": sorted(preds), "n_genes": int(per_gene["gene_id"].n_unique())}


def stage_report(run: Run) -> dict:
    """OUT/report.html and OUT/report.md."""
    from expredict.report import collect_versions, write_report

    per_gene = pl.read_parquet(run.path("metrics", "per_gene.parquet"))
    preds = method_predictions(run.out)
    observed = observed_test_targets(run.out)
    provenance = _provenance(run)
    notes = [
        "Metric: Pearson r between predicted and observed expression across the held-out test individuals, per gene "
        "(the same individuals for every method and gene).",
        "Observed values are the configured transform of expression, with covariates regressed out and z-scored "
        "using statistics of the training individuals only.",
        "Gene classes: this cohort is one population, so the new-population class is not available. Per-gene "
        "methods are trained on every gene ('seen genes, new individuals'). The multi-gene head (nt_head_multigene, "
        "when enabled) is trained on the 'seen' genes only; its 'unseen_genes' class holds genes in held-out "
        "contiguous position blocks of the chromosome (splits/genes.tsv), never trained on.",
    ]
    dropped = run.path("genes_dropped.parquet")
    if dropped.exists():
        n = pl.read_parquet(dropped).height
        if n:
            notes.append(f"{n} genes were dropped because their sequence window runs off the reference (listed in genes_dropped.parquet).")
    if run.config.enet.window and "enet" in preds:
        notes.append(f"Elastic net window: +/-{run.config.enet.window:,} bp around the TSS (the phenotype BED gives only the TSS).")
    enf_meta = run.path("enformer", "metadata.json")
    if enf_meta.exists():
        m = json.loads(enf_meta.read_text())
        notes.append(f"Enformer: {m.get('n_genes')} genes, input length {m.get('lengths')}, track {m.get('track')}, "
                     f"{m.get('n_center_bins')} centre bins.")
    path = write_report(
        run.out, per_gene, preds, observed, config_yaml=config_to_yaml(run.config), provenance=provenance,
        versions=collect_versions(), random_weight_methods=random_weight_methods(run.out), notes=notes,
    )
    run.log(f"[report] {path}")
    return {"report": str(path)}


def _provenance(run: Run) -> dict:
    d = run.config.data
    prov: dict[str, Any] = {k: str(getattr(d, k)) for k in ("vcf", "fasta", "genes", "expression", "covariates") if getattr(d, k)}
    for candidate in (Path(d.vcf).parent / "provenance.json",):
        if candidate.exists():
            prov["demo"] = json.loads(candidate.read_text())
    manifest = run.path(MANIFEST)
    if manifest.exists():
        stages = json.loads(manifest.read_text())
        prov["stages"] = {k: {"key": v.get("key"), "elapsed_s": v.get("elapsed_s")} for k, v in stages.items()}
    return prov


STAGE_FUNCS: dict[str, Callable[[Run], dict | None]] = {
    "prepare": stage_prepare,
    "haplotypes": stage_haplotypes,
    "embed": stage_embed,
    "train": stage_train,
    "enet": stage_enet,
    "enformer": stage_enformer,
    "evaluate": stage_evaluate,
    "report": stage_report,
}
