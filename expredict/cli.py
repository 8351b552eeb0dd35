"""Command-line interface: parse arguments, call the library, turn ExpredictError into one line.

Heavy imports (torch, numba, transformers) happen inside the commands, so ``expredict --help``
is instant. A failing import is not caught: a broken install shows its traceback. Library records
(``logging``) reach the console through :func:`expredict.logs.configure_logging`, called once
before any command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from expredict.errors import ExpredictError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Personalized gene-expression prediction.")
data_app = typer.Typer(no_args_is_help=True, help="Demo data.")
model_app = typer.Typer(no_args_is_help=True, help="Build tiny offline models of the real architectures.")
baseline_app = typer.Typer(no_args_is_help=True, help="Baselines: PrediXcan elastic net, Enformer.")
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(baseline_app, name="baseline")

ConfigArg = Annotated[Path, typer.Argument(help="YAML configuration file (see configs/).")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Override out_dir of the config.")]
GenesOpt = Annotated[str | None, typer.Option("--genes", help="Comma-separated gene IDs to restrict to.")]


def _load(config: Path, out: Path | None = None, genes: str | None = None):
    from expredict.config import load_config

    overrides: dict = {}
    if out is not None:
        overrides["out_dir"] = str(out.resolve())
    if genes:
        overrides["data.genes_subset"] = [g.strip() for g in genes.split(",") if g.strip()]
    return load_config(config, overrides)


@app.callback()
def _start() -> None:
    """Set up logging once, before any command (the run engine adds its log file itself)."""
    from expredict.logs import configure_logging

    configure_logging()


@data_app.command("fetch-demo")
def fetch_demo_cmd(
    data_dir: Annotated[Path, typer.Option(help="Where to put the demo cohort.")] = Path("data/demo"),
    fasta: Annotated[str | None, typer.Option(help="Use this GRCh37 FASTA instead of the shared/hisat2 one.")] = None,
) -> None:
    """Download and verify the GEUVADIS chr22 demo cohort (Debian qtltools-example) and its reference."""
    from expredict.demo import fetch_demo

    fetch_demo(data_dir, fasta)


@app.command("summarize")
def summarize_cmd(config: ConfigArg) -> None:
    """Load the cohort named by CONFIG, cross-check it, and print what is there."""
    from expredict.cohort import load_cohort, summarize

    typer.echo(summarize(load_cohort(_load(config))))


@app.command("haplotypes")
def haplotypes_cmd(
    vcf: Annotated[Path, typer.Option(help="Phased VCF/BCF (indexed).")],
    fasta: Annotated[Path, typer.Option(help="Reference FASTA.")],
    regions: Annotated[Path, typer.Option(help="BED (0-based half-open); 4th column = region name.")],
    out: Annotated[Path, typer.Option(help="Output FASTA.")],
    samples: Annotated[str | None, typer.Option(help="Comma-separated samples (default: all).")] = None,
    mode: Annotated[str, typer.Option(help="ragged | center_tss | left")] = "ragged",
    length: Annotated[int | None, typer.Option(help="Fixed output length (center_tss / left).")] = None,
    unique: Annotated[bool, typer.Option(help="Write each distinct sequence once plus a mapping table.")] = False,
    alias: Annotated[list[str] | None, typer.Option(help="Contig alias VCF=FASTA, e.g. chr22=22 (repeatable).")] = None,
    unphased: Annotated[str, typer.Option(help="ignore | iupac | error")] = "ignore",
    ref_mismatch: Annotated[str, typer.Option(help="error | skip")] = "error",
    threads: Annotated[int | None, typer.Option(help="Threads (default: all cores); output identical.")] = None,
) -> None:
    """Write per-individual haplotype sequences for BED regions (bcftools-consensus semantics).

    OUT ending in .gz is BGZF-compressed; outputs appear only when complete (atomic rename).
    """
    from expredict.haplotypes.fasta import write_haplotypes_fasta

    aliases = dict(a.split("=", 1) for a in (alias or []))
    stats = write_haplotypes_fasta(
        vcf,
        fasta,
        regions,
        out,
        samples=samples.split(",") if samples else None,
        mode=mode,
        length=length,
        unique=unique,
        aliases=aliases,
        unphased=unphased,
        ref_mismatch=ref_mismatch,
        threads=threads,
    )
    typer.echo(str(stats))
    typer.echo(stats.unphased_message())


@model_app.command("tiny-nt")
def tiny_nt_cmd(
    out: Annotated[Path, typer.Argument(help="Output directory.")],
    version: Annotated[str, typer.Option(help="v1 (ESM, 6-mer, abs. positions) or v2 (SwiGLU, rotary).")] = "v1",
) -> None:
    """Build a tiny random-weight Nucleotide Transformer of the exact v1/v2 architecture (offline tests/demo)."""
    from expredict.embed.model import make_tiny_nt

    typer.echo(str(make_tiny_nt(version, out)))


@model_app.command("tiny-enformer")
def tiny_enformer_cmd(out: Annotated[Path, typer.Argument(help="Output directory.")]) -> None:
    """Build a tiny random-weight Enformer (offline tests/demo)."""
    from expredict.baselines.enformer import make_tiny_enformer

    typer.echo(str(make_tiny_enformer(out)))


def _stage(stage: str, config: Path, out: Path | None, genes: str | None, **kw) -> None:
    from expredict.run import run_pipeline

    run_pipeline(_load(config, out, genes), stages=[stage], **kw)


@app.command("embed")
def embed_cmd(config: ConfigArg, out: OutOpt = None, genes: GenesOpt = None) -> None:
    """Embed every distinct haplotype of every gene with the frozen NT into the resumable cache."""
    _stage("embed", config, out, genes)


@app.command("train")
def train_cmd(config: ConfigArg, out: OutOpt = None, genes: GenesOpt = None) -> None:
    """Train one expression head per gene from the embedding cache."""
    _stage("train", config, out, genes)


@baseline_app.command("enet")
def enet_cmd(config: ConfigArg, out: OutOpt = None, genes: GenesOpt = None) -> None:
    """PrediXcan-style elastic net: fit, evaluate, export PredictDB .db and covariances."""
    _stage("enet", config, out, genes)


@baseline_app.command("enformer")
def enformer_cmd(config: ConfigArg, out: OutOpt = None, genes: GenesOpt = None) -> None:
    """Enformer CAGE readout on personal haplotypes of the test individuals."""
    _stage("enformer", config, out, genes)


@app.command("predict")
def predict_cmd(
    models: Annotated[Path, typer.Option(help="Run folder of a finished run (its trained/ models and config).")],
    vcf: Annotated[Path, typer.Option(help="VCF/BCF of the individuals to predict.")],
    out: Annotated[Path, typer.Option(help="Output prefix: writes OUT.parquet and OUT.tsv (genes x individuals).")],
    fasta: Annotated[Path | None, typer.Option(help="Reference FASTA (default: the run's).")] = None,
    samples: Annotated[str | None, typer.Option(help="Comma-separated samples (default: all).")] = None,
    method: Annotated[str, typer.Option(help="The run's method to predict with.")] = "nt_head",
) -> None:
    """Predict expression for new individuals with a run's trained models (default: the per-gene heads)."""
    from expredict.predict import predict_cohort

    path = predict_cohort(models, vcf, out, method=method, fasta=fasta, samples=samples.split(",") if samples else None)
    typer.echo(f"predictions: {path}")


@app.command("run")
def run_cmd(
    config: ConfigArg,
    out: OutOpt = None,
    genes: GenesOpt = None,
    stages: Annotated[str | None, typer.Option(help="Comma-separated subset of stages.")] = None,
    chunk: Annotated[str | None, typer.Option(help="i/N: run the i-th of N gene chunks (array jobs).")] = None,
    scheduler_address: Annotated[
        str | None, typer.Option(help="Dask scheduler address (implies the dask executor).")
    ] = None,
) -> None:
    """Run the whole pipeline: haplotypes, embeddings, head, elastic net, Enformer, evaluation, report."""
    from expredict.run import run_pipeline

    report = run_pipeline(
        _load(config, out, genes),
        stages=stages.split(",") if stages else None,
        chunk=chunk,
        scheduler_address=scheduler_address,
    )
    typer.echo(f"report: {report}")


def main() -> None:
    """Entry point: run the app; print ExpredictError as one line and exit 1."""
    try:
        app()
    except ExpredictError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
