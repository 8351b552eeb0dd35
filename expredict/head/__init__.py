"""Expression head: a small transformer over haplotype embeddings, trained per gene or across genes."""

from expredict.head.estimator import (
    GeneData,
    HeadRegressor,
    MultiGeneHeadRegressor,
    split_rows,
    train_gene,
    train_multi_gene,
)
from expredict.head.model import HaplotypeHead, HeadConfig
from expredict.head.train import deterministic, head_loss, pairwise_loss, pearson_r

__all__ = [
    "GeneData",
    "HaplotypeHead",
    "HeadConfig",
    "HeadRegressor",
    "MultiGeneHeadRegressor",
    "deterministic",
    "head_loss",
    "pairwise_loss",
    "pearson_r",
    "split_rows",
    "train_gene",
    "train_multi_gene",
]
