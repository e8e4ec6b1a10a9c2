"""``attention``: attentive context plus an attention-pooled sample of the document's own words.

The hidden vector that predicts a target mixes three parts with fixed shares::

    h = s_d * d  +  s_c * sum_j p_j x_j  +  s_p * sum_i q_i x_i

* ``d``: the free document vector (PV-DM's paragraph vector), share ``s_d`` (0 by default: measured best,
  docs/attention-designs.md, so the default document is its pooled words alone, ``h = ½ ctx + ½ pool``);
* the context words ``x_j`` of the target's window, weighted by ``p = softmax(c[w_j])``;
* ``x_i``: ``P`` words drawn at random from the same document (the target excluded), pooled by
  ``q = softmax(r[w_i])``. This is Doc2VecC's corruption (Chen 2017) with a **learned** pooling
  instead of the plain average: ``r`` is one salience score per word, learned from the loss.
  With ``pool_group = g > 1`` (config) a batch holds runs of ``g`` positions of a document and draws one
  sample per document per batch, shared by those examples (the target not excluded; Doc2VecC excludes it):
  the pooling is computed once per document instead of once per target.

With ``pool_loss = λ > 0`` (config; 8 by default) the document's representation also predicts the target on
its own, PV-DBOW's objective: the loss adds ``λ`` times the negative-sampling loss of ``u = sum_i q_i x_i``
alone (the pooled words; with a free vector, ``s_d > 0``, of ``model.dv``'s mix ``(s_d d + s_p u) / (s_d +
s_p)``, so that the free vector learns PV-DBOW's way too), and the context cannot take the document's part of
the prediction away (measured +7.6 points on 20 Newsgroups, docs/attention-designs.md, round 5).

``context_scores`` says how context words are scored: ``"word"`` (the default, ``c[w]``: one score per
word), ``"word+position"`` (``c[w] + b[pos]``) or ``"shared"`` (the document's ``r[w]``). Measured on 20
Newsgroups (docs/attention-designs.md), a position score learns to favour the adjacent words and costs
the document vectors several points, as ``wordpos`` did. ``attention_parts`` picks which of the two
attentions learns (``"both"``, ``"document"`` or ``"context"``); the other stays uniform.
A document's representation (``model.dv``) is ``(s_d d + s_p pool(doc)) / (s_d + s_p)`` (``pool(doc)`` by
default) where
``pool(doc)`` pools *all* its words with ``softmax(r)``: a forward pass, no optimisation needed
for the pooled part. Sampling a few words per target gives every word of a long document its
share of training without a Python loop, and the random subset acts as Doc2VecC's corruption.

With ``pool_heads = H > 1`` (config) the document's pooling has ``H`` heads: ``r`` holds ``H`` scores per word,
and head ``h`` pools slice ``h`` of the word vectors (``D / H`` components) with ``softmax(r[:, h])``, so
``u = concat_h sum_i q_hi x_i[slice h]`` (multi-head attention whose values are the word vectors cut into
slices): one head may weigh a review's sentiment words while another weighs its topic.

With ``own_values`` (config ``pool_values="own"``) the pooled words' vectors ``x_i`` come from a table of their
own (the module's ``pool_vectors``) instead of the word vectors the context words use.

With ``uniform_attention=True`` the scores stay at zero: the design's uniform twin (plain means).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attn_doc2vec.context.base import ContextInputs, ContextLayer, ContextOutput, document_mean, masked_softmax

CONTEXT_SCORES = ("word+position", "word", "shared")
ATTENTION_PARTS = ("both", "document", "context")


class PooledAttention(ContextLayer):
    """Attentive context words plus attention-pooled document words (see the module docstring).

    Parameters
    ----------
    n_words, vector_size, window : int
        Vocabulary size, vector size and maximum context distance.
    doc_share, pool_share : float
        ``s_d`` and ``s_p``; the context words get ``1 - s_d - s_p``.
    pool_sample : int
        ``P``, words drawn from the document per target.
    pool_loss : float
        Weight of a second loss in which the pooled words alone predict the target (0: none).
    pool_heads : int
        Heads of the document pooling, each over its own slice of the vectors (must divide ``vector_size``).
    own_values : bool
        The pooled words' vectors come from a table of their own (the module's ``pool_vectors``), not from the
        word vectors of the context.
    uniform : bool
        Keep every score at zero (the uniform twin).
    """

    name = "attention"

    def __init__(self, n_words: int, vector_size: int, window: int, doc_share: float, pool_share: float,
                 pool_sample: int, uniform: bool = False, parts: str = "both",
                 context_scores: str = "word", pool_loss: float = 0.0, pool_heads: int = 1,
                 own_values: bool = False) -> None:
        super().__init__()
        self.learned = not uniform
        if parts not in ATTENTION_PARTS:
            raise ValueError(f"The 'attention_parts' parameter must be 'both', 'document' or 'context'. "
                             f"Got {parts!r} instead.")
        # which attention learns: over the context words, over the document's words, or both
        self.frozen = {"document": {"row_context", "position_bias"}, "context": {"row_salience"}}.get(parts, set())
        if context_scores not in CONTEXT_SCORES:
            raise ValueError(f"The 'context_scores' parameter must be one of {', '.join(map(repr, CONTEXT_SCORES))}. "
                             f"Got {context_scores!r} instead.")
        self.context_scores = context_scores
        if context_scores != "word+position":
            self.frozen = self.frozen | {"position_bias"}
        if context_scores == "shared":  # r scores both; it learns from both unless parts="context" freezes it
            self.frozen = self.frozen | {"row_context"}
        if doc_share + pool_share >= 1.0:
            raise ValueError(f"doc_share + pool_share must be < 1 so that the context words keep a share. "
                             f"Got {doc_share} + {pool_share}.")
        if pool_heads < 1 or vector_size % pool_heads or (pool_heads > 1 and context_scores == "shared"):
            raise ValueError(f"pool_heads must divide vector_size ({vector_size}) and, above 1, cannot go with "
                             f"context_scores='shared'. Got pool_heads={pool_heads!r}.")
        self.pool_heads = pool_heads
        self.own_values = own_values
        self.shares = (doc_share, 1.0 - doc_share - pool_share, pool_share)
        self.pool_sample = pool_sample
        self.pool_loss = pool_loss
        # r: document attention, one score per word (and head: (n_words, H) when pool_heads > 1)
        shape = (n_words,) if pool_heads == 1 else (n_words, pool_heads)
        self.row_salience = nn.Parameter(torch.zeros(shape), requires_grad=False)
        self.row_context = nn.Parameter(torch.zeros(n_words), requires_grad=False)  # c: context attention
        self.position_bias = nn.Parameter(torch.zeros(2 * window), requires_grad=False)  # b

    def forward(self, inputs: ContextInputs) -> ContextOutput:
        dtype = inputs.word_x.dtype
        d, n_tags = document_mean(inputs)  # (B, D), (B,)
        p = masked_softmax(self.context_score(inputs.words, inputs.positions), inputs.word_mask)  # (B, S)
        ctx = torch.einsum("bs,bsd->bd", p, inputs.word_x)  # (B, D)
        if inputs.pool_x is None:  # weights only (attention extraction): the document's words count as present
            pooled, has_pool = torch.zeros_like(ctx), torch.ones_like(n_tags, dtype=torch.bool)
        else:
            has_pool = inputs.pool_mask.any(1)
            if self.pool_heads == 1:
                q = masked_softmax(self.row_salience[inputs.pool_words], inputs.pool_mask)  # (R, P)
                pooled = torch.einsum("rp,rpd->rd", q, inputs.pool_x)  # (R, D)
            else:  # head h pools slice h of the vectors with its own softmax
                n_rows, n_pool, dim = inputs.pool_x.shape
                scores = self.row_salience[inputs.pool_words].transpose(1, 2)  # (R, H, P)
                q = masked_softmax(scores, inputs.pool_mask[:, None, :])
                values = inputs.pool_x.reshape(n_rows, n_pool, self.pool_heads, dim // self.pool_heads)
                pooled = torch.einsum("rhp,rphk->rhk", q, values).reshape(n_rows, dim)
            if inputs.pool_index is not None:  # a document's examples share its sample
                pooled, has_pool = pooled[inputs.pool_index], has_pool[inputs.pool_index]
        present = torch.stack([n_tags > 0, inputs.word_mask.any(1), has_pool], 1).to(dtype)
        share = present * torch.tensor(self.shares, dtype=dtype, device=d.device)  # (B, 3)
        share = share / share.sum(1, keepdim=True).clamp(min=1e-12)  # a missing part gives its share away
        h = share[:, :1] * d + share[:, 1:2] * ctx + share[:, 2:] * pooled
        out = ContextOutput(h=h, doc_weight=share[:, 0], attention=p, word_weights=share[:, 1:2] * p)
        if self.pool_loss > 0:  # the document's representation alone predicts the target too (PV-DBOW's objective)
            if self.shares[0] == 0:  # no free vector: the pooled words (no sample: no loss)
                out.doc_query, out.doc_query_weight = pooled, self.pool_loss * has_pool.to(dtype)
            else:  # model.dv's mix of the free vector and the pooled words, over the parts present
                a_d, a_p = share[:, :1], share[:, 2:]
                total = a_d + a_p
                y_d = a_d / total.clamp(min=1e-12)
                out.doc_query = y_d * d + (1 - y_d) * pooled
                out.doc_query_weight = self.pool_loss * (total[:, 0] > 0).to(dtype)
        return out

    def context_score(self, words: Tensor, positions: Tensor) -> Tensor:
        """Scores ``e`` of context words: ``c[w] + b[pos]``, ``c[w]`` or the shared ``r[w]``."""
        if self.context_scores == "shared":
            return self.row_salience[words]
        if self.context_scores == "word":
            return self.row_context[words]
        return self.row_context[words] + self.position_bias[positions]

    def pool_weights(self, words: Tensor) -> Tensor:
        """Scores of ``words`` in the document pooling: ``(...,)``, or ``(..., H)`` with ``pool_heads = H > 1``."""
        return self.row_salience[words]

    def document_shares(self) -> tuple[float, float]:
        return self.shares[0], self.shares[2]
