"""``docloss``: word x position attention over the context, plus a document loss of its own.

The context part is PV-DM with Ling et al.'s attention (``p = softmax(u[w_j, pos_j] + b[pos_j])``)
and a fixed document share ``s_d``. Besides, the document vector alone predicts the target as in
PV-DBOW, each target weighted by what the attentive context failed to predict,
``1 - sigmoid(h . v_target)`` (no gradient through the weight): the better the context explains a
word, the less the document is asked to, but the context can no longer take the document's
gradient away. With ``uniform_attention=True`` the scores stay at zero (the uniform twin).
"""

from __future__ import annotations

import torch
from torch import nn

from attn_doc2vec.context.base import ContextInputs, ContextLayer, ContextOutput, document_mean, masked_softmax


class DocLossAttention(ContextLayer):
    """Attentive PV-DM plus a weighted PV-DBOW loss on the document vector (see the module docstring)."""

    name = "docloss"

    def __init__(self, n_words: int, vector_size: int, window: int, doc_share: float, uniform: bool = False) -> None:
        super().__init__()
        self.learned = not uniform
        self.doc_share = doc_share
        self.row_scores = nn.Parameter(torch.zeros(n_words, 2 * window), requires_grad=False)  # u
        self.position_bias = nn.Parameter(torch.zeros(2 * window), requires_grad=False)  # b

    def forward(self, inputs: ContextInputs) -> ContextOutput:
        dtype = inputs.word_x.dtype
        d, _ = document_mean(inputs)  # (B, D)
        scores = self.row_scores[inputs.words, inputs.positions] + self.position_bias[inputs.positions]
        p = masked_softmax(scores, inputs.word_mask)  # (B, S)
        ctx = torch.einsum("bs,bsd->bd", p, inputs.word_x)
        s_d = torch.where(inputs.word_mask.any(1), self.doc_share, 1.0).to(dtype)
        h = s_d[:, None] * d + (1 - s_d)[:, None] * ctx
        return ContextOutput(h=h, doc_weight=s_d, attention=p, word_weights=(1 - s_d)[:, None] * p, doc_query=d)
