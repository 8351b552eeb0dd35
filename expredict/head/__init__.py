"""Expression head: a small transformer over haplotype embeddings, trained per gene or across genes.

Hyperparameters: :class:`expredict.config.HeadConfig` (the ``head`` section of the run config).
"""

from expredict.head.estimator import (
    GeneData,
    GeneHeadFit,
    HeadRegressor,
    MultiGeneHeadFit,
    MultiGeneHeadRegressor,
    split_rows,
    train_gene,
    train_multi_gene,
)
from expredict.head.model import HaplotypeHead
from expredict.head.train import deterministic, head_loss, pairwise_loss, pearson_r

__all__ = [
    "GeneData",
    "GeneHeadFit",
    "HaplotypeHead",
    "HeadRegressor",
    "MultiGeneHeadFit",
    "MultiGeneHeadRegressor",
    "deterministic",
    "head_loss",
    "pairwise_loss",
    "pearson_r",
    "split_rows",
    "train_gene",
    "train_multi_gene",
]
