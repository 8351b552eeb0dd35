"""Tiny NT v1/v2 round trip, hooks, pooling, padding invariance, cache fill/resume/repair."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from expredict.cache import ArrayCache, sequence_hash
from expredict.embed import (
    Embedder,
    Pooling,
    TokenLimitError,
    embed_sequences,
    get_adapter,
    load_nt,
    make_tiny_nt,
    open_embedding_cache,
)
from expredict.errors import ModelLoadError


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_nt")
    return {v: make_tiny_nt(v, root / v) for v in ("v1", "v2")}


@pytest.fixture(scope="session")
def loaded(tiny_dirs: dict[str, Path]) -> dict:
    return {v: load_nt(d) for v, d in tiny_dirs.items()}


def _seqs(n: int, seed: int = 0, lo: int = 30, hi: int = 400) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGTACGTN"), size=int(k))) for k in rng.integers(lo, hi, size=n)]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_round_trip_and_labels(tiny_dirs: dict[str, Path], loaded: dict, version: str) -> None:
    lm = loaded[version]
    assert lm.info.version == version and lm.info.random_weights
    assert lm.info.weights_label.startswith("RANDOM WEIGHTS")
    assert lm.info.max_tokens == (1000 if version == "v1" else 2048)
    again = get_adapter("nt").load(tiny_dirs[version])
    assert again.info.weights_hash == lm.info.weights_hash
    for a, b in zip(lm.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    emb = Embedder(lm, layers=(1, -1), device="cpu")
    assert emb.spec["random_weights"] and emb.spec["weights_label"].startswith("RANDOM WEIGHTS")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_hooks_match_hidden_states(loaded: dict, version: str) -> None:
    lm = loaded[version]
    seqs = _seqs(3, seed=1)
    emb = Embedder(lm, layers=(0, 1, -1), device="cpu", batch_size=3, pooling=Pooling("mean", include_cls=True))
    got = emb.embed(seqs)
    batch = lm.tokenizer.batch(seqs)
    with torch.inference_mode():
        out = lm.model(
            input_ids=torch.from_numpy(batch.input_ids),
            attention_mask=torch.from_numpy(batch.attention_mask),
            output_hidden_states=True,
        )
    m = torch.from_numpy(batch.attention_mask).float()[..., None]
    for j, k in enumerate((0, 1, 2)):
        ref = (out.hidden_states[k] * m).sum(1) / m.sum(1)
        np.testing.assert_allclose(got[:, j], ref.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("mode", ["mean", "bins"])
def test_alone_equals_padded_batch(loaded: dict, version: str, mode: str) -> None:
    seqs = _seqs(6, seed=2)
    emb = Embedder(loaded[version], layers=(1, -1), pooling=Pooling(mode, bin_tokens=16), device="cpu", batch_size=6)
    together = emb.embed(seqs)
    emb.batch_size = 1
    alone = np.stack([emb.embed([s])[0] for s in seqs])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=2e-6)
    assert together.shape == (6, *emb.item_shape)
    if mode == "bins":
        n_tok = loaded[version].tokenizer.count_tokens(seqs) - 1
        filled = ~np.isnan(together[:, 0, :, 0])
        np.testing.assert_array_equal(filled.sum(1), -(-n_tok // 16))


def test_tiles_match_separate_windows(loaded: dict) -> None:
    lm = loaded["v1"]
    seq = "".join(np.random.default_rng(3).choice(list("ACGT"), size=600))
    emb = Embedder(lm, layers=(-1,), pooling=Pooling("tiles", tile_tokens=40, n_tiles=3), device="cpu")
    got = emb.embed([seq, seq[:240]])
    assert got.shape == (2, 1, 3, 64)
    parts = [seq[:240], seq[240:480], seq[480:]]  # 40 tokens x 6 bp
    ref = Embedder(lm, layers=(-1,), device="cpu").embed(parts)
    np.testing.assert_allclose(got[0, 0], ref[:, 0], rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(got[1, 0, 0], ref[0, 0], rtol=1e-5, atol=2e-6)
    assert np.isnan(got[1, 0, 1:]).all()
    with pytest.raises(TokenLimitError, match="n_tiles=3"):
        emb.embed([seq * 2])


def test_over_long_input_rejected(loaded: dict) -> None:
    emb = Embedder(loaded["v1"], device="cpu")
    with pytest.raises(TokenLimitError, match=r"limit of 1000 tokens.*5,999 bp.*1005 tokens"):
        emb.embed(["ACGT", "A" * 5999])


def test_embed_sequences_resume_and_repair(tmp_path: Path, loaded: dict) -> None:
    emb = Embedder(loaded["v2"], layers=(1, -1), device="cpu", batch_size=4)
    seqs = _seqs(24, seed=4)
    seqs = seqs + seqs[:8]  # repeats are embedded once

    full = open_embedding_cache(tmp_path / "full", emb)
    stats = embed_sequences(seqs, full, emb, batch_size=4, progress=False, chunk_size=8)
    assert (stats.n_input, stats.n_unique, stats.n_embedded, stats.n_cache_hits) == (32, 24, 24, 0)
    assert stats.random_weights and "RANDOM WEIGHTS" in stats.summary()
    hashes = [sequence_hash(s) for s in seqs]
    reference = full.get(hashes)

    # simulated interruption: the embedder dies after two chunks
    part = open_embedding_cache(tmp_path / "part", emb)
    real_embed, calls = emb.embed, {"n": 0}

    def flaky(batch: list[str]) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real_embed(batch)

    emb.embed = flaky  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        embed_sequences(seqs, part, emb, progress=False, chunk_size=8)
    emb.embed = real_embed  # type: ignore[method-assign]
    resumed = ArrayCache(tmp_path / "part", part.spec)
    assert len(resumed) == 16
    stats2 = embed_sequences(seqs, resumed, emb, progress=False, chunk_size=8)
    assert (stats2.n_cache_hits, stats2.n_embedded) == (16, 8)
    np.testing.assert_allclose(resumed.get(hashes), reference, rtol=1e-5, atol=2e-6)
    assert sorted(resumed.hashes()) == sorted(full.hashes())

    # truncated shard: detected on open, its entries recomputed
    victim = sorted((resumed.path / "shards").glob("*.npy"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    repaired = ArrayCache(tmp_path / "part", part.spec)
    assert len(repaired) == 16 and repaired.dropped
    stats3 = embed_sequences(seqs, repaired, emb, progress=False, chunk_size=8)
    assert stats3.n_embedded == 8
    np.testing.assert_allclose(repaired.get(hashes), reference, rtol=1e-5, atol=2e-6)


def test_spec_mismatch_rejected(tmp_path: Path, loaded: dict) -> None:
    a = Embedder(loaded["v1"], layers=(-1,), device="cpu")
    b = Embedder(loaded["v1"], layers=(1,), device="cpu")
    with pytest.raises(ValueError, match="different model/pooling"):
        embed_sequences(["ACGT"], open_embedding_cache(tmp_path, a), b, progress=False)


def test_missing_weight_refused(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    d = tmp_path / "broken"
    d.mkdir()
    for f in tiny_dirs["v1"].iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    weights = load_file(d / "model.safetensors")
    del weights["esm.encoder.layer.1.output.dense.weight"]
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="missing"):
        load_nt(d)


def test_v2_weights_refused_by_v1_classes(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    d = tmp_path / "mislabelled"
    d.mkdir()
    for f in tiny_dirs["v2"].iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(position_embedding_type="absolute", max_position_embeddings=2050)
    cfg.pop("add_bias_fnn", None)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError):
        load_nt(d)


def test_bad_arguments(loaded: dict) -> None:
    with pytest.raises(ValueError, match="out of range"):
        Embedder(loaded["v1"], layers=(5,), device="cpu")
    with pytest.raises(ValueError, match="pooling mode"):
        Pooling("max")  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match="not a directory"):
        load_nt("./does/not/exist")


def test_loading_info_problems_refused(tmp_path: Path) -> None:
    from expredict.embed.model import _check_loading_info

    ok = {"missing_keys": ["rotary_embeddings.inv_freq"], "unexpected_keys": ["lm_head.bias"], "mismatched_keys": []}
    assert _check_loading_info(ok, tmp_path) == []
    with pytest.raises(ModelLoadError, match="mismatched shapes"):
        _check_loading_info(
            {"mismatched_keys": [("encoder.layer.0.intermediate.dense.weight", (512, 64), (256, 64))]}, tmp_path
        )
    with pytest.raises(ModelLoadError, match="not used by the model"):
        _check_loading_info({"unexpected_keys": ["esm.encoder.layer.0.intermediate.gate.weight"]}, tmp_path)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_random_twin_same_architecture_other_weights(loaded: dict, version: str) -> None:
    from expredict.embed import random_twin

    lm = loaded[version]
    twin, again = random_twin(lm, seed=5), random_twin(lm, seed=5)
    real_sd, twin_sd = lm.model.state_dict(), twin.model.state_dict()
    assert real_sd.keys() == twin_sd.keys()
    assert all(real_sd[k].shape == twin_sd[k].shape for k in real_sd)
    assert any(not torch.equal(real_sd[k], twin_sd[k]) for k in real_sd if real_sd[k].is_floating_point())
    for a, b in zip(twin_sd.values(), again.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the seed fixes the control's weights
    assert twin.info.random_weights and twin.info.weights_label.startswith("RANDOM WEIGHTS")
    assert twin.info.weights_hash != lm.info.weights_hash and twin.tokenizer.max_tokens == lm.tokenizer.max_tokens
    seqs = _seqs(2, seed=3)
    real = Embedder(lm, layers=(-1,), device="cpu").embed(seqs)
    ctrl = Embedder(twin, layers=(-1,), device="cpu").embed(seqs)
    assert real.shape == ctrl.shape and not np.allclose(real, ctrl)
