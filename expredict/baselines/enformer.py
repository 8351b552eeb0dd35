"""Enformer baseline on personal haplotype sequences (Huang et al. 2023 / Sasse et al. 2023 readout).

Pipeline, per gene: the haplotype engine yields the distinct fixed-length haplotypes of the TSS
window (``center_tss`` mode: the TSS base at 0-based index ``L // 2``) and an ``int32`` index
``(n_samples, 2)`` into them. Each distinct sequence is one-hot encoded (A, C, G, T; N and
anything else all zeros), run through Enformer (optionally averaged with its reverse complement),
and reduced to a **readout vector**: the sum over the centre output bins of all human tracks, for
each width in :data:`READOUT_WIDTHS` (3 and 10 bins). Readout vectors are cached per sequence
hash and model spec (:class:`expredict.cache.ArrayCache`), so a re-run, another track or another
width needs no model call. One track and width is then selected, and each individual's value is
the mean of its two haplotypes' values.

Bin arithmetic (:func:`output_bins`): the trunk pools the input ``2 ** 7 = 128``-fold, so an
input of ``L`` bp (a multiple of 128) gives ``L / 128`` bins; ``target_length`` ``T`` crops them
to the central ``T`` (``-1``: no crop). For the official ``L = 196,608``, ``T = 896``: the bins
cover the central 114,688 bp, bin 0 starts at input position 40,960, and the TSS at index
98,304 is the first base of **bin 448**; the 3 centre bins are 447-449 and the 10 centre bins
443-452 (centred on the TSS base's left edge).

Versions: expredict pins ``enformer-pytorch==0.8.11`` because 0.8.12 requires
``transformers[torch]==4.56.2`` (installing it silently downgrades transformers), while
expredict needs transformers 5.x for the Nucleotide Transformer. With 0.8.11 and transformers
5.23 two things are broken and worked around here:

- ``Enformer.save_pretrained`` raises ``RuntimeError: ... shared tensors ...`` (the ``stem`` and
  ``_trunk.*`` modules alias each other). :func:`save_enformer` writes
  ``config.save_pretrained(d)`` plus ``torch.save`` of the state dict minus the ``_trunk.`` aliases
  into ``d/pytorch_model.bin``.
- ``Enformer.from_pretrained`` (hence the module-level ``enformer_pytorch.from_pretrained``, which
  calls it) raises ``AttributeError: 'Enformer' object has no attribute 'all_tied_weights_keys'``
  because ``Enformer.__init__`` never calls ``post_init()``. :func:`load_enformer` therefore does
  what the module-level ``from_pretrained`` does by hand: read ``config.json``, build the model,
  load the state dict strictly (only the ``_trunk.`` aliases may be absent) and set
  ``use_tf_gamma=True`` on every attention module for the official weights. The TensorFlow gamma
  positional features match the official weights (enformer-pytorch issue #31) but exist only for
  a 1,536-position trunk, i.e. 196,608-bp inputs.

Random-weight models (the tiny test/demo architecture, :data:`TINY_HPARAMS`) are labelled:
``random_weights=True`` in :class:`EnformerModel`, in the cache spec and in the result metadata.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import polars as pl
import torch
from numpy.typing import NDArray

from expredict.cache import ArrayCache, sequence_hash
from expredict.device import resolve_device
from expredict.errors import ModelLoadError
from expredict.logs import Progress

__all__ = [
    "BIN_SIZE",
    "FULL_SIZE_TFLOP",
    "N_HUMAN_TRACKS",
    "OFFICIAL_HUB_ID",
    "READOUT_WIDTHS",
    "SEQUENCE_LENGTH",
    "TARGET_LENGTH",
    "TINY_HPARAMS",
    "TRACK_CAGE_BRAIN",
    "TRACK_CAGE_GM12878",
    "EnformerModel",
    "EnformerResult",
    "HaplotypeSetLike",
    "OutputBins",
    "average_haplotypes",
    "center_bin_slice",
    "enformer_cache_spec",
    "estimate_cpu_seconds",
    "load_enformer",
    "make_tiny_enformer",
    "one_hot_encode",
    "output_bins",
    "predict_enformer",
    "readout_vectors",
    "resolve_device",
    "save_enformer",
    "select_readout",
    "tuned_enformer",
    "weights_fingerprint",
]

_log = logging.getLogger(__name__)

SEQUENCE_LENGTH = 196_608
"""Input length (bp) of the official Enformer; the only length valid with TF gamma features."""
TARGET_LENGTH = 896
"""Output bins of the official Enformer (central 114,688 bp)."""
BIN_SIZE = 128
"""bp per output bin (``2 ** num_downsamples`` with the default 7 downsamples)."""
N_HUMAN_TRACKS = 5313
"""Human output tracks of the official Enformer."""
TRACK_CAGE_GM12878 = 5110
"""Track index of "CAGE: B lymphoblastoid cell line: GM12878" (LCL, GEUVADIS)."""
TRACK_CAGE_BRAIN = 4980
"""Track index of "CAGE: brain, adult" (ROSMAP)."""
READOUT_WIDTHS = (3, 10)
"""Centre-bin window widths stored per sequence in the cache (Sasse/Huang ``tss3``, ``tss10``)."""
FULL_SIZE_TFLOP = 3.29
"""Forward TFLOP of the full model per 196,608-bp sequence (counted with torch's FlopCounterMode)."""
OFFICIAL_HUB_ID = "EleutherAI/enformer-official-rough"
"""Hub id of the official weights ported from TensorFlow."""
TINY_HPARAMS: dict[str, Any] = {
    "dim": 96,
    "depth": 1,
    "heads": 2,
    "attn_dim_key": 16,
    "dim_divisible_by": 16,
    "output_heads": {"human": N_HUMAN_TRACKS},
    "target_length": -1,
}
"""Tiny Enformer architecture (1.3 M parameters, real layer types) for tests and the CPU demo."""

_RANDOM_FLAG = "expredict_random_weights"  # extra key written into config.json of random models
_CACHE_SPEC_VERSION = 1
_OFFICIAL_ARCH = {"dim": 1536, "depth": 11, "heads": 8, "num_downsamples": 7}

# CPU cost model, seconds per sequence = a + b * length, measured with 2 threads (benchmarks/RESULTS.md)
_CPU_COST = {"full": (0.0, 76.0 / SEQUENCE_LENGTH), "tiny": (0.21, 1.6e-5)}
_CPU_COST_THREADS = 2

_ONE_HOT = np.zeros((256, 4), dtype=np.float32)
for _i, _b in enumerate("ACGT"):
    _ONE_HOT[ord(_b), _i] = 1.0
    _ONE_HOT[ord(_b.lower()), _i] = 1.0


# ---------------------------------------------------------------------------- inputs
def one_hot_encode(seqs: str | Sequence[str]) -> NDArray[np.float32]:
    """One-hot encode DNA in Enformer's channel order A, C, G, T.

    Parameters
    ----------
    seqs : str or sequence of str
        One sequence, or several of equal length. Case is ignored; ``N`` and any other character
        (IUPAC codes, ``-``, non-ASCII) encode as all zeros.

    Returns
    -------
    ndarray of float32, shape (L, 4) for one sequence or (n, L, 4) for a sequence of them.
    """
    if isinstance(seqs, str):
        return _ONE_HOT[np.frombuffer(seqs.encode("latin-1", errors="replace"), dtype=np.uint8)]
    seqs = list(seqs)
    if not seqs:
        return np.zeros((0, 0, 4), dtype=np.float32)
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        msg = f"one_hot_encode needs sequences of one length; got lengths {sorted(lengths)[:5]}"
        raise ValueError(msg)
    buf = np.frombuffer("".join(seqs).encode("latin-1", errors="replace"), dtype=np.uint8)
    return _ONE_HOT[buf].reshape(len(seqs), lengths.pop(), 4)


class OutputBins(NamedTuple):
    """Where Enformer's output bins lie on its input (0-based input coordinates).

    ``n_bins`` output bins of ``bin_size`` bp; bin 0 starts at input position ``start``; the TSS
    (input index ``length // 2``) falls in bin ``tss_bin``.
    """

    n_bins: int
    start: int
    tss_bin: int
    bin_size: int


def output_bins(length: int, target_length: int = TARGET_LENGTH, bin_size: int = BIN_SIZE) -> OutputBins:
    """Bin arithmetic of Enformer's trunk and ``TargetLengthCrop`` for an input of ``length`` bp.

    Parameters
    ----------
    length : int
        Input length in bp; must be a positive multiple of ``bin_size``.
    target_length : int, default 896
        Output bins kept by the centre crop, or ``-1`` for no crop (``length / bin_size`` bins).
    bin_size : int, default 128
        Pooling factor of the trunk (``2 ** num_downsamples``).

    Returns
    -------
    OutputBins
        For ``length=196_608, target_length=896``: ``OutputBins(896, 40960, 448, 128)``.
    """
    if length <= 0 or length % bin_size:
        msg = f"Enformer input length must be a positive multiple of {bin_size} bp; got {length}"
        raise ValueError(msg)
    n = length // bin_size
    start_bin = 0
    if target_length != -1:
        if target_length <= 0:
            msg = f"target_length must be -1 or >= 1; got {target_length}"
            raise ValueError(msg)
        if n < target_length:
            msg = f"an input of {length} bp gives {n} bins, fewer than target_length {target_length}"
            raise ValueError(msg)
        trim = (target_length - n) // 2  # mirrors TargetLengthCrop: x[:, -trim:trim]
        if trim != 0:
            start_bin, n = -trim, n + 2 * trim
    start = start_bin * bin_size
    return OutputBins(n, start, (length // 2 - start) // bin_size, bin_size)


def center_bin_slice(
    length: int, n_center_bins: int = 3, target_length: int = TARGET_LENGTH, bin_size: int = BIN_SIZE
) -> slice:
    """Output bins summed by the readout: ``n_center_bins`` bins centred on the TSS bin.

    The window is ``[tss_bin - n_center_bins // 2, tss_bin - n_center_bins // 2 + n_center_bins)``:
    bins 447-449 for 3 and 443-452 for 10 with the official 196,608 bp / 896 bins.
    """
    if n_center_bins < 1:
        msg = f"n_center_bins must be >= 1; got {n_center_bins}"
        raise ValueError(msg)
    ob = output_bins(length, target_length, bin_size)
    lo = ob.tss_bin - n_center_bins // 2
    if lo < 0 or lo + n_center_bins > ob.n_bins:
        msg = (
            f"{n_center_bins} centre bins do not fit in the {ob.n_bins} output bins of a {length}-bp input "
            f"(target_length {target_length}); use a longer input"
        )
        raise ValueError(msg)
    return slice(lo, lo + n_center_bins)


# ---------------------------------------------------------------------------- model
@dataclass(frozen=True)
class EnformerModel:
    """A loaded Enformer (or any module with its input/output contract) plus what identifies it.

    ``module`` maps a float one-hot ``(B, L, 4)`` tensor to ``(B, n_bins, n_tracks)`` (called with
    ``head=head`` when ``head`` is not None). ``fingerprint`` identifies the weights in cache keys.
    """

    module: torch.nn.Module
    source: str
    random_weights: bool
    fingerprint: str
    use_tf_gamma: bool = False
    target_length: int = TARGET_LENGTH
    bin_size: int = BIN_SIZE
    n_tracks: int = N_HUMAN_TRACKS
    head: str | None = "human"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Device of the module's first parameter (CPU for a parameter-free module)."""
        p = next(iter(self.module.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable identity of the model, for cache keys and result metadata."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "random_weights": self.random_weights,
            "use_tf_gamma": self.use_tf_gamma,
            "target_length": self.target_length,
            "bin_size": self.bin_size,
            "n_tracks": self.n_tracks,
            "head": self.head,
        }


def weights_fingerprint(module: torch.nn.Module) -> str:
    """blake2b digest (32 hex) of a module's state dict: names, dtypes, shapes and bytes.

    ``_trunk.*`` keys (aliases of the stem/tower/transformer in enformer-pytorch) are skipped, so
    a model and its reload through :func:`save_enformer` / :func:`load_enformer` agree.
    """
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(module.state_dict().items()):
        if name.startswith("_trunk."):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _new_enformer(**hparams: Any) -> torch.nn.Module:
    from enformer_pytorch import Enformer

    return Enformer.from_hparams(**hparams)


def save_enformer(module: torch.nn.Module, out_dir: str | Path, *, random_weights: bool = False) -> Path:
    """Save an enformer-pytorch model so that :func:`load_enformer` restores it exactly.

    Works around ``save_pretrained`` failing on transformers 5 (shared ``_trunk`` tensors):
    ``config.json`` via ``config.save_pretrained`` and ``pytorch_model.bin`` = ``torch.save`` of
    the state dict without the ``_trunk.`` aliases. ``random_weights=True`` records in the config
    that the weights are untrained, so every later load is labelled as such.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = module.config
    setattr(config, _RANDOM_FLAG, bool(random_weights))
    config.save_pretrained(out)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items() if not k.startswith("_trunk.")}
    tmp = out / ".pytorch_model.bin.tmp"
    torch.save(state, tmp)
    tmp.replace(out / "pytorch_model.bin")
    return out


def make_tiny_enformer(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny random-weight Enformer (:data:`TINY_HPARAMS`, seeded) and save it to ``out_dir``.

    Returns ``out_dir``; load it with :func:`load_enformer` (its outputs are labelled
    ``random_weights=True``). The architecture is the real one at small width, so shapes, bins and
    code paths match the full model; the predictions are meaningless.
    """
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        module = _new_enformer(**TINY_HPARAMS)
    finally:
        torch.random.set_rng_state(gen_state)
    return save_enformer(module.eval(), out_dir, random_weights=True)


def _resolve_weights_dir(hub_id_or_dir: str | Path) -> Path:
    path = Path(hub_id_or_dir).expanduser()
    if path.is_dir():
        return path
    name = str(hub_id_or_dir)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        msg = f"Enformer weights: {name!r} is not a directory with config.json + pytorch_model.bin, nor a hub id"
        raise ModelLoadError(msg)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["config.json", "*.bin", "*.safetensors", "*.json"]))
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        msg = (
            f"could not fetch Enformer weights {name!r} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
            "download them once (huggingface-cli download) and pass the local directory"
        )
        raise ModelLoadError(msg) from exc


def _read_state_dict(d: Path) -> dict[str, torch.Tensor]:
    st = sorted(d.glob("*.safetensors"))
    bins = sorted(d.glob("pytorch_model*.bin"))
    if not st and not bins:
        msg = f"Enformer weights: {d} has no pytorch_model.bin or *.safetensors"
        raise ModelLoadError(msg)
    state: dict[str, torch.Tensor] = {}
    try:
        if st:
            from safetensors.torch import load_file

            for f in st:
                state.update(load_file(str(f)))
        else:
            for f in bins:
                state.update(torch.load(f, map_location="cpu", weights_only=True))
    except Exception as exc:
        msg = f"Enformer weights in {d} are unreadable ({type(exc).__name__}: {exc})"
        raise ModelLoadError(msg) from exc
    return state


def load_enformer(
    hub_id_or_dir: str | Path = OFFICIAL_HUB_ID,
    *,
    use_tf_gamma: bool | None = None,
    device: str | torch.device | None = "auto",
) -> EnformerModel:
    """Load enformer-pytorch weights exactly, from a local directory or a hub id.

    Equivalent to the module-level ``enformer_pytorch.from_pretrained`` (which crashes on
    transformers 5.23, see the module docstring): config + state dict, loaded strictly.

    Parameters
    ----------
    hub_id_or_dir : str or Path, default "EleutherAI/enformer-official-rough"
        Directory holding ``config.json`` and ``pytorch_model.bin`` (or ``*.safetensors``), as
        written by :func:`save_enformer`, or a hub id (downloaded through the HF cache).
    use_tf_gamma : bool, optional
        Use the precomputed TensorFlow gamma positional features (196,608-bp inputs only).
        Default: True for trained weights of the official architecture (dim 1536, depth 11),
        which is what ``from_pretrained`` does for the official hub id; False otherwise.
    device : str or torch.device, default "auto"
        Where to put the model (``"auto"``: CUDA when available).

    Raises
    ------
    ModelLoadError
        Weights missing or unreadable, a parameter missing/unexpected/mis-shaped (no silent
        random initialisation), or a hub download failure.
    """
    from enformer_pytorch import EnformerConfig
    from enformer_pytorch.modeling_enformer import Attention

    d = _resolve_weights_dir(hub_id_or_dir)
    if not (d / "config.json").exists():
        msg = f"Enformer weights: {d} has no config.json"
        raise ModelLoadError(msg)
    try:
        config = EnformerConfig.from_pretrained(d)
    except Exception as exc:
        msg = f"Enformer config {d / 'config.json'} is unreadable ({type(exc).__name__}: {exc})"
        raise ModelLoadError(msg) from exc
    random_weights = bool(getattr(config, _RANDOM_FLAG, False))
    from enformer_pytorch import Enformer

    module = Enformer(config)
    state = _read_state_dict(d)
    try:
        res = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        msg = f"Enformer weights in {d} do not fit the architecture in its config.json: {exc}"
        raise ModelLoadError(msg) from exc
    missing = [k for k in res.missing_keys if not k.startswith("_trunk.")]
    unexpected = [k for k in res.unexpected_keys if not k.startswith("_trunk.")]
    if missing or unexpected:
        msg = (
            f"Enformer weights in {d} do not match the architecture: {len(missing)} missing "
            f"(first: {missing[:3]}), {len(unexpected)} unexpected (first: {unexpected[:3]}); refusing to "
            "run with randomly initialised parameters"
        )
        raise ModelLoadError(msg)
    official = all(getattr(config, k, None) == v for k, v in _OFFICIAL_ARCH.items())
    if use_tf_gamma is None:
        use_tf_gamma = official and not random_weights
    for m in module.modules():
        if isinstance(m, Attention):
            m.use_tf_gamma = bool(use_tf_gamma)
    config.use_tf_gamma = bool(use_tf_gamma)
    module.eval()
    fingerprint = weights_fingerprint(module)
    module.to(resolve_device(device))
    if random_weights:
        _log.warning("Enformer %s has RANDOM weights: its predictions are labelled random_weights=True", d)
    source = str(hub_id_or_dir) if not Path(hub_id_or_dir).expanduser().is_dir() else str(d.resolve())
    return EnformerModel(
        module=module,
        source=source,
        random_weights=random_weights,
        fingerprint=fingerprint,
        use_tf_gamma=bool(use_tf_gamma),
        target_length=int(config.target_length),
        bin_size=2 ** int(config.num_downsamples),
        n_tracks=int(config.output_heads["human"]),
        head="human",
    )


def estimate_cpu_seconds(
    n_sequences: int, length: int, full_size: bool = True, *, rc_average: bool = False, n_threads: int | None = None
) -> float:
    """Rough CPU wall time (s) of running Enformer on ``n_sequences`` inputs of ``length`` bp.

    Linear model ``a + b * length`` per sequence, measured with 2 threads (full size: ~76 s per
    196,608-bp sequence in fp32; tiny: ~0.5 s at 16 kb), scaled by ``2 / n_threads`` (default:
    ``torch.get_num_threads()``) and doubled with reverse-complement averaging. Used by the CLI
    to warn before a full-size CPU run.
    """
    a, b = _CPU_COST["full" if full_size else "tiny"]
    threads = n_threads or torch.get_num_threads()
    per_seq = (a + b * length) * _CPU_COST_THREADS / max(1, min(threads, 64))
    return float(n_sequences * per_seq * (2 if rc_average else 1))


# ---------------------------------------------------------------------------- running
def enformer_cache_spec(
    model: EnformerModel, *, target_length: int | None = None, rc_average: bool = False, autocast: str | None = None
) -> dict[str, Any]:
    """The :class:`~expredict.cache.ArrayCache` spec of Enformer readout vectors.

    Everything that changes the stored values: the model (source, weights fingerprint, TF gamma),
    the crop, reverse-complement averaging, the autocast dtype and the readout widths. Stored item:
    float32 ``(len(READOUT_WIDTHS), n_tracks)`` centre-bin sums.
    """
    return {
        "kind": "enformer_readout",
        "version": _CACHE_SPEC_VERSION,
        "model": model.spec(),
        "target_length": model.target_length if target_length is None else int(target_length),
        "rc_average": bool(rc_average),
        "autocast": autocast,
        "widths": list(READOUT_WIDTHS),
    }


def _window_sums(out: torch.Tensor, length: int, target_length: int, bin_size: int) -> torch.Tensor:
    """(B, n_bins, n_tracks) → (B, len(READOUT_WIDTHS), n_tracks) float32 centre-bin sums."""
    rows = []
    for w in READOUT_WIDTHS:
        sl = center_bin_slice(length, w, target_length, bin_size)
        rows.append(out[:, sl, :].float().sum(dim=1))
    return torch.stack(rows, dim=1)


class _Runner:
    """Runs the model on one-hot batches; restores the module's training mode and crop afterwards."""

    def __init__(
        self, model: EnformerModel, target_length: int | None, device: torch.device, autocast: str | None
    ) -> None:
        self.model = model
        self.device = device
        self.autocast = autocast
        self.target_length = model.target_length if target_length is None else int(target_length)
        self.n_calls = 0

    def __enter__(self) -> _Runner:
        m = self.model.module
        self._was_training = m.training
        self._old_crop = None
        if self.target_length != self.model.target_length:
            if not hasattr(m, "set_target_length"):
                msg = f"target_length override needs an enformer-pytorch model; got {type(m).__name__}"
                raise ValueError(msg)
            self._old_crop = self.model.target_length
            m.set_target_length(self.target_length)
        m.eval()
        return self

    def __exit__(self, *exc: object) -> None:
        m = self.model.module
        if self._old_crop is not None:
            m.set_target_length(self._old_crop)
        m.train(self._was_training)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model.module
        self.n_calls += 1
        if self.autocast is not None:
            with torch.autocast(self.device.type, dtype=getattr(torch, self.autocast)):
                out = m(x, head=self.model.head) if self.model.head is not None else m(x)
        else:
            out = m(x, head=self.model.head) if self.model.head is not None else m(x)
        return out

    def readouts(self, onehot: NDArray[np.float32], rc_average: bool) -> NDArray[np.float32]:
        """(B, L, 4) one-hot → (B, len(READOUT_WIDTHS), n_tracks) float32."""
        length = onehot.shape[1]
        ob = output_bins(length, self.target_length, self.model.bin_size)
        with torch.inference_mode():
            x = torch.from_numpy(onehot).to(self.device, non_blocking=True)
            out = self._forward(x)
            if out.ndim != 3 or out.shape[1] != ob.n_bins or out.shape[2] != self.model.n_tracks:
                msg = (
                    f"Enformer output has shape {tuple(out.shape)}; expected (batch, {ob.n_bins}, "
                    f"{self.model.n_tracks}) for a {length}-bp input with target_length {self.target_length}"
                )
                raise RuntimeError(msg)
            out = out.float()
            if rc_average:
                # reverse complement = reverse positions and swap A<->T, C<->G (flip ACGT channels);
                # its output bins run backwards, so flip them back before averaging.
                out_rc = self._forward(torch.flip(x, dims=(1, 2))).float()
                out = 0.5 * (out + torch.flip(out_rc, dims=(1,)))
            sums = _window_sums(out, length, self.target_length, self.model.bin_size)
        return sums.cpu().numpy().astype(np.float32, copy=False)


def _check_length(model: EnformerModel, length: int, target_length: int) -> None:
    if model.use_tf_gamma and length != SEQUENCE_LENGTH:
        msg = (
            f"this Enformer uses TF gamma positional features, valid only for {SEQUENCE_LENGTH}-bp inputs; "
            f"got {length} bp (load with use_tf_gamma=False to run other lengths, at some loss of fidelity)"
        )
        raise ValueError(msg)
    for w in READOUT_WIDTHS:
        center_bin_slice(length, w, target_length, model.bin_size)


def readout_vectors(
    sequences: Sequence[str],
    model: EnformerModel,
    *,
    cache: ArrayCache | None = None,
    target_length: int | None = None,
    rc_average: bool = False,
    batch_size: int = 2,
    device: str | torch.device | None = None,
    autocast: Literal["auto"] | str | None = "auto",
    progress: bool = True,
    flush_every: int = 64,
    stats: dict[str, int] | None = None,
) -> NDArray[np.float32]:
    """Centre-bin readout vectors of each sequence: float32 ``(n, len(READOUT_WIDTHS), n_tracks)``.

    Row ``i`` holds, for every human track, the sum of Enformer's output over the 3 (row ``[i, 0]``)
    and 10 (row ``[i, 1]``) centre bins of ``sequences[i]`` (TSS at index ``L // 2``). Identical
    sequences and those already in ``cache`` are not run again; new results are written to the
    cache every ``flush_every`` sequences, so an interrupted run resumes where it stopped.

    Parameters
    ----------
    sequences : sequence of str
        Equal-length DNA, length a multiple of the bin size (128).
    model : EnformerModel
        From :func:`load_enformer`.
    cache : ArrayCache, optional
        Built with ``enformer_cache_spec(model, ...)`` for the same ``target_length``,
        ``rc_average`` and autocast dtype (checked).
    target_length : int, optional
        Override the model's crop (e.g. ``-1`` for a short window); default the model's.
    rc_average : bool, default False
        Average the forward and reverse-complement passes (bins re-aligned).
    batch_size : int, default 2
        Sequences per forward pass (each costs two passes with ``rc_average``).
    device : str or torch.device, optional
        Default: the model's device. The model is not moved.
    autocast : {"auto", "bfloat16", "float16", None}, default "auto"
        Mixed precision; ``"auto"`` = bfloat16 on CUDA, none (fp32) on CPU.
    progress : bool, default True
        Report progress over the sequences to compute (:class:`expredict.logs.Progress`: a bar on
        a terminal, log lines otherwise; ``predict_enformer`` reports genes instead).
    flush_every : int, default 64
        Sequences per cache shard.
    stats : dict, optional
        Filled with ``n_sequences``, ``n_distinct``, ``n_cached``, ``n_computed``, ``n_forward_calls``.
    """
    seqs = list(sequences)
    n = len(seqs)
    if batch_size < 1:
        msg = f"batch_size must be >= 1; got {batch_size}"
        raise ValueError(msg)
    dev = model.device if device is None else resolve_device(device)
    amp = ("bfloat16" if dev.type == "cuda" else None) if autocast == "auto" else autocast
    tl = model.target_length if target_length is None else int(target_length)
    if n == 0:
        return np.zeros((0, len(READOUT_WIDTHS), model.n_tracks), dtype=np.float32)
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        msg = f"Enformer inputs must share one length; got {len(lengths)} lengths, e.g. {sorted(lengths)[:3]}"
        raise ValueError(msg)
    length = lengths.pop()
    _check_length(model, length, tl)
    if cache is not None:
        want = enformer_cache_spec(model, target_length=tl, rc_average=rc_average, autocast=amp)
        if cache.spec != want:
            msg = "cache was built for another Enformer model/setting; create it with enformer_cache_spec(...)"
            raise ValueError(msg)

    hashes = [sequence_hash(s) for s in seqs]
    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        first.setdefault(h, i)
    distinct = list(first)
    cached = cache.contains(distinct) if cache is not None else np.zeros(len(distinct), dtype=bool)
    todo = [h for h, c in zip(distinct, cached, strict=True) if not c]
    results: dict[str, NDArray[np.float32]] = {}
    pending_h: list[str] = []
    pending_v: list[NDArray[np.float32]] = []

    def flush() -> None:
        if cache is not None and pending_h:
            cache.put(pending_h, np.concatenate(pending_v))
        pending_h.clear()
        pending_v.clear()

    with (
        _Runner(model, tl, dev, amp) as runner,
        Progress(_log, "enformer", len(todo), enabled=progress, unit="seq") as bar,
    ):
        for b0 in range(0, len(todo), batch_size):
            bh = todo[b0 : b0 + batch_size]
            vals = runner.readouts(one_hot_encode([seqs[first[h]] for h in bh]), rc_average)
            for h, v in zip(bh, vals, strict=True):
                results[h] = v
            pending_h.extend(bh)
            pending_v.append(vals)
            if len(pending_h) >= flush_every:
                flush()
            bar.step(len(bh))
        flush()
    n_forward = runner.n_calls

    out = np.empty((n, len(READOUT_WIDTHS), model.n_tracks), dtype=np.float32)
    cached_h = [h for h, c in zip(distinct, cached, strict=True) if c]
    if cached_h:
        got = cache.get(cached_h)
        for h, v in zip(cached_h, got, strict=True):
            results[h] = v
    for i, h in enumerate(hashes):
        out[i] = results[h]
    if stats is not None:
        stats.update(
            n_sequences=n,
            n_distinct=len(distinct),
            n_cached=len(cached_h),
            n_computed=len(todo),
            n_forward_calls=n_forward,
        )
    return out


def select_readout(
    vectors: NDArray[np.floating], *, track: int = TRACK_CAGE_GM12878, n_center_bins: int = 3
) -> NDArray[np.float32]:
    """Pick one track and centre window from readout vectors ``(n, len(READOUT_WIDTHS), n_tracks)`` → ``(n,)``.

    ``track=None`` is not accepted; use ``vectors[:, READOUT_WIDTHS.index(w), :]`` for all tracks.
    """
    if n_center_bins not in READOUT_WIDTHS:
        msg = f"n_center_bins must be one of {READOUT_WIDTHS} (the widths cached per sequence); got {n_center_bins}"
        raise ValueError(msg)
    if not 0 <= track < vectors.shape[-1]:
        msg = f"track must be in [0, {vectors.shape[-1]}); got {track}"
        raise ValueError(msg)
    return np.asarray(vectors[:, READOUT_WIDTHS.index(n_center_bins), track], dtype=np.float32)


def average_haplotypes(values: NDArray[np.floating], index: NDArray[np.integer]) -> NDArray[np.float64]:
    """Per-individual mean over its two haplotypes.

    Parameters
    ----------
    values : ndarray, shape (n_distinct, ...)
        One value (or vector) per distinct sequence.
    index : ndarray of int, shape (n_samples, 2)
        Row of each sample's haplotype 1 and 2 in ``values``.

    Returns
    -------
    ndarray of float64, shape (n_samples, ...)
    """
    index = np.asarray(index)
    if index.ndim != 2 or index.shape[1] != 2:
        msg = f"haplotype index must have shape (n_samples, 2); got {index.shape}"
        raise ValueError(msg)
    if index.size and (index.min() < 0 or index.max() >= len(values)):
        msg = f"haplotype index out of range [0, {len(values)}): min {index.min()}, max {index.max()}"
        raise ValueError(msg)
    v = np.asarray(values, dtype=np.float64)
    return 0.5 * (v[index[:, 0]] + v[index[:, 1]])


# ---------------------------------------------------------------------------- per-gene API
class HaplotypeSetLike(Protocol):
    """What :func:`predict_enformer` needs from a haplotype set (``expredict.haplotypes``)."""

    region: Any  # expredict.coords.Region; .name = gene id
    sequences: list[str]
    index: NDArray[np.int32]
    samples: list[str]


class EnformerResult(NamedTuple):
    """Output of :func:`predict_enformer`.

    ``predictions``: polars DataFrame ``gene_id, sample, prediction`` (one row per gene and
    sample). ``metadata``: model identity (incl. ``random_weights``), readout settings and counts.
    ``features``: gene id → (samples, float32 ``(n_samples, n_tracks)`` haplotype-averaged
    centre-bin sums, ~7.6 MB per gene for 358 individuals), filled when ``return_features=True`` (input of :func:`tuned_enformer`).
    """

    predictions: pl.DataFrame
    metadata: dict[str, Any]
    features: dict[str, tuple[list[str], NDArray[np.float32]]] | None


def predict_enformer(
    haplotype_sets: Iterable[HaplotypeSetLike],
    model: EnformerModel,
    cache: ArrayCache | str | Path | None = None,
    *,
    track: int = TRACK_CAGE_GM12878,
    n_center_bins: int = 3,
    target_length: int | None = None,
    rc_average: bool = False,
    batch_size: int = 2,
    device: str | torch.device | None = None,
    autocast: Literal["auto"] | str | None = "auto",
    progress: bool = True,
    return_features: bool = False,
) -> EnformerResult:
    """Enformer prediction per (gene, individual) from personal haplotype sets.

    For each set: readout vectors of its distinct sequences (:func:`readout_vectors`, cached), the
    chosen ``track`` summed over the ``n_center_bins`` centre bins (3 = bins 447-449 at full
    size, or 10), averaged over each individual's two haplotypes.

    Parameters
    ----------
    haplotype_sets : iterable of HaplotypeSetLike
        E.g. ``expredict.haplotypes.iter_unique_haplotypes(..., mode="center_tss", length=L)``;
        ``.region.name`` is the gene id, ``.sequences`` the distinct length-``L`` sequences with
        the TSS at index ``L // 2``, ``.index`` int ``(n_samples, 2)``, ``.samples`` the names.
    model : EnformerModel
        From :func:`load_enformer`.
    cache : ArrayCache, str or Path, optional
        An ArrayCache built with :func:`enformer_cache_spec`, or a root directory (the cache is
        created there with the right spec). None: no cache (distinct sequences still run once).
    track : int, default 5110
        Human track (5110 CAGE GM12878; 4980 CAGE brain).
    n_center_bins : {3, 10}, default 3
    target_length, rc_average, batch_size, device, autocast, progress
        As in :func:`readout_vectors`.
    return_features : bool, default False
        Also return per-gene all-track features for :func:`tuned_enformer`.

    Returns
    -------
    EnformerResult
    """
    t0 = time.perf_counter()
    if n_center_bins not in READOUT_WIDTHS:
        msg = f"n_center_bins must be one of {READOUT_WIDTHS}; got {n_center_bins}"
        raise ValueError(msg)
    if not 0 <= track < model.n_tracks:
        msg = f"track must be in [0, {model.n_tracks}); got {track}"
        raise ValueError(msg)
    dev = model.device if device is None else resolve_device(device)
    amp = ("bfloat16" if dev.type == "cuda" else None) if autocast == "auto" else autocast
    tl = model.target_length if target_length is None else int(target_length)
    if cache is not None and not isinstance(cache, ArrayCache):
        cache = ArrayCache(cache, enformer_cache_spec(model, target_length=tl, rc_average=rc_average, autocast=amp))

    genes: list[str] = []
    samples_col: list[str] = []
    preds: list[NDArray[np.float64]] = []
    features: dict[str, tuple[list[str], NDArray[np.float32]]] = {}
    totals = {"n_sequences": 0, "n_distinct": 0, "n_cached": 0, "n_computed": 0, "n_forward_calls": 0}
    lengths: set[int] = set()
    w = READOUT_WIDTHS.index(n_center_bins)
    n_genes = 0
    total = len(haplotype_sets) if hasattr(haplotype_sets, "__len__") else None
    with Progress(_log, "enformer: genes", total, enabled=progress, unit="gene") as bar:
        for hs in haplotype_sets:
            gene = hs.region.name
            index = np.asarray(hs.index)
            if len(hs.samples) != index.shape[0]:
                msg = f"gene {gene}: {len(hs.samples)} samples but haplotype index has {index.shape[0]} rows"
                raise ValueError(msg)
            stats: dict[str, int] = {}
            vec = readout_vectors(
                hs.sequences,
                model,
                cache=cache,
                target_length=tl,
                rc_average=rc_average,
                batch_size=batch_size,
                device=dev,
                autocast=amp,
                progress=False,
                stats=stats,
            )
            for k in totals:
                totals[k] += stats.get(k, 0)
            bar.set_postfix(computed=totals["n_computed"], cached=totals["n_cached"])
            lengths.update(len(s) for s in hs.sequences[:1])
            per_sample = average_haplotypes(vec[:, w, :], index)  # (n_samples, n_tracks)
            genes.extend([gene] * len(hs.samples))
            samples_col.extend(hs.samples)
            preds.append(per_sample[:, track])
            if return_features:
                features[gene] = (list(hs.samples), per_sample.astype(np.float32))
            n_genes += 1
            bar.step()
    df = pl.DataFrame(
        {
            "gene_id": pl.Series(genes, dtype=pl.Utf8),
            "sample": pl.Series(samples_col, dtype=pl.Utf8),
            "prediction": pl.Series(np.concatenate(preds) if preds else np.zeros(0), dtype=pl.Float64),
        }
    )
    metadata: dict[str, Any] = {
        "method": "enformer",
        "random_weights": model.random_weights,
        "model": model.spec(),
        "track": track,
        "n_center_bins": n_center_bins,
        "target_length": tl,
        "rc_average": rc_average,
        "autocast": amp,
        "device": str(dev),
        "lengths": sorted(lengths),
        "n_genes": n_genes,
        **totals,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if model.random_weights:
        metadata["note"] = "RANDOM-WEIGHT Enformer: predictions test the plumbing only, not the method"
    return EnformerResult(df, metadata, features if return_features else None)


# ---------------------------------------------------------------------------- tuned readout
def tuned_enformer(
    features: Mapping[str, tuple[Sequence[str], NDArray[np.floating]]],
    targets: pl.DataFrame,
    train_samples: Iterable[str],
    *,
    predict_samples: Iterable[str] | None = None,
    target_col: str = "expression",
    method: Literal["ridge", "elastic_net"] = "ridge",
    alphas: Sequence[float] | None = None,
    l1_ratio: float = 0.5,
    log1p: bool = True,
    cv: int = 5,
    random_state: int = 0,
) -> pl.DataFrame:
    """Tuned Enformer: per gene, a linear model over all tracks' centre-bin values.

    For each gene, features = haplotype-averaged centre-bin sums of all tracks (``log1p`` then
    standardised with training statistics), fitted on ``train_samples`` only with ``RidgeCV``
    (``method="ridge"``) or ``ElasticNetCV`` (``l1_ratio``), both choosing the penalty by
    internal ``cv``-fold CV among training individuals (Sasse et al. 2023 used an elastic net).

    Parameters
    ----------
    features : mapping
        ``EnformerResult.features``: gene id → (samples, ``(n_samples, n_tracks)``).
    targets : polars.DataFrame
        Long format with columns ``gene_id``, ``sample`` and ``target_col``.
    train_samples : iterable of str
        Individuals the linear maps are fitted on.
    predict_samples : iterable of str, optional
        Individuals to predict; default every sample with features that is not a training one.
    alphas : sequence of float, optional
        Ridge penalty grid; default ``logspace(-2, 5, 15)``.

    Returns
    -------
    polars.DataFrame
        ``gene_id, sample, prediction`` for genes with >= 3 training individuals with targets.
    """
    from sklearn.linear_model import ElasticNetCV, RidgeCV

    for col in ("gene_id", "sample", target_col):
        if col not in targets.columns:
            msg = f"tuned_enformer: targets needs columns gene_id, sample, {target_col}; missing {col!r}"
            raise ValueError(msg)
    train = set(train_samples)
    wanted = None if predict_samples is None else set(predict_samples)
    tmap = {
        g: dict(zip(sub["sample"].to_list(), sub[target_col].to_list(), strict=True))
        for (g,), sub in targets.select("gene_id", "sample", target_col).group_by("gene_id")
    }
    rows: dict[str, list[Any]] = {"gene_id": [], "sample": [], "prediction": []}
    for gene, (samples, x) in features.items():
        y_of = tmap.get(gene, {})
        samples = list(samples)
        x = np.asarray(x, dtype=np.float64)
        if log1p:
            x = np.log1p(np.clip(x, 0, None))
        tr = [i for i, s in enumerate(samples) if s in train and s in y_of and y_of[s] is not None]
        pr = [i for i, s in enumerate(samples) if (s in wanted if wanted is not None else s not in train)]
        if len(tr) < 3 or not pr:
            continue
        y = np.array([y_of[samples[i]] for i in tr], dtype=np.float64)
        mu = x[tr].mean(axis=0)
        sd = x[tr].std(axis=0)
        sd[sd == 0] = 1.0
        z = (x - mu) / sd
        if np.ptp(y) == 0:
            pred = np.full(len(pr), y[0])
        else:
            k = max(2, min(cv, len(tr)))
            if method == "ridge":
                grid = np.logspace(-2, 5, 15) if alphas is None else np.asarray(alphas, dtype=float)
                est = RidgeCV(alphas=grid, cv=k)
            elif method == "elastic_net":
                est = ElasticNetCV(l1_ratio=l1_ratio, cv=k, random_state=random_state, max_iter=5000)
            else:
                msg = f"method must be 'ridge' or 'elastic_net'; got {method!r}"
                raise ValueError(msg)
            pred = est.fit(z[tr], y).predict(z[pr])
        rows["gene_id"].extend([gene] * len(pr))
        rows["sample"].extend(samples[i] for i in pr)
        rows["prediction"].extend(float(v) for v in pred)
    return pl.DataFrame(rows, schema={"gene_id": pl.Utf8, "sample": pl.Utf8, "prediction": pl.Float64})
