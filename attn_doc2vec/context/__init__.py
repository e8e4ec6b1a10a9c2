"""Context designs of PV-DM, one file each, chosen by ``Doc2VecConfig.context``.

=============  ===========  =====================================================================
name           family       what combines the document and the context
=============  ===========  =====================================================================
``attention``  autograd     free document vector + attentive context + attention-pooled document
                            words (:mod:`~attn_doc2vec.context.pooled`); the default
``docquery``   autograd     the document vector is the attention's query (:mod:`.docquery`)
``docloss``    autograd     word x position attention + a PV-DBOW loss of the document's own (:mod:`.docloss`)
``wordpos``    hand-written Ling et al.'s word x position attention (the 0.1 design, kept as an ablation)
``mean``       hand-written gensim's ``dm_mean=1``
``sum``        hand-written gensim's ``dm_mean=0``
``concat``     hand-written gensim's ``dm_concat=1``: the document and the 2 x window context vectors
                            (null-word padded) concatenated, the output vectors that long (PyTorch backend)
=============  ===========  =====================================================================

A new design is one file with a :class:`~attn_doc2vec.context.base.ContextLayer` subclass plus
one entry in :func:`build_layer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attn_doc2vec.context.base import ContextInputs, ContextLayer, ContextOutput, masked_softmax, pooled_documents
from attn_doc2vec.context.docloss import DocLossAttention
from attn_doc2vec.context.docquery import DocQueryAttention
from attn_doc2vec.context.pooled import PooledAttention

if TYPE_CHECKING:
    from attn_doc2vec.config import Doc2VecConfig

HAND_WRITTEN = ("mean", "sum", "wordpos", "concat")
LAYERS: dict[str, type[ContextLayer]] = {"attention": PooledAttention, "docquery": DocQueryAttention,
                                         "docloss": DocLossAttention}
CONTEXT_NAMES = tuple(LAYERS) + HAND_WRITTEN
# attention: no free document vector by default: the document is its attention-pooled words (measured best,
# docs/attention-designs.md); docquery and docloss need one (their attention is queried by / trained through it)
DEFAULT_DOC_SHARE = {"attention": 0.0, "docquery": 0.5, "docloss": 0.5}

__all__ = ["CONTEXT_NAMES", "HAND_WRITTEN", "LAYERS", "ContextInputs", "ContextLayer", "ContextOutput",
           "build_layer", "is_autograd", "masked_softmax",
           "pooled_documents"]


def is_autograd(config: Doc2VecConfig) -> bool:
    """True when ``config`` selects a PV-DM design trained by autograd (a :class:`ContextLayer`)."""
    return config.dm == 1 and config.context in LAYERS


def build_layer(config: Doc2VecConfig, n_words: int) -> ContextLayer | None:
    """The context layer that ``config`` selects, or None for PV-DBOW and the hand-written designs."""
    if not is_autograd(config):
        return None
    doc_share = DEFAULT_DOC_SHARE[config.context] if config.doc_share is None else config.doc_share
    common = dict(n_words=n_words, vector_size=config.vector_size, window=config.window, doc_share=doc_share,
                  uniform=config.uniform_attention)
    if config.context == "attention":
        return PooledAttention(pool_share=config.pool_share, pool_sample=config.pool_sample,
                               pool_loss=config.pool_loss, pool_heads=config.pool_heads,
                               own_values=config.pool_values == "own", parts=config.attention_parts,
                               context_scores=config.context_scores, **common)
    if config.context == "docquery":
        return DocQueryAttention(context_dropout=config.context_dropout, **common)
    return DocLossAttention(**common)
