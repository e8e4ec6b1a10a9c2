"""``docquery``: the document vector is the query of the attention over its context words.

::

    h = s_d * d + (1 - s_d) * sum_j p_j x_j,      p = softmax((Q d) . x_j / sqrt(D) + b[pos_j])

The attention depends on the document, so the document vector receives a gradient through the
attention as well as through its own share; ``context_dropout`` hides a random part of the
context words in training so that the context cannot explain every target by itself. ``Q``
(``D x D``) and ``b`` start at zero: an untrained layer is mean PV-DM with the document share
``s_d``. With ``uniform_attention=True`` they stay at zero (the uniform twin, same dropout).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attn_doc2vec.context.base import ContextInputs, ContextLayer, ContextOutput, document_mean, masked_softmax


class DocQueryAttention(ContextLayer):
    """Document-dependent attention over the context words (see the module docstring)."""

    name = "docquery"

    def __init__(self, n_words: int, vector_size: int, window: int, doc_share: float, context_dropout: float,
                 uniform: bool = False) -> None:
        super().__init__()
        self.learned = not uniform
        self.doc_share = doc_share
        self.context_dropout = context_dropout
        self.query = nn.Parameter(torch.zeros(vector_size, vector_size), requires_grad=False)  # Q
        self.position_bias = nn.Parameter(torch.zeros(2 * window), requires_grad=False)  # b

    def forward(self, inputs: ContextInputs) -> ContextOutput:
        dtype = inputs.word_x.dtype
        d, _ = document_mean(inputs)  # (B, D)
        mask = inputs.word_mask  # in training the sampler has hidden context_dropout of the words already
        q = d @ self.query.T  # (B, D)
        scores = torch.einsum("bd,bsd->bs", q, inputs.word_x) / math.sqrt(q.shape[1])
        p = masked_softmax(scores + self.position_bias[inputs.positions], mask)  # (B, S)
        ctx = torch.einsum("bs,bsd->bd", p, inputs.word_x)
        s_d = torch.where(mask.any(1), self.doc_share, 1.0).to(dtype)  # (B,)
        h = s_d[:, None] * d + (1 - s_d)[:, None] * ctx
        return ContextOutput(h=h, doc_weight=s_d, attention=p, word_weights=(1 - s_d)[:, None] * p)
