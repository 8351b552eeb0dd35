"""Enformer baseline throughput: tiny model on CPU, full-size random-weight model on CPU and GPU.

Usage::

    python benchmarks/enformer_bench.py cpu-tiny            # tiny model, 16/24/196 kb windows
    python benchmarks/enformer_bench.py cpu-full            # one full-size fp32 forward (~1-2 min)
    python benchmarks/enformer_bench.py gpu-full --batch-sizes 1 2 4 8 16   # bf16 autocast sweep
    python benchmarks/enformer_bench.py all --json out.json

Throughput does not depend on the weights, so the full-size runs use random weights (the
official architecture, ``use_tf_gamma=True`` as with the real weights at 196,608 bp). The
``tiny`` rows time the library path (``readout_vectors``: one-hot, forward, centre-bin readout,
no cache) on random sequences; the ``full`` rows time the forward pass alone (plus the readout
on GPU). Effective TFLOP/s uses 3.29 TFLOP per 196,608-bp sequence (torch FlopCounter).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from expredict.baselines import enformer as E  # noqa: E402


def _seqs(n: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    return [letters[rng.integers(0, 4, length)].tobytes().decode() for _ in range(n)]


def bench_cpu_tiny(lengths: list[int], n_seqs: int, batch_size: int, tmp: Path) -> list[dict]:
    model = E.load_enformer(E.make_tiny_enformer(tmp / "tiny"), device="cpu")
    rows = []
    for length in lengths:
        seqs = _seqs(n_seqs, length)
        E.readout_vectors(seqs[:1], model, progress=False)  # warm-up
        t0 = time.perf_counter()
        E.readout_vectors(seqs, model, batch_size=batch_size, progress=False)
        dt = time.perf_counter() - t0
        rows.append(
            {
                "model": "tiny (1.3 M params, random)",
                "device": "cpu",
                "length": length,
                "target_length": -1,
                "batch_size": batch_size,
                "n_seqs": n_seqs,
                "seconds": round(dt, 3),
                "seq_per_s": round(n_seqs / dt, 3),
                "s_per_seq": round(dt / n_seqs, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _full_model(device: torch.device) -> torch.nn.Module:
    from enformer_pytorch.modeling_enformer import Attention

    torch.manual_seed(0)
    m = E._new_enformer(output_heads={"human": E.N_HUMAN_TRACKS}).eval()
    for mod in m.modules():
        if isinstance(mod, Attention):
            mod.use_tf_gamma = True
    return m.to(device)


def bench_cpu_full(n_seqs: int) -> list[dict]:
    t0 = time.perf_counter()
    m = _full_model(torch.device("cpu"))
    build = time.perf_counter() - t0
    x = torch.from_numpy(E.one_hot_encode(_seqs(n_seqs, E.SEQUENCE_LENGTH)))
    times = []
    with torch.inference_mode():
        for i in range(n_seqs):
            t0 = time.perf_counter()
            out = m(x[i : i + 1], head="human")
            times.append(time.perf_counter() - t0)
    row = {
        "model": "full (251 M params, random, fp32)",
        "device": "cpu",
        "length": E.SEQUENCE_LENGTH,
        "target_length": 896,
        "batch_size": 1,
        "n_seqs": n_seqs,
        "build_s": round(build, 1),
        "s_per_seq": round(float(np.mean(times)), 1),
        "seq_per_s": round(1 / float(np.mean(times)), 4),
        "out_shape": list(out.shape),
    }
    print(json.dumps(row), flush=True)
    return [row]


def bench_gpu_full(batch_sizes: list[int], n_batches: int) -> list[dict]:
    if not torch.cuda.is_available():
        print("gpu-full: no CUDA device; skipped", flush=True)
        return []
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    m = _full_model(dev)
    model = E.EnformerModel(m, "random-full", True, "random-full-seed0", use_tf_gamma=True)
    rows = []
    for bs in batch_sizes:
        x = torch.from_numpy(E.one_hot_encode(_seqs(bs, E.SEQUENCE_LENGTH))).to(dev)
        try:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                for _ in range(2):  # warm-up
                    m(x, head="human")
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                for _ in range(n_batches):
                    m(x, head="human")
                torch.cuda.synchronize()
                dt = time.perf_counter() - t0
        except torch.OutOfMemoryError:
            print(json.dumps({"batch_size": bs, "error": "out of memory"}), flush=True)
            torch.cuda.empty_cache()
            break
        n = bs * n_batches
        # library path (one-hot on host + transfer + forward + readout), same batch size
        seqs = _seqs(bs * 2, E.SEQUENCE_LENGTH, seed=1)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        E.readout_vectors(seqs, model, batch_size=bs, progress=False)
        torch.cuda.synchronize()
        lib = (time.perf_counter() - t1) / len(seqs)
        rows.append(
            {
                "model": "full (251 M params, random, bf16 autocast)",
                "device": torch.cuda.get_device_name(),
                "length": E.SEQUENCE_LENGTH,
                "batch_size": bs,
                "n_seqs": n,
                "seq_per_s": round(n / dt, 2),
                "eff_tflops": round(n * E.FULL_SIZE_TFLOP / dt, 1),
                "library_seq_per_s": round(1 / lib, 2),
                "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["cpu-tiny", "cpu-full", "gpu-full", "all"])
    ap.add_argument("--lengths", type=int, nargs="+", default=[16_384, 24_576, E.SEQUENCE_LENGTH])
    ap.add_argument("--n-seqs", type=int, default=8, help="sequences per tiny measurement")
    ap.add_argument("--tiny-batch-size", type=int, default=2)
    ap.add_argument("--full-cpu-seqs", type=int, default=1)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--gpu-batches", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None, help="write all rows here")
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/expredict_enformer_bench"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {platform.processor() or platform.machine()}",
        flush=True,
    )
    rows: list[dict] = []
    if args.what in ("cpu-tiny", "all"):
        rows += bench_cpu_tiny(args.lengths, args.n_seqs, args.tiny_batch_size, args.tmp)
    if args.what in ("cpu-full", "all"):
        rows += bench_cpu_full(args.full_cpu_seqs)
    if args.what in ("gpu-full", "all"):
        rows += bench_gpu_full(args.batch_sizes, args.gpu_batches)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
