"""Embedding throughput: NT-500M-1000g (v1) and NT-v2-500M, random weights, 6 kb / 12 kb, batch sweep.

Throughput does not depend on the weights, so models are randomly initialised from the published
configs (``expredict.embed.random_nt``). Reports sequences/s, tokens/s and model FLOP utilisation
(MFU) against a measured matmul peak (bf16 on CUDA, fp32 on CPU), plus tokenizer speed vs the stock
``EsmTokenizer`` and an end-to-end cache fill with and without haplotype deduplication.

Forward FLOPs per window of T tokens: ``2 * P_blocks * T + 4 * L * T^2 * d`` (dense matmuls +
attention scores and values; embeddings, norms and softmax are not counted).

Usage::

    python benchmarks/embed_throughput.py --device cuda                  # full-size sweep (GPU)
    python benchmarks/embed_throughput.py --device cpu --tiny --smoke    # CPU: tiny models + 1 full-size point

Prints a Markdown report; ``--json PATH`` also writes the raw records.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from expredict.cache import ArrayCache
from expredict.embed import Embedder, NTTokenizer, Pooling, embed_sequences, nt_vocab, random_nt

MODELS = {
    "NT-500M-1000g": "nucleotide-transformer-500m-1000g",
    "NT-v2-500M": "nucleotide-transformer-v2-500m-multi-species",
}
LENGTHS = {"6kb": 5994, "12kb": 11988}  # 5,994 bp = 999 6-mers + <cls> = one v1 window; 11,988 = two


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matmul FLOP/s (best of several runs)."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 20 if device.type == "cuda" else 5
    best = float("inf")
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def window_flops(p_blocks: int, n_layers: int, d: int, tokens: int) -> float:
    return 2.0 * p_blocks * tokens + 4.0 * n_layers * tokens**2 * d


def random_seqs(n: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGT", dtype=np.uint8)
    return [rng.choice(alphabet, size=length).tobytes().decode() for _ in range(n)]


def bench_model(name: str, label: str, args: argparse.Namespace, device: torch.device, peak: float) -> list[dict]:
    t0 = time.perf_counter()
    overrides = {}
    if args.tiny:
        overrides = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)
    loaded = random_nt(name, **overrides)
    init_s = time.perf_counter() - t0
    model = loaded.model
    p_blocks = sum(p.numel() for p in model.encoder.layer.parameters())
    info = loaded.info
    records = []
    for len_label in args.lengths:
        bp = LENGTHS[len_label]
        tokens_per_seq = int(loaded.tokenizer.count_tokens(["A" * bp])[0])
        tiles = -(-(tokens_per_seq - 1) // (info.max_tokens - 1))
        pooling = Pooling("tiles", n_tiles=tiles) if tiles > 1 else Pooling("mean")
        for bs in args.batches:
            emb = Embedder(loaded, layers=(info.n_layers * 5 // 6, -1), pooling=pooling, device=device, batch_size=bs)
            if device.type == "cuda":
                n_seq = max(bs * args.steps // tiles, 1)
            else:
                n_seq = max(bs * (2 if args.tiny else 1) // tiles, 1)
            seqs = random_seqs(n_seq, bp)
            try:
                if args.tiny or device.type == "cuda":
                    emb.embed(seqs[: max(1, bs // tiles)])  # warm-up
                _sync(device)
                t1 = time.perf_counter()
                emb.embed(seqs)
                _sync(device)
                dt_s = time.perf_counter() - t1
            except torch.OutOfMemoryError:
                records.append(dict(model=label, length=len_label, batch=bs, oom=True))
                torch.cuda.empty_cache()
                continue
            body, t_max = tokens_per_seq - 1, info.max_tokens - 1
            win_tokens = [min(t_max, body - i * t_max) + 1 for i in range(tiles)]  # each window has its <cls>
            flops = n_seq * sum(window_flops(p_blocks, info.n_layers, info.hidden_size, t) for t in win_tokens)
            rec = dict(
                model=label,
                arch=name,
                tiny=bool(args.tiny),
                params=info.n_params,
                length=len_label,
                bp=bp,
                windows_per_seq=tiles,
                tokens_per_seq=sum(win_tokens),
                batch=bs,
                n_seq=n_seq,
                seconds=dt_s,
                seq_per_s=n_seq / dt_s,
                tok_per_s=n_seq * sum(win_tokens) / dt_s,
                tflops=flops / dt_s / 1e12,
                mfu=flops / dt_s / peak,
                precision=emb.precision,
                init_s=init_s,
            )
            records.append(rec)
            print(json.dumps(rec), file=sys.stderr, flush=True)
    del loaded, model
    return records


def bench_tokenizer(n: int = 64) -> dict:
    from transformers import EsmTokenizer

    seqs = random_seqs(n, LENGTHS["6kb"], seed=1)
    tok = NTTokenizer("v1")
    with tempfile.TemporaryDirectory() as d:
        vocab = Path(d) / "vocab.txt"
        vocab.write_text("\n".join(nt_vocab("v1")) + "\n")
        stock = EsmTokenizer(str(vocab), eos_token=None, model_max_length=1000)
        k = 16
        t0 = time.perf_counter()
        ref = [stock(s)["input_ids"] for s in seqs[:k]]
        stock_s = (time.perf_counter() - t0) / k
    for _ in range(2):
        t0 = time.perf_counter()
        batch = tok.batch(seqs)
        ours_s = (time.perf_counter() - t0) / n
    assert all(batch.input_ids[i, : len(r)].tolist() == r for i, r in enumerate(ref))
    return dict(stock_seq_per_s=1 / stock_s, numpy_seq_per_s=1 / ours_s, speedup=stock_s / ours_s)


def bench_cohort(args: argparse.Namespace, device: torch.device) -> dict:
    """Tiny v1 model, n_samples x 2 haplotypes of one 6 kb window with n_distinct distinct sequences."""
    loaded = random_nt(
        MODELS["NT-500M-1000g"], hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256
    )
    base = random_seqs(1, LENGTHS["6kb"], seed=2)[0]
    rng = np.random.default_rng(3)
    distinct = []
    for _ in range(args.cohort_distinct):
        s = bytearray(base.encode())
        for pos in rng.integers(0, len(s), size=3):
            s[pos] = ord("ACGT"[rng.integers(4)])
        distinct.append(s.decode())
    haps = [distinct[i] for i in rng.integers(0, len(distinct), size=2 * args.cohort_samples)]
    emb = Embedder(loaded, layers=(1, -1), device=device, batch_size=16)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        cache = ArrayCache(d, emb.spec)
        stats = embed_sequences(haps, cache, emb, progress=False)
        out["dedup_s"] = stats.seconds
        out["n_haplotypes"], out["n_distinct"] = stats.n_input, stats.n_unique
    t0 = time.perf_counter()
    emb.embed(haps)
    out["no_dedup_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--lengths", nargs="+", default=list(LENGTHS), choices=list(LENGTHS))
    ap.add_argument("--batches", nargs="+", type=int, default=None)
    ap.add_argument("--steps", type=int, default=8, help="batches timed per point on CUDA")
    ap.add_argument("--tiny", action="store_true", help="tiny (h64, 2 layers) models of the same families")
    ap.add_argument("--smoke", action="store_true", help="add one full-size NT-500M-1000g 6 kb batch-1 point")
    ap.add_argument("--cohort-samples", type=int, default=200)
    ap.add_argument("--cohort-distinct", type=int, default=16)
    ap.add_argument("--no-cohort", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from expredict.embed import resolve_device

    device = resolve_device(args.device)
    if args.batches is None:
        args.batches = [1, 2, 4, 8, 16, 32, 64] if device.type == "cuda" else [1, 4, 16]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = peak_flops(device, dtype)
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}"
    header = dict(
        date=dt.date.today().isoformat(),
        device=hw,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        peak_tflops=peak / 1e12,
        peak_dtype=str(dtype),
        command=" ".join(["python", "benchmarks/embed_throughput.py", *(argv or sys.argv[1:])]),
    )
    records: list[dict] = []
    for label in args.models:
        records += bench_model(MODELS[label], label + (" (tiny)" if args.tiny else ""), args, device, peak)
    if args.smoke:
        smoke = argparse.Namespace(**{**vars(args), "tiny": False, "lengths": ["6kb"], "batches": [1]})
        records += bench_model(MODELS["NT-500M-1000g"], "NT-500M-1000g (full size)", smoke, device, peak)
    tok = bench_tokenizer()
    cohort = None if args.no_cohort else bench_cohort(args, device)

    print(f"- date {header['date']}; device {hw}; torch {header['torch']}; threads {header['threads']}")
    print(f"- measured matmul peak: {peak / 1e12:.3f} TFLOP/s ({dtype})")
    print(f"- command: `{header['command']}`\n")
    print("| model | input | windows x tokens | batch | seq/s | tokens/s | TFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        if r.get("oom"):
            print(f"| {r['model']} | {r['length']} | | {r['batch']} | OOM | | | |")
            continue
        print(
            f"| {r['model']} | {r['length']} ({r['bp']:,} bp) | {r['windows_per_seq']} x "
            f"{r['tokens_per_seq'] // r['windows_per_seq']} | {r['batch']} | {r['seq_per_s']:.2f} | "
            f"{r['tok_per_s']:,.0f} | {r['tflops']:.3f} | {100 * r['mfu']:.1f}% |"
        )
    print(
        f"\nTokenizer (64 x 5,994 bp, v1): stock EsmTokenizer {tok['stock_seq_per_s']:,.0f} seq/s, "
        f"numpy {tok['numpy_seq_per_s']:,.0f} seq/s ({tok['speedup']:.0f}x), ids identical."
    )
    if cohort:
        print(
            f"\nCohort fill (tiny v1, {cohort['n_haplotypes']} haplotypes of one 6 kb window, "
            f"{cohort['n_distinct']} distinct): with dedup + cache {cohort['dedup_s']:.2f} s, "
            f"without dedup {cohort['no_dedup_s']:.2f} s."
        )
    if args.json:
        args.json.write_text(json.dumps(dict(header=header, records=records, tokenizer=tok, cohort=cohort), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
