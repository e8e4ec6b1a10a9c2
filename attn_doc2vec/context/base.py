"""What every context design shares: the inputs it combines and the interface it implements.

A *context design* decides how PV-DM turns the document and the context words of one
target into the hidden vector ``h`` that predicts the target (negative sampling does the
rest). Each design is one file in this package, registered by name in
:mod:`attn_doc2vec.context`; ``Doc2VecConfig.context`` picks one and checkpoints record it.

Two families:

* **Hand-written** designs (``mean``, ``sum``, ``wordpos``) have exact, explicit gradients in
  :class:`~attn_doc2vec.model.Doc2VecModule` and fused Numba kernels; they train with
  gensim's SGD rules.
* **Autograd** designs (``attention`` and the other designs with a layer of parameters) are
  ``nn.Module`` s whose ``forward`` is differentiated by PyTorch; they train with row-wise
  Adagrad (see :mod:`attn_doc2vec.optim`) in the PyTorch backend, on any device.

Shapes: ``B`` examples, ``T`` document slots, ``S = 2 * window`` context slots, ``P`` words
sampled from the example's own document, ``D = vector_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class ContextInputs:
    """Everything a design may combine for one batch of targets (gathered rows, not indexes).

    Attributes
    ----------
    doc_x : Tensor
        ``(B, T, D)`` document vectors of the example's tags (zero rows on padding).
    doc_mask : Tensor
        ``(B, T)`` bool, True for real tags.
    word_x : Tensor
        ``(B, S, D)`` context-word vectors.
    words : Tensor
        ``(B, S)`` int64 context-word rows.
    positions : Tensor
        ``(B, S)`` int64 relative-position slot of each context word.
    word_mask : Tensor
        ``(B, S)`` bool, True where a context slot holds a real word.
    pool_x : Tensor or None
        ``(R, P, D)`` vectors of words sampled from the examples' own documents (designs that pool
        the document's words), else None.
    pool_words : Tensor or None
        ``(R, P)`` int64 rows of those words.
    pool_mask : Tensor or None
        ``(R, P)`` bool, True for real samples.
    pool_index : Tensor or None
        ``(B,)`` the sample row each example uses (None: row ``b`` for example ``b``, ``R = B``).
    """

    doc_x: Tensor
    doc_mask: Tensor
    word_x: Tensor
    words: Tensor
    positions: Tensor
    word_mask: Tensor
    pool_x: Tensor | None = None
    pool_words: Tensor | None = None
    pool_mask: Tensor | None = None
    pool_index: Tensor | None = None


@dataclass
class ContextOutput:
    """What a design returns for one batch.

    Attributes
    ----------
    h : Tensor
        ``(B, D)`` hidden vector that predicts the target.
    doc_weight : Tensor
        ``(B,)`` total weight of the free document vector(s) in ``h``.
    attention : Tensor
        ``(B, S)`` the softmax over the context words (sums to 1 over the valid slots, 0 on padding).
    word_weights : Tensor
        ``(B, S)`` the weight of each context word in ``h``.
    doc_query : Tensor or None
        ``(B, D)`` a vector that, dotted with an output vector, predicts from the document alone
        (designs with a document loss of their own), else None.
    doc_query_weight : Tensor or None
        ``(B,)`` weight of that loss per example; None weights each target by what the context failed to predict,
        ``1 - sigmoid(h . v_target)`` (``docloss``).
    """

    h: Tensor
    doc_weight: Tensor
    attention: Tensor
    word_weights: Tensor
    doc_query: Tensor | None = None
    doc_query_weight: Tensor | None = None


class ContextLayer(nn.Module):
    """Base class of the autograd context designs.

    Subclasses set :attr:`name`, create their parameters in ``__init__(n_words, vector_size,
    window, config)`` (starting from uniform weights: an untrained layer is mean PV-DM with the
    design's shares) and implement :meth:`forward`. Parameters whose name starts with ``row_``
    are per-word tables, ``(n_words, ...)``; the rest are small dense tensors. Parameters are created with
``requires_grad=False`` (training enables autograd for one step at a time), so inference and plots
never build graphs.
    """

    name: str = ""
    learned: bool = True  # False: the scores stay at zero (``uniform_attention``, the uniform twin)
    frozen: frozenset = frozenset()  # names of parameters kept at zero even when learned

    def learnable(self) -> list[str]:
        """Names of the parameters that training updates."""
        return [n for n, _ in self.named_parameters() if self.learned and n not in self.frozen]
    pool_sample: int = 0  # words sampled from the example's document per target (0: none)
    context_dropout: float = 0.0  # training-time probability of hiding each context word

    def forward(self, inputs: ContextInputs) -> ContextOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def pool_weights(self, words: Tensor) -> Tensor | None:
        """Unnormalized log-weights of words pooled into the document's representation, or None.

        Designs that pool a document's own words return ``(...,)`` scores for word rows ``words`` (``(..., H)``
        with ``H`` heads, head ``h`` pooling slice ``h`` of the vectors);
        :func:`attn_doc2vec.context.pooled_documents` turns them into a softmax over each document (per head).
        """
        return None

    def document_shares(self) -> tuple[float, float]:
        """Weights of the free document vector and of the pooled document words in the document's
        representation (``model.dv``): ``(1, 0)`` for designs without pooling."""
        return 1.0, 0.0


def document_mean(inputs: ContextInputs) -> tuple[Tensor, Tensor]:
    """The mean of an example's document vectors, ``(B, D)``, and its number of tags, ``(B,)``."""
    valid = inputs.doc_mask.to(inputs.doc_x.dtype)  # (B, T)
    n_tags = valid.sum(1)
    return (inputs.doc_x * valid[..., None]).sum(1) / n_tags.clamp(min=1)[:, None], n_tags


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis restricted to ``mask``; all-masked rows give zeros."""
    scores = scores.masked_fill(~mask, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True).clamp(min=-1e30)  # finite even for all-masked rows
    e = (scores - top).exp() * mask
    return e / e.sum(dim=-1, keepdim=True).clamp(min=1e-30)


def pooled_documents(layer: ContextLayer, word_vectors: Tensor, tokens: Tensor, offsets: Tensor,
                     chunk_tokens: int = 1 << 20) -> Tensor:
    """Every document's words pooled with the layer's weights: ``sum_i softmax(r)_i x_i`` per document (with
    several heads, head ``h``'s softmax pools slice ``h`` of the vectors).

    Parameters
    ----------
    layer : ContextLayer
        A design whose :meth:`~ContextLayer.pool_weights` is not None.
    word_vectors : Tensor
        ``(V, D)`` the word table.
    tokens : Tensor
        ``(N,)`` int32 or int64 word rows of all documents, concatenated.
    offsets : Tensor
        ``(n_docs + 1,)`` int64 start of each document in ``tokens``.
    chunk_tokens : int
        Bound on the tokens gathered at once (memory).

    Returns
    -------
    Tensor
        ``(n_docs, D)``; zero rows for empty documents.
    """
    n_docs = offsets.shape[0] - 1
    out = torch.zeros((n_docs, word_vectors.shape[1]), dtype=word_vectors.dtype, device=word_vectors.device)
    lengths = offsets[1:] - offsets[:-1]
    begin = 0
    while begin < n_docs:  # whole documents per chunk, about chunk_tokens tokens each
        limit = int(torch.searchsorted(offsets, offsets[begin] + chunk_tokens, right=True))
        end = min(n_docs, max(begin + 1, limit - 1))
        lo, hi = int(offsets[begin]), int(offsets[end])
        rows = tokens[lo:hi].long()
        doc = torch.repeat_interleave(torch.arange(end - begin, device=rows.device), lengths[begin:end])
        scores = layer.pool_weights(rows).to(word_vectors.dtype).reshape(rows.shape[0], -1)  # (n, H)
        heads = scores.shape[1]
        top = torch.full((end - begin, heads), -torch.inf, dtype=scores.dtype, device=scores.device)
        top = top.scatter_reduce(0, doc[:, None].expand(-1, heads), scores, reduce="amax")
        e = (scores - top[doc]).exp()
        total = torch.zeros_like(top).index_add_(0, doc, e)
        weights = (e / total[doc]).repeat_interleave(word_vectors.shape[1] // heads, dim=1)  # (n, D): a head a slice
        out[begin:end].index_add_(0, doc, weights * word_vectors[rows])
        begin = end
    return out
