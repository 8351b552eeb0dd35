"""Stage ``control``: the pretraining control; method ``nt_random``.

The same per-gene head as ``nt_head``, with the same settings, split and haplotypes, trained on
the embeddings of a random-weight twin of the configured language model (same architecture,
fresh weights from ``embedding.random_control_seed``). Random embeddings still tell haplotypes
apart, so this arm learns haplotype effects the way a haplotype association would; the real
model's per-gene gain over it is what pretraining adds, and the report shows it gene by gene.
Enabled by ``embedding.random_control``.
"""

from __future__ import annotations

from expredict.config import Config
from expredict.run.engine import RunContext, Stage
from expredict.run.method import Method
from expredict.run.stages.embed import embed_arm
from expredict.run.stages.head import PER_GENE, train_per_gene

CONTROL = "nt_random"


def run(ctx: RunContext) -> dict:
    """Embed the distinct haplotypes with the random twin, then train one head per gene on them."""
    info = embed_arm(ctx, "random")
    train_per_gene(ctx, CONTROL, "random", control_of=PER_GENE)
    return info


def _key(config: Config) -> list:
    emb = config.embedding.model_dump(mode="json", exclude={"batch_size", "device", "random_control"})
    return [emb, config.head.model_dump(mode="json", exclude={"device"}), config.seed]


STAGE = Stage(
    name="control", run=run, version=1, key_parts=_key, needs=("haplotypes",), outputs=(f"trained/{CONTROL}",
                                                                                     "embedding.random.json"),
    methods=(Method(CONTROL, "the nt_head recipe on a random-weight twin of the model: what pretraining adds"),),
    per_gene=True, enabled=lambda config: config.embedding.random_control,
)
