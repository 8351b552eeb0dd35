"""Parity of the numpy NT tokenizer with the stock transformers EsmTokenizer (v1 and v2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import EsmTokenizer

from expredict.embed.tokenizer import NTTokenizer, TokenLimitError, nt_vocab


@pytest.fixture(scope="module", params=["v1", "v2"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[NTTokenizer, EsmTokenizer]:
    version = request.param
    tok = NTTokenizer(version)
    vocab = tok.save_vocab(tmp_path_factory.mktemp(f"vocab_{version}"))
    return tok, EsmTokenizer(str(vocab), eos_token=None, model_max_length=10**6)


def test_vocab_layout() -> None:
    v1, v2 = nt_vocab("v1"), nt_vocab("v2")
    assert len(v1) == 4105 and len(v2) == 4107
    assert v1[:5] == ["<unk>", "<pad>", "<mask>", "<cls>", "AAAAAA"] and v1[-5:] == list("ATCGN")
    assert v2[6] == "AAAAAA" and v2[4101] == "GGGGGG"


def test_reference_example(pair: tuple[NTTokenizer, EsmTokenizer]) -> None:
    tok, stock = pair
    seq = "ACGTGTACNTGCACGGANCGACTAGTCTGA"
    ids = tok.encode([seq])[0]
    assert stock.convert_ids_to_tokens(ids.tolist()) == [
        "<cls>", "ACGTGT", "A", "C", "N", "TGCACG", "G", "A", "N", "CGACTA", "GTCTGA",
    ]  # fmt: skip


@pytest.mark.parametrize("alphabet", ["ACGT", "ACGTN", "ACGTACGTACGTNNRY-", "acgtnACGTN"])
def test_parity_random(pair: tuple[NTTokenizer, EsmTokenizer], alphabet: str) -> None:
    tok, stock = pair
    rng = np.random.default_rng(len(alphabet))
    letters = np.array(list(alphabet))
    seqs = ["".join(rng.choice(letters, size=int(n))) for n in rng.integers(0, 200, size=120)]
    seqs += ["", "A", "N", "ACGTA", "ACGTAC", "NNNNNNNNNN", "RYRY", "ACGTACGNT"]
    mine = tok.encode(seqs)
    for s, m in zip(seqs, mine, strict=True):
        assert m.tolist() == stock(s.upper())["input_ids"], s


def test_batch_padding(pair: tuple[NTTokenizer, EsmTokenizer]) -> None:
    tok, _ = pair
    b = tok.batch(["ACGTACGTACGT", "A", ""])
    assert b.input_ids.shape == (3, 3) and b.lengths.tolist() == [3, 2, 1]
    assert (b.input_ids[:, 0] == tok.cls_id).all()
    assert b.input_ids[2, 1:].tolist() == [tok.pad_id, tok.pad_id]
    assert b.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0]]
    assert b.input_ids.max() < tok.vocab_size


def test_token_limit() -> None:
    v1, v2 = NTTokenizer("v1"), NTTokenizer("v2")
    assert v1.count_tokens(["A" * 5994]).tolist() == [1000]
    v1.batch(["A" * 5994])
    with pytest.raises(TokenLimitError, match="limit of 1000 tokens"):
        v1.batch(["A" * 5999])  # 999 6-mers + 5 singles + cls = 1005
    v2.batch(["A" * 12282])
    with pytest.raises(TokenLimitError, match="limit of 2048"):
        v2.batch(["A" * 12288])


def test_rejects_bad_characters() -> None:
    tok = NTTokenizer("v1")
    with pytest.raises(ValueError, match="whitespace"):
        tok.encode(["ACGT ACGT"])
    with pytest.raises(ValueError, match="ASCII"):
        tok.encode(["ACGTé"])
    with pytest.raises(ValueError, match="'v1' or 'v2'"):
        NTTokenizer("v3")  # type: ignore[arg-type]


def test_from_pretrained_checks_vocab(tmp_path: Path) -> None:
    NTTokenizer("v2").save_vocab(tmp_path)
    assert NTTokenizer.from_pretrained(tmp_path).version == "v2"
    (tmp_path / "vocab.txt").write_text("\n".join(nt_vocab("v1")[:-1]))
    from expredict.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="not the NT"):
        NTTokenizer.from_pretrained(tmp_path)
