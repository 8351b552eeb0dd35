"""expredict: personalized gene-expression prediction from phased genotypes.

Stages: haplotypes (bcftools-exact personal sequences), embeddings (frozen Nucleotide
Transformer), head (transformer on embeddings), baselines (PrediXcan elastic net, Enformer),
evaluation and reports. See README.md.
"""

from expredict.errors import ExpredictError

__version__ = "0.1.0"
__all__ = ["ExpredictError", "__version__"]
