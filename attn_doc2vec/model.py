"""The Doc2Vec network: embeddings, the attention layer and the negative-sampling loss.

Pure tensor code: no file IO, no gensim, no printing.

Notation (shapes in comments): ``B`` examples in a batch, ``T`` document slots
per example (the document's tags, usually 1), ``S = 2 * window`` context-word
slots, ``K = 1 + negative`` output words (the target first, then the negatives),
``D = vector_size``.

Two families of context designs (see :mod:`attn_doc2vec.context`). The hand-written ones
(``mean``, ``sum``, ``wordpos``) have explicit gradients here. ``wordpos`` follows Ling et al. (2015, "Not All
Contexts Are Created Equal"): the context word ``w_j`` at relative position ``p_j``
gets the score ``e_j = u[w_j, p_j] + b[p_j]`` and the weight ``p = softmax(e)`` over
the valid words of the window. The document vector keeps the share it has in
gensim's mean PV-DM, so that it is always trained as strongly as there:

    h = (1 / n) * d  +  (m / n) * sum_j p_j * x_j        (m context words, n = m + 1)

The weights ``a = (1/n, m/n * p)`` of all slots sum to 1. ``u`` (one score per
word and position) and ``b`` (one per position) start at zero, so an untrained
layer is exactly gensim's mean PV-DM; training moves weight towards the context
words that predict the target well.

The autograd designs (``attention``, ``docquery``, ``docloss``) live in a
:class:`~attn_doc2vec.context.ContextLayer` held as ``module.layer``; :meth:`Doc2VecModule.layer_loss`
is their forward pass, differentiated by autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attn_doc2vec.context import HAND_WRITTEN, ContextInputs, ContextLayer, ContextOutput

MASKED = -1e30  # score of padding: exp() underflows to 0, and an all-padding row stays finite
ROWS_AT_ONCE = 1 << 16  # documents (table rows) handled at once by the passes over every document


@dataclass
class Batch:
    """One vectorized training or inference step.

    Attributes
    ----------
    doc_slots : Tensor
        ``(B, T)`` int64 rows of the document matrix; ``-1`` marks padding.
    words : Tensor
        ``(B, S)`` int64 context-word rows (any valid row where masked); ``(B, 0)`` for PV-DBOW.
    positions : Tensor
        ``(B, S)`` int64 relative-position index in ``[0, S)``.
    word_mask : Tensor
        ``(B, S)`` bool, True where a context slot holds a real word.
    outputs : Tensor
        ``(B, K)`` int64 output rows: the target, then the negatives (negative sampling), then with
        ``hs=1`` the inner nodes of the target's Huffman path.
    output_mask : Tensor
        ``(B, K)`` bool, False for negatives that drew the target itself (gensim skips them) and for padding
        of the Huffman paths.
    output_labels : Tensor or None
        ``(B, K)`` float labels of the outputs (1: predict "yes"): None means negative sampling's layout,
        1 for the first column and 0 for the rest; with ``hs=1``, ``1 - code`` on the Huffman path.
    pool_words : Tensor or None
        ``(R, P)`` int64 rows of words sampled from the examples' documents (designs that pool them):
        one sample per example (``R = B``) unless ``pool_index`` says which sample each example uses.
    pool_mask : Tensor or None
        ``(R, P)`` bool, True for real samples.
    pool_index : Tensor or None
        ``(B,)`` int64 sample row of each example (``Doc2VecConfig.pool_group``: a document's examples in a
        batch share one sample); None: example ``b`` uses row ``b``.
    """

    doc_slots: Tensor
    words: Tensor
    positions: Tensor
    word_mask: Tensor
    outputs: Tensor
    output_mask: Tensor
    pool_words: Tensor | None = None
    pool_mask: Tensor | None = None
    pool_index: Tensor | None = None
    output_labels: Tensor | None = None

    def labels(self) -> Tensor:
        """``(B, K)`` float32 output labels (:attr:`output_labels`, or negative sampling's layout)."""
        if self.output_labels is not None:
            return self.output_labels
        label = torch.zeros(self.outputs.shape, dtype=torch.float32, device=self.outputs.device)
        label[:, 0] = 1.0
        return label


@dataclass
class Gradients:
    """Exact gradients of the summed batch loss, as dense per-slot values (see :meth:`Doc2VecModule.gradients`)."""

    loss: Tensor  # () summed loss of the batch
    slots: Tensor  # (B, T+S, D) dL/dx for each document and word slot
    outputs: Tensor  # (B, K, D) dL/dv for each output row
    scores: Tensor | None  # (B, S) dL/de of the context-word scores, attention only
    weights: Tensor  # (B, T+S) the combination weights a used in the forward pass


class Doc2VecModule(nn.Module):
    """Document, word and output embeddings plus the context-combination layer.

    Parameters
    ----------
    n_words, n_docs, vector_size : int
        Table sizes.
    window : int
        Maximum context distance; there are ``2 * window`` relative positions.
    context : str
        A design name of :mod:`attn_doc2vec.context` (ignored when ``dm == 0``).
    dm : int
        1 for PV-DM, 0 for PV-DBOW.
    doc_share : float or None
        Hand-written designs: the document's fixed share (None: 1/n).
    layer : ContextLayer or None
        The autograd design's layer (required for those designs, None otherwise).
    hs : int
        1: the output table also holds gensim's ``syn1`` (hierarchical softmax's inner nodes) below the
        negative-sampling rows: ``output_vectors`` is ``(2 V, D)``, rows ``V + i`` for node ``i``.
    dm_tag_count : int
        ``context="concat"``: document vectors at the head of the concatenated input; the output vectors
        are ``(dm_tag_count + 2 window) D`` long (gensim's ``layer1_size``).
    doc_table : callable, optional
        ``doc_table(name, shape) -> Tensor``: creates the per-document tables (``doc_vectors``,
        ``adagrad_docs``, ``pooled_docs`` and, for :meth:`document_vectors` of the pooling design, ``dv``),
        zero-filled, e.g. in memory-mapped files (:class:`attn_doc2vec.doc_tables.MappedTables`); default: in
        memory (and ``document_vectors`` returns a new table each call).
    """

    def __init__(self, n_words: int, n_docs: int, vector_size: int, window: int, context: str, dm: int,
                 doc_share: float | None = None, layer: ContextLayer | None = None, hs: int = 0,
                 dm_tag_count: int = 1, doc_table: Callable[[str, tuple[int, ...]], Tensor] | None = None) -> None:
        super().__init__()
        if dm == 1 and context not in HAND_WRITTEN and layer is None:
            raise ValueError(f"context={context!r} needs its ContextLayer: build it with "
                             "attn_doc2vec.context.build_layer(config, n_words).")
        self.layer = layer if dm == 1 else None
        table = doc_table or (lambda _, shape: torch.zeros(shape))
        if self.layer is not None:  # row-wise Adagrad accumulators (attn_doc2vec.optim), saved with the model
            self.register_buffer("adagrad_docs", table("adagrad_docs", (n_docs,)))
            self.register_buffer("adagrad_words", torch.zeros(n_words))
            self.register_buffer("adagrad_outputs", torch.zeros(n_words))
            for name, param in self.layer.named_parameters():
                self.register_buffer("adagrad_layer_" + name.replace(".", "_"), torch.zeros_like(param))
            if self.layer.pool_sample:  # each tag's documents, pooled over all their words (see pool_tags)
                self.register_buffer("pooled_docs", table("pooled_docs", (n_docs, vector_size)))
                if doc_table is not None:  # model.dv's mix of the free vector and pooled words, built in there
                    self.register_buffer("dv_table", table("dv", (n_docs, vector_size)), persistent=False)
        self.doc_share = doc_share
        self.context = context
        self.dm = dm
        self.window = window
        self.doc_vectors = nn.Parameter(table("doc_vectors", (n_docs, vector_size)), requires_grad=False)
        self.word_vectors = nn.Parameter(torch.zeros(n_words, vector_size), requires_grad=False)
        if self.layer is not None and getattr(self.layer, "own_values", False):  # pool_values="own"
            self.pool_vectors = nn.Parameter(torch.zeros(n_words, vector_size), requires_grad=False)
            self.register_buffer("adagrad_pool", torch.zeros(n_words))
        self.dm_tag_count = dm_tag_count
        out_size = (dm_tag_count + 2 * window) * vector_size if self.concatenates else vector_size
        # gensim's syn1neg, then (hs=1) its syn1
        self.output_vectors = nn.Parameter(torch.zeros(n_words * (1 + hs), out_size), requires_grad=False)
        n_pos = 2 * window
        if self.uses_attention:
            self.word_scores = nn.Parameter(torch.zeros(n_words, n_pos), requires_grad=False)  # u
            self.position_scores = nn.Parameter(torch.zeros(n_pos), requires_grad=False)  # b

    @classmethod
    def from_config(cls, config, n_words: int, n_docs: int,
                    doc_table: Callable[[str, tuple[int, ...]], Tensor] | None = None) -> Doc2VecModule:
        """The module a :class:`~attn_doc2vec.config.Doc2VecConfig` describes (tables zero until
        :meth:`reset_parameters` or a checkpoint fills them; ``doc_table`` as in the class)."""
        from attn_doc2vec.context import build_layer

        return cls(n_words, n_docs, config.vector_size, config.window, config.context, config.dm, config.doc_share,
                   layer=build_layer(config, n_words), hs=config.hs, dm_tag_count=config.dm_tag_count,
                   doc_table=doc_table)

    @property
    def pools_documents(self) -> bool:
        """True when the design represents a document by pooling its own words too (``attention``)."""
        return self.layer is not None and self.layer.pool_sample > 0

    @property
    def own_pool_values(self) -> bool:
        """True when the document pooling has a table of its own, ``pool_vectors`` (``pool_values="own"``)."""
        return hasattr(self, "pool_vectors")

    @property
    def pool_table(self) -> Tensor:
        """The vectors the document pooling averages: ``pool_vectors`` (``pool_values="own"``) or the word
        vectors."""
        return self.pool_vectors if self.own_pool_values else self.word_vectors

    def pool_tags(self, tokens: Tensor, offsets: Tensor, tags: Tensor, n_rows: int,
                  pool: Callable[..., Tensor] | None = None,
                  reduce: Callable[[Tensor], Tensor] | None = None, out: Tensor | None = None) -> Tensor:
        """Pooled words of every tag row: the mean over the tag's documents of their pooled words.

        Documents are pooled ``ROWS_AT_ONCE`` at a time, so the only table-sized array is the result.

        Parameters
        ----------
        tokens, offsets : Tensor
            ``(N,)`` word rows and ``(n_docs + 1,)`` document starts.
        tags : Tensor
            ``(n_docs, T)`` tag rows of each document, ``-1`` padded.
        n_rows : int
            Rows of the result (documents' tag rows index it).
        pool : callable, optional
            ``pool(layer, vectors, tokens, offsets) -> (n_docs, D)``, the per-document pooling of
            :attr:`pool_table`
            (default :func:`attn_doc2vec.context.pooled_documents`; the CPU backend passes its kernel's).
        reduce : callable, optional
            Sums a tensor in place over the processes of a distributed run, whose ranks each hold part of the
            documents: the sums and counts per row are added up before the mean.
        out : Tensor, optional
            ``(n_rows, D)`` written in place and returned (e.g. ``pooled_docs``, or a memory-mapped table).

        Returns
        -------
        Tensor
            ``(n_rows, D)``; zero for rows no document uses.
        """
        from attn_doc2vec.context import pooled_documents

        pool = pool or pooled_documents
        dtype, device = self.word_vectors.dtype, self.word_vectors.device
        if out is None:
            out = torch.zeros((n_rows, self.word_vectors.shape[1]), dtype=dtype, device=device)
        else:
            out.zero_()
        count = torch.zeros(n_rows, dtype=dtype, device=device)
        for lo in range(0, tags.shape[0], ROWS_AT_ONCE):  # a slice of the documents at a time
            hi = min(tags.shape[0], lo + ROWS_AT_ONCE)
            start, stop = int(offsets[lo]), int(offsets[hi])
            per_doc = pool(self.layer, self.pool_table, tokens[start:stop], offsets[lo:hi + 1] - start)
            valid = tags[lo:hi] >= 0
            doc_of = torch.arange(hi - lo, device=tags.device)[:, None].expand_as(tags[lo:hi])[valid]
            out.index_add_(0, tags[lo:hi][valid], per_doc[doc_of])
            count.index_add_(0, tags[lo:hi][valid], torch.ones_like(doc_of, dtype=dtype))
            del per_doc
        if reduce is not None:
            reduce(out)
            reduce(count)
        return out.div_(count.clamp_(min=1)[:, None])  # in place: one (n_rows, D) table at a time

    def document_vectors(self, docs: Tensor | None = None, pooled: Tensor | None = None,
                         out: Tensor | None = None) -> Tensor:
        """Each document's representation (``model.dv``): its free vector, mixed for ``attention`` with its
        pooled words as in the hidden vector, ``(s_d d + s_p pool) / (s_d + s_p)``; written into ``out`` when
        given (designs that mix; default: the module's ``dv_table`` if ``doc_table`` made one, else a new
        table), ``ROWS_AT_ONCE`` rows at a time."""
        docs = self.doc_vectors if docs is None else docs
        if not self.pools_documents:
            return docs
        pooled = self.pooled_docs if pooled is None else pooled
        s_d, s_p = self.layer.document_shares()
        out = getattr(self, "dv_table", None) if out is None else out
        mixed = torch.empty_like(pooled) if out is None else out
        for lo in range(0, pooled.shape[0], ROWS_AT_ONCE):
            part, free = mixed[lo:lo + ROWS_AT_ONCE], docs[lo:lo + ROWS_AT_ONCE]
            torch.mul(pooled[lo:lo + ROWS_AT_ONCE], s_p / (s_d + s_p), out=part)
            if s_d:
                part.add_(free, alpha=s_d / (s_d + s_p))
            # a document with no known word has nothing to pool (an exactly zero row): it keeps its free vector
            empty = ~pooled[lo:lo + ROWS_AT_ONCE].any(dim=1)
            part[empty] = free[empty]
        return mixed

    @property
    def concatenates(self) -> bool:
        """True for gensim's ``dm_concat=1`` (``context="concat"``)."""
        return self.dm == 1 and self.context == "concat"

    def concat_input(self, batch: Batch, doc_vectors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``context="concat"``: each example's input ``h``, its first ``dm_tag_count`` document vectors and
        its ``2 window`` context vectors (the sampler pads them with gensim's null word) concatenated,
        ``(B, (dm_tag_count + S) D)``; and which examples count, ``(B,)`` bool (gensim skips a document with
        another number of tags)."""
        t = self.dm_tag_count
        docs = self.doc_vectors if doc_vectors is None else doc_vectors
        tags = batch.doc_slots[:, :t]
        valid = (batch.doc_slots >= 0).sum(dim=1) == t
        if tags.shape[1] < t:  # no document in this corpus has that many tags
            valid = torch.zeros_like(valid)
            tags = torch.nn.functional.pad(tags, (0, t - tags.shape[1]), value=0)
        x = torch.cat([docs[tags.clamp(min=0)], self.word_vectors[batch.words]], dim=1)  # (B, t + S, D)
        return x.reshape(x.shape[0], -1), valid

    @property
    def uses_attention(self) -> bool:
        """True for the hand-written word x position attention (``context="wordpos"``)."""
        return self.dm == 1 and self.context == "wordpos"

    @property
    def uses_layer(self) -> bool:
        """True for the autograd designs (a :class:`~attn_doc2vec.context.ContextLayer`)."""
        return self.layer is not None

    def reset_parameters(self, generator: torch.Generator) -> None:
        """word2vec's initialization: inputs uniform in ``±0.5 / D``, outputs and scores zero (uniform attention)."""
        dim = self.word_vectors.shape[1]
        inputs = (self.word_vectors, self.doc_vectors, *((self.pool_vectors,) if self.own_pool_values else ()))
        for table in inputs:  # pool_vectors drawn last: the other tables' draws do not depend on it
            for lo in range(0, table.shape[0], ROWS_AT_ONCE):  # in slices: no table-sized temporary (same draws)
                rows = table.data[lo:lo + ROWS_AT_ONCE]
                rows.copy_((torch.rand(rows.shape, generator=generator, device=table.device) - 0.5) / dim)
        self.output_vectors.data.zero_()
        if self.uses_attention:
            self.word_scores.data.zero_()
            self.position_scores.data.zero_()
        if self.layer is not None:
            for param in self.layer.parameters():
                param.data.zero_()
            for name, buffer in self.named_buffers():
                if name.startswith("adagrad_"):
                    buffer.zero_()

    # ----------------------------------------------------------------------------------------
    # Forward pass, written with differentiable ops: the reference the explicit gradients are
    # tested against, and the source of the attention weights for plots.

    def slot_vectors(self, batch: Batch, doc_vectors: Tensor | None = None) -> Tensor:
        """Vectors of every document and word slot, ``(B, T+S, D)``."""
        docs = self.doc_vectors if doc_vectors is None else doc_vectors
        doc_x = docs[batch.doc_slots.clamp(min=0)]  # (B, T, D)
        if batch.words.shape[1] == 0:
            return doc_x
        return torch.cat([doc_x, self.word_vectors[batch.words]], dim=1)  # (B, T+S, D)

    def slot_mask(self, batch: Batch) -> Tensor:
        """``(B, T+S)`` bool mask of real slots."""
        return torch.cat([batch.doc_slots >= 0, batch.word_mask], dim=1)

    def scores(self, batch: Batch, word_scores: Tensor | None = None,
               position_scores: Tensor | None = None) -> Tensor:
        """Attention scores ``e`` of the context words, ``(B, S)``, ``MASKED`` on padding (attention only).

        The optional arguments replace the module's own score tables (used by gradient checks).
        """
        u = self.word_scores if word_scores is None else word_scores
        b = self.position_scores if position_scores is None else position_scores
        e = u[batch.words, batch.positions] + b[batch.positions]  # (B, S)
        return e.masked_fill(~batch.word_mask, MASKED)

    def attention(self, batch: Batch, scores: Tensor | None = None) -> Tensor:
        """Attention ``p`` over the context words, ``(B, S)``: sums to 1 over the valid words, 0 on padding."""
        if self.layer is not None:
            return self.layer_forward(batch, self.gather(batch)).attention
        e = self.scores(batch) if scores is None else scores
        return torch.softmax(e, dim=1) * batch.word_mask

    def weights(self, batch: Batch, scores: Tensor | None = None) -> Tensor:
        """Combination weights ``a`` of every slot (documents first), ``(B, T+S)``; zero on padding.

        Attention: ``1/n`` per document slot and ``(m/n) p`` on the words; mean: ``1/n``; sum: 1.
        PV-DBOW: 1 on its single document slot.
        """
        valid = self.slot_mask(batch).to(self.word_vectors.dtype)
        if self.layer is not None:
            out = self.layer_forward(batch, self.gather(batch))
            n_doc = batch.doc_slots.shape[1]
            per_tag = out.doc_weight[:, None] / valid[:, :n_doc].sum(1, keepdim=True).clamp(min=1)
            return torch.cat([valid[:, :n_doc] * per_tag, out.word_weights], dim=1)
        if self.dm == 0 or self.context in ("sum", "concat"):  # concat: each slot is its own part of h
            return valid
        n_doc = batch.doc_slots.shape[1]
        t = valid[:, :n_doc].sum(dim=1, keepdim=True)  # (B, 1) document inputs
        m = valid[:, n_doc:].sum(dim=1, keepdim=True)  # (B, 1) context words
        if self.doc_share is None:
            doc_total = t / (t + m)
        else:
            doc_total = torch.where(m > 0, self.doc_share, 1.0)
        doc_part = valid[:, :n_doc] * (doc_total / t.clamp(min=1))
        words = valid[:, n_doc:] / m.clamp(min=1) if self.context == "mean" else self.attention(batch, scores)
        return torch.cat([doc_part, words * (1.0 - doc_total)], dim=1)

    def forward(self, batch: Batch, doc_vectors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-example negative-sampling loss and the weights used.

        Returns
        -------
        loss : Tensor
            ``(B,)`` ``-log s(h.v_target) - sum_k log s(-h.v_k)`` over the unmasked negatives.
        weights : Tensor
            ``(B, T+S)`` the combination weights ``a`` of the forward pass.
        """
        a = self.weights(batch)  # (B, T+S)
        keep = batch.output_mask
        if self.layer is not None:
            h = self.layer_forward(batch, self.gather(batch, doc_vectors)).h  # (B, D)
        elif self.concatenates:
            h, valid = self.concat_input(batch, doc_vectors)  # (B, L)
            keep = keep & valid[:, None]
        else:
            x = self.slot_vectors(batch, doc_vectors)  # (B, T+S, D)
            h = torch.einsum("bs,bsd->bd", a, x)  # (B, D)
        z = torch.einsum("bd,bkd->bk", h, self.output_vectors[batch.outputs])  # (B, K)
        sign = 2.0 * batch.labels().to(z.dtype) - 1.0  # +1 for "yes" outputs (the target), -1 for the others
        loss = (nn.functional.softplus(-sign * z) * keep).sum(dim=1)
        return loss, a

    # ----------------------------------------------------------------------------------------
    # Explicit gradients: what training applies. No autograd graph, so one batch costs a handful
    # of batched matrix products.

    def gradients(self, batch: Batch, doc_vectors: Tensor | None = None) -> Gradients:
        """Exact gradients of ``forward(batch)[0].sum()`` with respect to every slot, output row and score.

        Parameters
        ----------
        batch : Batch
            The examples.
        doc_vectors : Tensor, optional
            A document matrix to use instead of the module's (inference trains a new one).
        """
        a = self.weights(batch)  # (B, T+S)
        x = self.slot_vectors(batch, doc_vectors)  # (B, T+S, D)
        keep = batch.output_mask
        if self.concatenates:
            h, valid = self.concat_input(batch, doc_vectors)  # (B, (t + S) D)
            keep = keep & valid[:, None]
        else:
            h = torch.einsum("bs,bsd->bd", a, x)  # (B, D)
        v = self.output_vectors[batch.outputs]  # (B, K, L)
        z = torch.einsum("bd,bkd->bk", h, v)  # (B, K)
        label = batch.labels().to(z.dtype)
        keep = keep.to(z.dtype)
        sign = 1.0 - 2.0 * label  # -1 for the target, +1 for negatives
        loss = (nn.functional.softplus(sign * z) * keep).sum()
        g = (torch.sigmoid(z) - label) * keep  # (B, K) dL/dz
        grad_outputs = g.unsqueeze(2) * h.unsqueeze(1)  # (B, K, D)
        grad_h = torch.einsum("bk,bkd->bd", g, v)  # (B, L)
        if self.concatenates:  # each slot's own part of h; document slots past dm_tag_count get nothing
            t, n_doc, dim = self.dm_tag_count, batch.doc_slots.shape[1], x.shape[2]
            parts = grad_h.reshape(grad_h.shape[0], -1, dim)  # (B, t + S, D)
            grad_slots = torch.zeros_like(x)
            grad_slots[:, :min(t, n_doc)] = parts[:, :min(t, n_doc)]
            grad_slots[:, n_doc:] = parts[:, t:]
        else:
            grad_slots = a.unsqueeze(2) * grad_h.unsqueeze(1)  # (B, T+S, D)
        grad_scores = None
        if self.uses_attention:
            n_doc = batch.doc_slots.shape[1]
            a_words = a[:, n_doc:]  # (B, S) = (m/n) p
            grad_a = torch.einsum("bd,bsd->bs", grad_h, x[:, n_doc:])  # (B, S)
            p = self.attention(batch)
            # softmax backward, scaled by m/n: de_j = a_j (ga_j - sum_i p_i ga_i)
            grad_scores = a_words * (grad_a - (p * grad_a).sum(dim=1, keepdim=True))
        return Gradients(loss=loss, slots=grad_slots, outputs=grad_outputs, scores=grad_scores, weights=a)

    # ----------------------------------------------------------------------------------------
    # Autograd designs: the layer's forward pass and the loss, on gathered rows.

    def gather(self, batch: Batch, doc_vectors: Tensor | None = None) -> dict[str, Tensor]:
        """The rows a batch reads, as fresh leaf tensors (autograd then gives per-slot gradients).

        Returns a dict with ``docs`` ``(B, T, D)``, ``words`` ``(B, S, D)``, ``pool`` ``(R, P, D)`` (when
        the batch samples document words) and ``outputs`` ``(B, K, D)``.
        """
        docs = self.doc_vectors if doc_vectors is None else doc_vectors
        rows = {"docs": docs[batch.doc_slots.clamp(min=0)], "words": self.word_vectors[batch.words],
                "outputs": self.output_vectors[batch.outputs]}
        if batch.pool_words is not None:
            rows["pool"] = self.pool_table[batch.pool_words]
        return {k: v.detach() for k, v in rows.items()}

    def layer_forward(self, batch: Batch, rows: dict[str, Tensor]) -> ContextOutput:
        """The autograd design's combination of the gathered ``rows`` (see :meth:`gather`)."""
        inputs = ContextInputs(doc_x=rows["docs"] * (batch.doc_slots >= 0)[..., None], doc_mask=batch.doc_slots >= 0,
                               word_x=rows["words"], words=batch.words, positions=batch.positions,
                               word_mask=batch.word_mask, pool_x=rows.get("pool"), pool_words=batch.pool_words,
                               pool_mask=batch.pool_mask, pool_index=batch.pool_index)
        return self.layer(inputs)

    def layer_loss(self, batch: Batch, rows: dict[str, Tensor]) -> tuple[Tensor, ContextOutput]:
        """Summed negative-sampling loss of an autograd design (plus its document loss, if it has one)."""
        out = self.layer_forward(batch, rows)
        v = rows["outputs"]  # (B, K, D)
        keep = batch.output_mask.to(v.dtype)
        sign = torch.ones_like(keep)
        sign[:, 1:] = -1.0
        z = torch.einsum("bd,bkd->bk", out.h, v)  # (B, K)
        loss = (nn.functional.softplus(-sign * z) * keep).sum()
        if out.doc_query is not None:
            # the document alone predicts the target, weighted by what the context failed to predict
            # (or by the design's weights)
            zq = torch.einsum("bd,bkd->bk", out.doc_query, v)
            doc_loss = (nn.functional.softplus(-sign * zq) * keep).sum(1)  # (B,)
            if out.doc_query_weight is None:
                loss = loss + ((1.0 - torch.sigmoid(z[:, 0])).detach() * doc_loss).sum()
            else:
                loss = loss + (out.doc_query_weight * doc_loss).sum()
        return loss, out
