"""Nucleotide Transformer loading (v1 stock ESM, v2 native SwiGLU subclass) and tiny test models.

- v1 (500m-human-ref, 500m-1000g, 2.5b-*) loads through stock ``transformers.EsmModel``.
- v2 (50m/100m/250m/500m multi-species) loads through :class:`NTv2Model`: ``EsmModel`` with each
  block's feed-forward replaced by a bias-free SwiGLU (``intermediate.dense`` [2I, H], then
  ``silu(a) * b``) and a bias-free ``output.dense`` [H, I]. Parameter names match the hub
  checkpoints, so no remote code is needed and SDPA attention comes with the native class.

Only the encoder is loaded (no LM head, no pooler). Loading is strict: any missing, mismatched or
randomly initialised weight raises :class:`~expredict.errors.ModelLoadError` (unexpected
``lm_head.*`` keys are expected, rotary ``inv_freq`` buffers are recomputed and checked).
``ignore_mismatched_sizes`` is never used.

A model directory may hold ``expredict_model.json`` (written by :func:`make_tiny_nt`) with
``random_weights`` / ``weights_label``; outputs of such models are labelled as random-weight
results wherever they appear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import EsmConfig, EsmForMaskedLM, EsmModel, EsmTokenizer

from expredict.embed.adapter import LoadedModel, ModelAdapter, ModelInfo, register_adapter
from expredict.embed.tokenizer import NTTokenizer, nt_vocab
from expredict.errors import ModelLoadError

__all__ = [
    "NT_ARCHITECTURES",
    "METADATA_FILE",
    "NTAdapter",
    "NTv2ForMaskedLM",
    "NTv2Model",
    "SwiGLU",
    "load_nt",
    "make_tiny_nt",
    "nt_config",
    "random_nt",
]

METADATA_FILE = "expredict_model.json"
RANDOM_PREFIX = "RANDOM WEIGHTS"
_log = logging.getLogger(__name__)

NTVersion = Literal["v1", "v2"]


@dataclass(frozen=True)
class _Arch:
    version: NTVersion
    layers: int
    hidden: int
    heads: int
    ffn: int


NT_ARCHITECTURES: dict[str, _Arch] = {
    "nucleotide-transformer-500m-human-ref": _Arch("v1", 24, 1280, 20, 5120),
    "nucleotide-transformer-500m-1000g": _Arch("v1", 24, 1280, 20, 5120),
    "nucleotide-transformer-2.5b-1000g": _Arch("v1", 32, 2560, 20, 10240),
    "nucleotide-transformer-2.5b-multi-species": _Arch("v1", 32, 2560, 20, 10240),
    "nucleotide-transformer-v2-50m-multi-species": _Arch("v2", 12, 512, 16, 2048),
    "nucleotide-transformer-v2-100m-multi-species": _Arch("v2", 22, 512, 16, 2048),
    "nucleotide-transformer-v2-250m-multi-species": _Arch("v2", 24, 768, 16, 3072),
    "nucleotide-transformer-v2-500m-multi-species": _Arch("v2", 29, 1024, 16, 4096),
}
"""Published NT architectures (``InstaDeepAI/<name>``): version, layers, hidden, heads, FFN size."""


# ---------------------------------------------------------------------- NT-v2 native classes
class SwiGLU(nn.Module):
    """Bias-free gated feed-forward input: ``x -> silu(a) * b`` with ``[a, b] = W x``, W: [2I, H]."""

    def __init__(self, config: EsmConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape (..., H) -> (..., I)."""
        a, b = self.dense(x).chunk(2, dim=-1)
        return F.silu(a) * b


def _swap_ffn(encoder: nn.Module, config: EsmConfig) -> None:
    for layer in encoder.layer:
        layer.intermediate = SwiGLU(config)
        layer.output.dense = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)


class NTv2Model(EsmModel):
    """NT-v2 encoder: stock ``EsmModel`` (rotary, SDPA) with bias-free SwiGLU feed-forward blocks."""

    def __init__(self, config: EsmConfig, add_pooling_layer: bool = False) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        _swap_ffn(self.encoder, config)
        self.post_init()


class NTv2ForMaskedLM(EsmForMaskedLM):
    """NT-v2 with its LM head (used to write checkpoints in the hub layout, e.g. tiny test models)."""

    def __init__(self, config: EsmConfig) -> None:
        super().__init__(config)
        _swap_ffn(self.esm.encoder, config)
        self.post_init()


# ---------------------------------------------------------------------- configs
def nt_config(name: str, **overrides: Any) -> EsmConfig:
    """Return the ``EsmConfig`` of a published NT architecture (``NT_ARCHITECTURES`` key, with or
    without the ``InstaDeepAI/`` prefix) or of ``"tiny-v1"``/``"tiny-v2"``; ``overrides`` win."""
    key = name.split("/")[-1]
    if key in ("tiny-v1", "tiny-v2"):
        arch = _Arch(key[-2:], 2, 64, 4, 256)  # type: ignore[arg-type]
    elif key in NT_ARCHITECTURES:
        arch = NT_ARCHITECTURES[key]
    else:
        msg = f"unknown NT architecture {name!r}; known: tiny-v1, tiny-v2, {', '.join(NT_ARCHITECTURES)}"
        raise ValueError(msg)
    v2 = arch.version == "v2"
    kw: dict[str, Any] = dict(
        vocab_size=len(nt_vocab(arch.version)),
        pad_token_id=1,
        mask_token_id=2,
        hidden_size=arch.hidden,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads,
        intermediate_size=arch.ffn,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=2050 if v2 else 1002,
        position_embedding_type="rotary" if v2 else "absolute",
        token_dropout=not v2,
        emb_layer_norm_before=False,
        layer_norm_eps=1e-12,
        tie_word_embeddings=False,
    )
    kw.update(overrides)
    cfg = EsmConfig(**kw)
    if v2:
        cfg.add_bias_fnn = False
    return cfg


def _version_of(config: EsmConfig) -> NTVersion:
    rotary = getattr(config, "position_embedding_type", "absolute") == "rotary"
    glu = getattr(config, "add_bias_fnn", True) is False
    return "v2" if (rotary or glu) else "v1"


def random_nt(name: str, *, seed: int = 0, **overrides: Any) -> LoadedModel:
    """Instantiate a randomly initialised NT encoder of a published architecture (benchmarks only).

    The result is labelled ``random_weights=True`` / ``"RANDOM WEIGHTS ..."`` everywhere.
    """
    cfg = nt_config(name, **overrides)
    cfg._attn_implementation = "sdpa"
    version = _version_of(cfg)
    torch.manual_seed(seed)
    model = NTv2Model(cfg) if version == "v2" else EsmModel(cfg, add_pooling_layer=False)
    label = f"{RANDOM_PREFIX}: random-init {name.split('/')[-1]} architecture (seed {seed}), not pretrained"
    return _finish(model, cfg, version, f"random:{name}", "random-init", label, random_weights=True, notes=())


def random_twin(loaded: LoadedModel, *, seed: int) -> LoadedModel:
    """The architecture of ``loaded`` (same config, tokenizer and hook points) with freshly initialised
    random weights: the pretraining control. Embeddings of the twin still tell haplotypes apart, so a head
    trained on them measures what the architecture and the haplotypes alone give; the real model's gain
    over it is what pretraining adds. Labelled ``random_weights=True``.
    """
    import copy

    cfg = copy.deepcopy(loaded.model.config)
    version = loaded.info.version
    torch.manual_seed(seed)
    model = NTv2Model(cfg) if version == "v2" else EsmModel(cfg, add_pooling_layer=False)
    label = f"{RANDOM_PREFIX}: random-init twin of {loaded.info.source} (seed {seed}), the pretraining control"
    return _finish(model, cfg, version, f"random-twin:{loaded.info.source}", f"random-init-seed-{seed}", label,
                   random_weights=True, notes=())


# ---------------------------------------------------------------------- tiny models
def make_tiny_nt(
    version: NTVersion,
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 256,
) -> Path:
    """Write a tiny, randomly initialised NT checkpoint of the exact v1 or v2 architecture.

    The directory gets ``config.json``, ``model.safetensors`` (hub layout, ``esm.*`` + ``lm_head.*``),
    the tokenizer files (``vocab.txt``, ``tokenizer_config.json``, ...) and ``expredict_model.json``
    marking it ``random_weights: true``. Reload with :func:`load_nt`. About 1-2 MB; no network.

    Returns
    -------
    Path
        ``out_dir``.
    """
    if version not in ("v1", "v2"):
        msg = f"tiny NT version must be 'v1' or 'v2'; got {version!r}"
        raise ValueError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = NTTokenizer(version)
    vocab_file = tok.save_vocab(out)
    EsmTokenizer(str(vocab_file), eos_token=None, model_max_length=tok.max_tokens).save_pretrained(str(out))
    cfg = nt_config(
        f"tiny-{version}",
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
    )
    torch.manual_seed(seed)
    model = NTv2ForMaskedLM(cfg) if version == "v2" else EsmForMaskedLM(cfg)
    model.eval()
    model.save_pretrained(str(out))
    meta = {
        "random_weights": True,
        "weights_label": f"{RANDOM_PREFIX}: tiny NT-{version} test model (seed {seed}), not pretrained",
        "architecture": f"nt-{version}",
        "created_by": "expredict.embed.model.make_tiny_nt",
        "seed": seed,
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return out


# ---------------------------------------------------------------------- loading
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _weights_hash(directory: Path) -> str:
    files = sorted({p for pat in _WEIGHT_PATTERNS for p in directory.glob(pat)})
    if not files:
        msg = f"{directory}: no model weights (model.safetensors or pytorch_model.bin)"
        raise ModelLoadError(msg)
    h = hashlib.sha256()
    for f in files:
        real = f.resolve()
        h.update(f.name.encode())
        if _HEX64.match(real.name):  # HF cache blob: its name is the file's LFS sha256
            h.update(real.name.encode())
            continue
        with real.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:32]


def _resolve(source: str | Path, revision: str | None) -> tuple[Path, str]:
    path = Path(source)
    if path.is_dir():
        return path.resolve(), str(path.resolve())
    if path.exists() or str(source).startswith((".", "/")):
        msg = f"model source {source}: not a directory"
        raise ModelLoadError(msg)
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            str(source),
            revision=revision,
            allow_patterns=["*.json", "*.txt", "*.safetensors", "pytorch_model*.bin"],
        )
    except Exception as exc:  # network, auth, unknown repo: all user-facing
        msg = f"cannot fetch model {source!r} (revision {revision or 'main'}) from the hub or its cache: {exc}"
        raise ModelLoadError(msg) from exc
    local_path = Path(local)
    return local_path, f"{source}@{local_path.name}"


def _read_config(directory: Path) -> EsmConfig:
    cfg_file = directory / "config.json"
    try:
        raw = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as exc:
        msg = f"{cfg_file}: cannot read model config ({exc})"
        raise ModelLoadError(msg) from exc
    for key in ("auto_map", "model_type", "architectures", "transformers_version", "dtype", "torch_dtype"):
        raw.pop(key, None)
    extra = {k: raw.pop(k) for k in list(raw) if k in ("add_bias_fnn",)}
    try:
        cfg = EsmConfig(**raw)
    except (TypeError, ValueError) as exc:
        msg = f"{cfg_file}: not an ESM/NT config ({exc})"
        raise ModelLoadError(msg) from exc
    for k, v in extra.items():
        setattr(cfg, k, v)
    return cfg


_OK_UNEXPECTED = (re.compile(r"^(esm\.)?lm_head\."), re.compile(r"^lm_head\."), re.compile(r"inv_freq$"))
_OK_MISSING = (re.compile(r"inv_freq$"), re.compile(r"^(esm\.)?(contact_head|pooler)\."))


def _check_loading_info(info: dict[str, Any], directory: Path) -> list[str]:
    missing = [k for k in info.get("missing_keys", []) if not any(p.search(k) for p in _OK_MISSING)]
    mismatched = list(info.get("mismatched_keys", []))
    errors = [str(e) for e in info.get("error_msgs", [])]
    unexpected = [k for k in info.get("unexpected_keys", []) if not any(p.search(k) for p in _OK_UNEXPECTED)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} weights missing from the checkpoint (would be random), e.g. {missing[:3]}")
    if mismatched:
        problems.append(f"{len(mismatched)} weights with mismatched shapes, e.g. {mismatched[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint weights not used by the model, e.g. {unexpected[:3]}")
    if errors:
        problems.append("; ".join(errors[:3]))
    if problems:
        msg = f"model {directory}: weights did not load exactly: " + "; ".join(problems)
        raise ModelLoadError(msg)
    notes = []
    dropped = [k for k in info.get("missing_keys", []) if re.search(r"contact_head|pooler", k)]
    if dropped:
        notes.append(f"unused heads not in checkpoint (never used for embeddings): {len(dropped)} tensors")
    return notes


def _check_rotary(model: nn.Module, directory: str) -> None:
    for name, buf in model.named_buffers():
        if name.endswith("inv_freq"):
            d = buf.numel() * 2
            expect = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
            if not torch.allclose(buf.float().cpu(), expect, rtol=1e-5, atol=0):
                msg = f"model {directory}: rotary buffer {name} is not 1/10000^(2i/d) (uninitialised buffer?)"
                raise ModelLoadError(msg)


def _finish(
    model: nn.Module,
    cfg: EsmConfig,
    version: NTVersion,
    source: str,
    weights_hash: str,
    label: str,
    *,
    random_weights: bool,
    notes: tuple[str, ...],
) -> LoadedModel:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
        if p.is_meta:
            msg = f"model {source}: parameter left on the meta device (not loaded)"
            raise ModelLoadError(msg)
    tok = NTTokenizer(version)
    pos_limit = cfg.max_position_embeddings - (cfg.pad_token_id + 1) if version == "v1" else tok.max_tokens
    tok = NTTokenizer(version, min(tok.max_tokens, pos_limit))
    hook_points: list[nn.Module] = [
        model.embeddings,
        *list(model.encoder.layer[:-1]),
        model.encoder.emb_layer_norm_after,
    ]
    info = ModelInfo(
        family="nt",
        source=source,
        version=version,
        weights_hash=weights_hash,
        weights_label=label,
        random_weights=random_weights,
        n_layers=cfg.num_hidden_layers,
        hidden_size=cfg.hidden_size,
        max_tokens=tok.max_tokens,
        n_params=sum(p.numel() for p in model.parameters()),
        notes=notes,
    )
    return LoadedModel(model=model, tokenizer=tok, info=info, hook_points=hook_points)


def load_nt(source: str | Path, *, revision: str | None = None) -> LoadedModel:
    """Load a Nucleotide Transformer encoder (no LM head) from a hub id or a local directory.

    Parameters
    ----------
    source : str or Path
        ``InstaDeepAI/nucleotide-transformer-...`` hub id (fetched or read from the HF cache) or a
        directory with ``config.json``, weights and ``vocab.txt``.
    revision : str, optional
        Hub revision (branch, tag or commit). Default is ``main``.

    Returns
    -------
    LoadedModel
        fp32 encoder on CPU in eval mode with gradients off, its tokenizer and provenance
        (``info.random_weights`` is True for :func:`make_tiny_nt` models).

    Raises
    ------
    ModelLoadError
        Unreadable config, wrong vocabulary, or any weight missing, mismatched or left random.
    """
    directory, source_id = _resolve(source, revision)
    cfg = _read_config(directory)
    version = _version_of(cfg)
    tok = NTTokenizer.from_pretrained(directory)
    if tok.version != version:
        msg = f"model {directory}: config says NT {version} but vocab.txt is the {tok.version} vocabulary"
        raise ModelLoadError(msg)
    if cfg.vocab_size != tok.vocab_size:
        msg = f"model {directory}: config vocab_size {cfg.vocab_size} != {tok.vocab_size} ({version} vocabulary)"
        raise ModelLoadError(msg)
    cls = NTv2Model if version == "v2" else EsmModel
    try:
        model, info = cls.from_pretrained(
            str(directory), config=cfg, add_pooling_layer=False, output_loading_info=True, attn_implementation="sdpa"
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # size mismatch and friends surface as RuntimeError/ValueError/OSError
        msg = f"model {directory}: weights failed to load into the NT {version} encoder: {exc}"
        raise ModelLoadError(msg) from exc
    notes = _check_loading_info(info, directory)
    _check_rotary(model, str(directory))
    meta_file = directory / METADATA_FILE
    meta: dict[str, Any] = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    random_weights = bool(meta.get("random_weights", False))
    label = str(meta.get("weights_label") or f"pretrained: {source_id}")
    if random_weights and not label.startswith(RANDOM_PREFIX):
        label = f"{RANDOM_PREFIX}: {label}"
    loaded = _finish(
        model,
        cfg,
        version,
        source_id,
        _weights_hash(directory),
        label,
        random_weights=random_weights,
        notes=tuple(notes),
    )
    if random_weights:
        _log.warning("model %s has random weights: %s", source_id, label)
    return loaded


class NTAdapter(ModelAdapter):
    """Adapter for the Nucleotide Transformer family (v1 and v2)."""

    family = "nt"

    def load(self, source: str | Path, *, revision: str | None = None) -> LoadedModel:
        """See :func:`load_nt`."""
        return load_nt(source, revision=revision)


register_adapter(NTAdapter())
