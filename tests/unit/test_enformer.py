"""Enformer baseline: one-hot, bin arithmetic, readout positions, haplotype averaging, tiny-model
round trip, cache reuse and the tuned readout. Everything runs on CPU in a few seconds: the tiny
architecture on 2-4 kb inputs, and parameter-free fake models for full-size (196,608 bp) geometry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from expredict.baselines import enformer as E
from expredict.cache import ArrayCache
from expredict.coords import Region
from expredict.errors import ModelLoadError

L_FULL = E.SEQUENCE_LENGTH
BIN0 = 40_960  # input position where output bin 0 starts at full size


# ---------------------------------------------------------------------------- helpers
class BinFeatureModel(torch.nn.Module):
    """Fake Enformer with the real geometry and an interpretable output.

    Pools the input 128-fold and centre-crops to ``target_length`` like Enformer's trunk, written
    independently of ``output_bins``. Track 0 = the bin's own index; track t >= 1 = t * (number of
    A or T bases in the bin), which is unchanged by reverse-complementing the bin.
    """

    def __init__(self, n_tracks: int = 6, target_length: int = 896) -> None:
        super().__init__()
        self.n_tracks = n_tracks
        self.target_length = target_length
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        b, length, _ = x.shape
        n = length // 128
        at = (x[..., 0] + x[..., 3]).reshape(b, n, 128).sum(-1)
        if self.target_length != -1:
            s = (n - self.target_length) // 2
            at = at[:, s : s + self.target_length]
        nb = at.shape[1]
        idx = torch.arange(nb, dtype=x.dtype).expand(b, nb)
        scale = torch.arange(self.n_tracks, dtype=x.dtype)
        out = at[..., None] * scale
        out[..., 0] = idx
        return out


def fake_model(n_tracks: int = 6, target_length: int = 896) -> E.EnformerModel:
    return E.EnformerModel(
        module=BinFeatureModel(n_tracks, target_length),
        source="fake",
        random_weights=True,
        fingerprint=f"fake-{n_tracks}-{target_length}",
        target_length=target_length,
        n_tracks=n_tracks,
        head=None,
    )


def planted(length: int, positions: list[int], base: str = "A", background: str = "C") -> str:
    s = bytearray(background * length, "ascii")
    for p in positions:
        s[p] = ord(base)
    return s.decode()


@dataclass
class HapSet:
    region: Region
    sequences: list[str]
    index: np.ndarray
    samples: list[str]


def random_seqs(n: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return E.make_tiny_enformer(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> E.EnformerModel:
    return E.load_enformer(tiny_dir, device="cpu")


# ---------------------------------------------------------------------------- one-hot
def test_one_hot_acgt_n_lowercase_and_other_chars() -> None:
    x = E.one_hot_encode("ACGTNacgtnR-")
    assert x.dtype == np.float32 and x.shape == (12, 4)
    np.testing.assert_array_equal(x[:4], np.eye(4))
    np.testing.assert_array_equal(x[5:9], np.eye(4))
    assert not x[4].any() and not x[9:].any()


def test_one_hot_batch_and_length_check() -> None:
    x = E.one_hot_encode(["AC", "gN"])
    assert x.shape == (2, 2, 4)
    np.testing.assert_array_equal(x[1], [[0, 0, 1, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="one length"):
        E.one_hot_encode(["AC", "A"])


# ---------------------------------------------------------------------------- bin arithmetic
def test_full_size_bins() -> None:
    ob = E.output_bins(L_FULL, 896)
    assert ob == E.OutputBins(n_bins=896, start=BIN0, tss_bin=448, bin_size=128)
    assert BIN0 + 448 * 128 == L_FULL // 2  # the TSS is the first base of bin 448
    assert E.center_bin_slice(L_FULL, 3, 896) == slice(447, 450)
    assert E.center_bin_slice(L_FULL, 10, 896) == slice(443, 453)


@pytest.mark.parametrize(
    ("length", "n_bins", "tss_bin"),
    [(16_384, 128, 64), (24_576, 192, 96), (131_072, 1024, 512), (2_048, 16, 8), (128 * 127, 127, 63)],
)
def test_uncropped_bins(length: int, n_bins: int, tss_bin: int) -> None:
    ob = E.output_bins(length, -1)
    assert (ob.n_bins, ob.start, ob.tss_bin) == (n_bins, 0, tss_bin)
    assert ob.start + ob.tss_bin * 128 <= length // 2 < ob.start + (ob.tss_bin + 1) * 128


@pytest.mark.parametrize(("n", "target"), [(1536, 896), (128, 100), (129, 100), (128, 128), (200, 51)])
def test_crop_matches_enformer_target_length_crop(n: int, target: int) -> None:
    from enformer_pytorch.modeling_enformer import TargetLengthCrop

    bins = TargetLengthCrop(target)(torch.arange(n).reshape(1, n, 1))[0, :, 0]
    ob = E.output_bins(n * 128, target)
    assert ob.n_bins == len(bins)
    assert ob.start == int(bins[0]) * 128


def test_bin_errors() -> None:
    with pytest.raises(ValueError, match="multiple of 128"):
        E.output_bins(1000, -1)
    with pytest.raises(ValueError, match="fewer than target_length"):
        E.output_bins(16_384, 896)
    with pytest.raises(ValueError, match="do not fit"):
        E.center_bin_slice(1_024, 10, -1)


# ---------------------------------------------------------------------------- readout positions (planted)
def test_readout_reads_bins_447_to_449_at_full_size() -> None:
    model = fake_model()
    vec = E.readout_vectors([planted(L_FULL, [])], model, progress=False)
    assert vec.shape == (1, 2, 6)
    assert vec[0, 0, 0] == 447 + 448 + 449  # track 0 encodes the bin index
    assert vec[0, 1, 0] == sum(range(443, 453))


@pytest.mark.parametrize("rc_average", [False, True])
@pytest.mark.parametrize(
    ("pos", "in3", "in10"),
    [
        (L_FULL // 2, 1, 1),  # the TSS base itself
        (BIN0 + 447 * 128, 1, 1),  # first base of bin 447
        (BIN0 + 450 * 128 - 1, 1, 1),  # last base of bin 449
        (BIN0 + 447 * 128 - 1, 0, 1),  # last base of bin 446
        (BIN0 + 450 * 128, 0, 1),  # first base of bin 450
        (BIN0 + 443 * 128 - 1, 0, 0),  # just left of the 10-bin window
        (BIN0 + 453 * 128, 0, 0),  # just right of it
    ],
)
def test_planted_base_counts_only_inside_the_centre_window(pos: int, in3: int, in10: int, rc_average: bool) -> None:
    model = fake_model()
    vec = E.readout_vectors([planted(L_FULL, [pos])], model, rc_average=rc_average, progress=False)
    assert E.select_readout(vec, track=1, n_center_bins=3)[0] == in3
    assert E.select_readout(vec, track=1, n_center_bins=10)[0] == in10
    assert E.select_readout(vec, track=4, n_center_bins=3)[0] == 4 * in3  # track selection


def test_planted_short_uncropped_window() -> None:
    length = 16_384  # tss bin 64, centre bins 63-65
    model = fake_model(target_length=-1)
    seqs = [planted(length, [63 * 128]), planted(length, [66 * 128]), planted(length, [62 * 128 + 5])]
    vec = E.readout_vectors(seqs, model, progress=False)
    np.testing.assert_array_equal(E.select_readout(vec, track=1, n_center_bins=3), [1, 0, 0])
    np.testing.assert_array_equal(E.select_readout(vec, track=1, n_center_bins=10), [1, 1, 1])
    assert vec[0, 0, 0] == 63 + 64 + 65


def test_select_readout_checks() -> None:
    vec = np.arange(2 * 2 * 5, dtype=np.float32).reshape(2, 2, 5)
    np.testing.assert_array_equal(E.select_readout(vec, track=3, n_center_bins=10), [8, 18])
    with pytest.raises(ValueError, match="track"):
        E.select_readout(vec, track=5)
    with pytest.raises(ValueError, match="n_center_bins"):
        E.select_readout(vec, track=0, n_center_bins=4)


# ---------------------------------------------------------------------------- haplotype averaging
def test_average_haplotypes() -> None:
    values = np.array([1.0, 3.0, 10.0])
    index = np.array([[0, 0], [0, 1], [2, 1]], dtype=np.int32)
    np.testing.assert_allclose(E.average_haplotypes(values, index), [1.0, 2.0, 6.5])
    vecs = np.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(E.average_haplotypes(vecs, index[1:2]), [[1.0, 2.0]])
    with pytest.raises(ValueError, match="out of range"):
        E.average_haplotypes(values, np.array([[0, 3]]))


def test_predict_enformer_format_and_averaging(tmp_path: Path) -> None:
    length = 4_096  # tss bin 16
    model = fake_model(target_length=-1)
    two = planted(length, [length // 2, length // 2 + 1], base="T")
    none = planted(length, [])
    sets = [
        HapSet(
            Region("chr22", 0, length, "GENE1", length // 2),
            [two, none],
            np.array([[0, 0], [0, 1], [1, 1]]),
            ["s1", "s2", "s3"],
        ),
        HapSet(
            Region("chr22", 0, length, "GENE2", length // 2),
            [none],
            np.array([[0, 0], [0, 0], [0, 0]]),
            ["s1", "s2", "s3"],
        ),
    ]
    res = E.predict_enformer(sets, model, track=2, progress=False, return_features=True)
    assert res.predictions.columns == ["gene_id", "sample", "prediction"]
    assert res.predictions.schema["prediction"] == pl.Float64
    got = {(g, s): p for g, s, p in res.predictions.iter_rows()}
    assert got == {
        ("GENE1", "s1"): 4.0,
        ("GENE1", "s2"): 2.0,
        ("GENE1", "s3"): 0.0,
        ("GENE2", "s1"): 0.0,
        ("GENE2", "s2"): 0.0,
        ("GENE2", "s3"): 0.0,
    }
    assert res.metadata["random_weights"] is True and res.metadata["n_genes"] == 2
    samples, feats = res.features["GENE1"]
    assert samples == ["s1", "s2", "s3"] and feats.shape == (3, 6)


def test_tf_gamma_requires_full_length() -> None:
    model = E.EnformerModel(
        BinFeatureModel(target_length=-1), "fake", True, "f", use_tf_gamma=True, target_length=-1, n_tracks=6, head=None
    )
    with pytest.raises(ValueError, match="TF gamma"):
        E.readout_vectors([planted(4_096, [])], model, progress=False)


# ---------------------------------------------------------------------------- tiny model
def test_tiny_round_trip_is_exact(tiny: E.EnformerModel, tiny_dir: Path, tmp_path: Path) -> None:
    assert tiny.random_weights and not tiny.use_tf_gamma and tiny.target_length == -1
    assert json.loads((tiny_dir / "config.json").read_text())["expredict_random_weights"] is True
    torch.manual_seed(0)
    direct = E._new_enformer(**E.TINY_HPARAMS).eval()
    assert E.weights_fingerprint(direct) == tiny.fingerprint
    again = E.load_enformer(E.save_enformer(tiny.module, tmp_path / "again", random_weights=True), device="cpu")
    assert again.fingerprint == tiny.fingerprint and again.random_weights
    x = torch.from_numpy(E.one_hot_encode(random_seqs(2, 2_048)))
    with torch.inference_mode():
        a, b, c = (m(x, head="human") for m in (direct, tiny.module, again.module))
    assert a.shape == (2, 16, E.N_HUMAN_TRACKS)
    assert torch.equal(a, b) and torch.equal(b, c)


def test_tiny_target_length_override_is_restored(tiny: E.EnformerModel) -> None:
    seqs = random_seqs(1, 4_096, seed=3)  # 32 trunk bins
    cropped = E.readout_vectors(seqs, tiny, target_length=24, progress=False)
    full = E.readout_vectors(seqs, tiny, progress=False)
    assert cropped.shape == full.shape == (1, 2, E.N_HUMAN_TRACKS)
    assert tiny.module.crop_final.target_length == -1
    assert not tiny.module.training


def test_load_errors(tmp_path: Path, tiny_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a directory"):
        E.load_enformer(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="no pytorch_model.bin"):
        E.load_enformer(empty)
    state = torch.load(tiny_dir / "pytorch_model.bin", weights_only=True)
    state.pop(next(k for k in state if k.startswith("stem.")))
    torch.save(state, empty / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="1 missing"):
        E.load_enformer(empty)
    (empty / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="unreadable"):
        E.load_enformer(empty)


# ---------------------------------------------------------------------------- cache
def test_cache_reuse_runs_the_model_zero_times(tiny: E.EnformerModel, tmp_path: Path) -> None:
    length = 2_048
    seqs = random_seqs(3, length, seed=1)
    sets = [
        HapSet(Region("chr1", 0, length, "G", length // 2), seqs, np.array([[0, 1], [2, 2], [1, 0]]), ["a", "b", "c"])
    ]
    first = E.predict_enformer(sets, tiny, tmp_path / "cache", batch_size=2, progress=False)
    assert first.metadata["n_computed"] == 3 and first.metadata["n_forward_calls"] == 2

    calls = {"n": 0}
    hook = tiny.module.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    try:
        second = E.predict_enformer(sets, tiny, tmp_path / "cache", progress=False)
        other_track = E.predict_enformer(
            sets, tiny, tmp_path / "cache", track=E.TRACK_CAGE_BRAIN, n_center_bins=10, progress=False
        )
    finally:
        hook.remove()
    assert calls["n"] == 0
    assert second.metadata["n_cached"] == 3 and second.metadata["n_forward_calls"] == 0
    assert other_track.metadata["n_forward_calls"] == 0
    assert second.predictions.equals(first.predictions)
    assert not other_track.predictions.equals(first.predictions)

    spec = E.enformer_cache_spec(tiny)
    cache = ArrayCache(tmp_path / "cache", spec)
    assert len(cache) == 3 and cache.item_shape == (2, E.N_HUMAN_TRACKS)
    with pytest.raises(ValueError, match="another Enformer"):
        E.readout_vectors(seqs, tiny, cache=cache, rc_average=True, progress=False)


def test_duplicates_and_resume(tmp_path: Path) -> None:
    model = fake_model(target_length=-1)
    seqs = [planted(2_048, [i]) for i in range(5)]
    cache = ArrayCache(tmp_path, E.enformer_cache_spec(model))
    stats: dict[str, int] = {}
    E.readout_vectors(seqs[:2] + seqs[:2], model, cache=cache, progress=False, stats=stats)
    assert stats["n_distinct"] == 2 and stats["n_computed"] == 2
    out = E.readout_vectors(seqs, model, cache=cache, batch_size=2, flush_every=1, progress=False, stats=stats)
    assert stats["n_cached"] == 2 and stats["n_computed"] == 3 and stats["n_forward_calls"] == 2
    np.testing.assert_array_equal(out, E.readout_vectors(seqs, model, progress=False))


# ---------------------------------------------------------------------------- misc
def test_estimate_cpu_seconds() -> None:
    full = E.estimate_cpu_seconds(10, L_FULL, full_size=True, n_threads=2)
    assert 600 < full < 1_000  # ~76 s per sequence on 2 cores
    assert E.estimate_cpu_seconds(10, L_FULL, full_size=True, rc_average=True, n_threads=2) == 2 * full
    assert E.estimate_cpu_seconds(10, 16_384, full_size=False, n_threads=2) < 10
    assert E.estimate_cpu_seconds(10, L_FULL, full_size=True, n_threads=4) == pytest.approx(full / 2)


def test_tuned_enformer_fits_on_training_individuals_only() -> None:
    rng = np.random.default_rng(0)
    n, k = 120, 40
    samples = [f"s{i}" for i in range(n)]
    x = rng.gamma(2.0, 1.0, size=(n, k))
    y = 2.0 * np.log1p(x[:, 3]) - np.log1p(x[:, 7]) + 0.05 * rng.normal(size=n)
    train, test = samples[:80], samples[80:]
    targets = pl.DataFrame({"gene_id": ["G"] * n, "sample": samples, "expression": y})
    pred = E.tuned_enformer({"G": (samples, x)}, targets, train)
    assert pred.columns == ["gene_id", "sample", "prediction"] and pred["sample"].to_list() == test
    assert np.corrcoef(pred["prediction"].to_numpy(), y[80:])[0, 1] > 0.95
    # test-individual targets must not influence the fit
    scrambled = targets.with_columns(
        pl.when(pl.col("sample").is_in(test)).then(0.0).otherwise(pl.col("expression")).alias("expression")
    )
    again = E.tuned_enformer({"G": (samples, x)}, scrambled, train)
    assert again["prediction"].to_list() == pred["prediction"].to_list()
    enet = E.tuned_enformer({"G": (samples, x)}, targets, train, method="elastic_net")
    assert np.corrcoef(enet["prediction"].to_numpy(), y[80:])[0, 1] > 0.95


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiny_on_cuda_bf16_close_to_cpu_fp32(tiny_dir: Path) -> None:
    seqs = random_seqs(3, 4_096, seed=5)
    cpu = E.readout_vectors(seqs, E.load_enformer(tiny_dir, device="cpu"), progress=False)
    gpu_model = E.load_enformer(tiny_dir, device="cuda")
    gpu = E.readout_vectors(seqs, gpu_model, batch_size=2, progress=False)  # bf16 autocast by default
    assert E.enformer_cache_spec(gpu_model, autocast="bfloat16")["autocast"] == "bfloat16"
    np.testing.assert_allclose(gpu, cpu, rtol=5e-2, atol=5e-2)
