"""The run engine: a stage is one record, and one loop runs (or resumes) them in order.

A :class:`Stage` names what it needs, the configuration it depends on and an explicit version;
its key is the digest of those, of its inputs' fingerprints (through ``key_parts``) and of the
keys of the stages it needs. ``OUT/manifest.json`` records the key each stage finished with: a
stage whose key is unchanged is skipped, one whose key changed starts afresh (its outputs
cleared). Per-gene outputs are written one gene at a time, so a killed stage resumes where it
stopped. Stages that score methods (``scores_methods``) also key on which method stages have
finished, so adding a method re-runs evaluation and the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from expredict.config import Config, config_to_yaml
from expredict.errors import ConfigError
from expredict.run.layout import RunDir

_log = logging.getLogger(__name__)


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


@dataclass
class RunContext:
    """What every stage gets: the configuration, the run folder, the gene selection and the cohort."""

    config: Config
    out: RunDir
    genes_subset: list[str] | None = None
    chunk: tuple[int, int] | None = None
    scheduler_address: str | None = None
    _cohort: Any = None

    @property
    def partial(self) -> bool:
        """True when only some genes run (``--genes`` / ``--chunk``): per-gene stages stay incomplete."""
        return bool(self.genes_subset or self.chunk)

    @property
    def cohort(self):
        """The cohort, loaded on first use (a fully cached run never parses the VCF)."""
        if self._cohort is None:
            from expredict.cohort import load_cohort

            self._cohort = load_cohort(self.config)
        return self._cohort

    def genes(self) -> pl.DataFrame:
        """The run's genes after ``--genes`` / ``--chunk``."""
        genes = self.out.read_genes()
        if self.genes_subset:
            known = set(genes["gene_id"].to_list())
            unknown = [g for g in self.genes_subset if g not in known]
            if unknown:
                why = self.out.read_dropped_genes().get(unknown[0], "not in the expression matrix and gene table")
                msg = (
                    f"--genes: {len(unknown)} gene(s) cannot be run, e.g. {unknown[0]}: {why}; the run's genes "
                    f"are listed in {self.out.path('genes.parquet')}"
                )
                raise ConfigError(msg)
            genes = genes.filter(pl.col("gene_id").is_in(self.genes_subset))
        if self.chunk:
            i, n = self.chunk
            bounds = np.linspace(0, genes.height, n + 1).astype(int)
            genes = genes.slice(bounds[i - 1], bounds[i] - bounds[i - 1])
        return genes

    def executor(self):
        """The configured executor (local process pool or Dask): the one gene fan-out."""
        from expredict.executor import get_executor

        ex = self.config.executor
        backend = "dask" if self.scheduler_address else ex.backend
        return get_executor(backend, ex.n_workers, scheduler_address=self.scheduler_address or ex.scheduler_address)


@dataclass(frozen=True)
class Stage:
    """One step of the run.

    ``needs``: stages whose outputs it reads (run first when stale); ``version``: bumped by hand
    when the stage's results change for the same configuration; ``key_parts``: the configuration
    and input fingerprints its results depend on; ``outputs``: entries under ``OUT/`` cleared
    when it starts afresh; ``methods``: the methods whose predictions it writes; ``per_gene``:
    works gene by gene (partial under ``--genes``/``--chunk``); ``enabled``: whether a plain
    ``expredict run`` includes it; ``scores_methods``: keyed on the finished method stages;
    ``check``: validates the configuration before any stage runs (a ConfigError naming the key).
    """

    name: str
    run: Callable[[RunContext], dict | None]
    version: int
    key_parts: Callable[[Config], Any]
    needs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    per_gene: bool = False
    enabled: Callable[[Config], bool] = field(default=lambda config: True)
    scores_methods: bool = False
    check: Callable[[Config], None] | None = None


def stage_keys(stages: Sequence[Stage], config: Config) -> dict[str, str]:
    """The content key of every stage (what, if changed, forces it to run again)."""
    keys: dict[str, str] = {}
    for s in stages:
        keys[s.name] = digest([s.name, s.version, [keys[n] for n in s.needs], s.key_parts(config)])
    return keys


def _with_prerequisites(wanted: Sequence[str], by_name: dict[str, Stage]) -> set[str]:
    need: set[str] = set()
    stack = list(wanted)
    while stack:
        s = stack.pop()
        if s not in need:
            need.add(s)
            stack.extend(by_name[s].needs)
    return need


def run_stages(
    stages: Sequence[Stage],
    config: Config,
    wanted: Sequence[str] | None = None,
    *,
    chunk: str | None = None,
    scheduler_address: str | None = None,
) -> RunContext:
    """Run (or resume) ``wanted`` stages (default: every enabled one) and the stages they need."""
    by_name = {s.name: s for s in stages}
    if wanted:
        unknown = [s for s in wanted if s not in by_name]
        if unknown:
            msg = f"unknown stage(s) {unknown}; choose from {', '.join(by_name)}"
            raise ConfigError(msg)
        targets = list(wanted)
    else:
        targets = [s.name for s in stages if s.enabled(config)]
    needed = _with_prerequisites(targets, by_name)
    for stage in stages:
        if stage.name in needed and stage.check is not None:
            stage.check(config)
    out = RunDir(config.out_dir)
    manifest = out.read_manifest()["stages"]
    ctx = RunContext(config, out, config.data.genes_subset, parse_chunk(chunk), scheduler_address)
    out.write_config(config_to_yaml(config))
    if ctx.partial:
        ctx.config = config.model_copy(update={"data": config.data.model_copy(update={"genes_subset": None})})
    keys = stage_keys(stages, config)
    effective: dict[str, str] = {}  # the key each stage finishes with, in stage order
    t_all = time.perf_counter()
    for stage in stages:
        key = keys[stage.name]
        if stage.scores_methods:  # also keyed on the method stages before it that have finished, and how
            finished = {s.name: effective[s.name] for s in stages[: len(effective)]
                        if s.methods and _done(manifest, s.name, effective[s.name])}
            key = digest([key, finished])
        effective[stage.name] = key
        if stage.name not in needed:
            continue
        partial = ctx.partial and stage.per_gene
        if _done(manifest, stage.name, key) and not partial:
            _log.info(f"[{stage.name}] up to date (key {key}), skipped")
            continue
        started = manifest.get(stage.name, {}).get("key")
        if started not in (None, key):
            _log.info(f"[{stage.name}] settings changed since the last run: starting this stage afresh")
            out.clear(stage.outputs)
            for method in stage.methods:
                out.remove_predictions(method)
        _log.info(f"[{stage.name}] running")
        t0 = time.perf_counter()
        _mark(out, manifest, stage.name, key, complete=False)
        info = stage.run(ctx) or {}
        elapsed = time.perf_counter() - t0
        _mark(out, manifest, stage.name, key, complete=not partial, elapsed_s=round(elapsed, 2), stats=info)
        _log.info(f"[{stage.name}] done in {elapsed:.1f} s")
    _log.info(f"pipeline finished in {time.perf_counter() - t_all:.1f} s; outputs in {out.root}")
    return ctx


def _done(manifest: dict[str, Any], stage: str, key: str) -> bool:
    rec = manifest.get(stage)
    return bool(rec and rec.get("key") == key and rec.get("complete"))


def _mark(out: RunDir, manifest: dict[str, Any], stage: str, key: str, *, complete: bool, **info: Any) -> None:
    manifest[stage] = {"key": key, "complete": complete, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    out.write_manifest(manifest)
