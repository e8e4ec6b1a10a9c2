"""Attention weights of PV-DM as arrays and data frames: exactly the numbers the forward pass uses.

For every token of the given documents, extraction builds the example that predicts it
from its *full* window (``window`` in-vocabulary words on each side, clipped at the
document's ends): no random window shrinking, no downsampling and no negatives, so the
result is deterministic. The weights then come from :meth:`Doc2VecModule.weights` and
:meth:`Doc2VecModule.attention` on that :class:`~attn_doc2vec.model.Batch`: the same code,
tensors and numbers as the training forward pass. Training draws a window of ``1..window``
words per example and drops frequent words; the attention over such a shrunk window is the
full-window attention renormalized over the words kept (a softmax restricted to a subset),
so the full window shows every score the model has learned.

Per-token importance
--------------------
A token ``j`` is a context word in every window whose target ``t`` lies within ``window``
positions of it (``t != j``). In the window of ``t`` it receives the attention ``p[t, j]``,
and a uniform (``context="mean"``) model would give it ``1 / m_t``, ``m_t`` being the number
of context words in that window. The **importance** of ``j`` is the mean, over the windows
that contain it, of ``m_t * p[t, j]``: its attention relative to uniform. 1 means "as much as
the mean PV-DM gives it", 2 "twice its fair share", 0.5 "half". Dividing by the uniform share
removes the edge effect (windows at a document's ends hold fewer words, so every word in
them gets more raw attention). The plain mean of ``p[t, j]`` is kept as ``mean_attention``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    import pandas as pd

from attn_doc2vec.batching import DeviceCorpus
from attn_doc2vec.corpus import EncodedCorpus, Vocabulary
from attn_doc2vec.model import Batch, Doc2VecModule

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 16384  # target positions per batched step


@dataclass
class DocumentAttention:
    """The attention inside one document: target positions x context slots, plus per-token importance.

    Context slot ``s`` of target ``t`` holds the token at position ``t + offsets[s]`` (when that
    position is inside the document); ``L`` is the number of in-vocabulary tokens, ``S = 2 * window``.

    Attributes
    ----------
    label : str
        Name of the document (its first tag, or ``"doc <i>"`` for a token list).
    tokens : list of str
        ``(L,)`` the in-vocabulary tokens, in order (out-of-vocabulary words are dropped, as in training).
    token_ids : numpy.ndarray
        ``(L,)`` int64 word rows.
    offsets : numpy.ndarray
        ``(S,)`` int64 relative position of each context slot: ``-window..-1, 1..window``.
    attention : numpy.ndarray
        ``(L, S)`` float32 softmax ``p`` over the context words of each target: sums to 1 over the
        valid slots (0 on slots outside the document; an all-zero row when the document has one token).
    word_weights : numpy.ndarray
        ``(L, S)`` float32 combination weight ``a`` of each context word in the forward pass
        (``(m/n) p`` for attention, ``1/n`` for mean, 1 for sum).
    doc_weight : numpy.ndarray
        ``(L,)`` float32 combination weight of the document vector(s), summed over the document's tags.
        For attention and mean, ``doc_weight + word_weights.sum(1) == 1``.
    importance : numpy.ndarray
        ``(L,)`` float32 mean attention received relative to uniform (see the module docstring);
        NaN for a token that is in no window.
    mean_attention : numpy.ndarray
        ``(L,)`` float32 plain mean of the attention received; NaN for a token that is in no window.
    windows : numpy.ndarray
        ``(L,)`` int64 number of windows the token is a context word in.
    tag : Any
        The document's tag when it is a training document, else None.
    pool_weight : numpy.ndarray
        ``(L,)`` float32 combination weight of the pooled document words in each target's hidden vector
        (``context="attention"``; zero for designs without pooling). ``doc_weight + word_weights.sum(1) +
        pool_weight == 1`` for every design but ``sum``.
    document_attention : numpy.ndarray
        ``(L,)`` float32 weight of each token in the document's pooled representation (a softmax of the
        learned word salience over the document's tokens, averaged over the heads when ``pool_heads > 1``; sums
        to 1); NaN for designs without pooling.
    """

    label: str
    tokens: list[str]
    token_ids: np.ndarray
    offsets: np.ndarray
    attention: np.ndarray
    word_weights: np.ndarray
    doc_weight: np.ndarray
    importance: np.ndarray
    mean_attention: np.ndarray
    windows: np.ndarray
    tag: Any = None
    pool_weight: np.ndarray | None = None
    document_attention: np.ndarray | None = None
    _entropy: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def window(self) -> int:
        """Maximum context distance."""
        return len(self.offsets) // 2

    @property
    def context_positions(self) -> np.ndarray:
        """``(L, S)`` int64 position of each context slot's token, ``-1`` outside the document."""
        pos = np.arange(len(self))[:, None] + self.offsets[None, :]
        return np.where((pos >= 0) & (pos < len(self)), pos, -1)

    def entropy(self) -> np.ndarray:
        """``(L,)`` normalized entropy ``H(p) / log(m)`` of each target's attention; NaN when ``m < 2``.

        1 is uniform attention; 0 puts all attention on one word.
        """
        if self._entropy is None:
            self._entropy = normalized_entropy(self.attention)
        return self._entropy

    def matrix(self, start: int = 0, stop: int | None = None,
               kind: str = "attention") -> tuple[np.ndarray, range, range]:
        """Dense target x context matrix of a slice of the document (the window band).

        Parameters
        ----------
        start, stop : int
            Target positions ``[start, stop)`` (default: to the end).
        kind : str
            ``"attention"`` (``p``) or ``"weights"`` (``a``, the forward pass's combination weights).

        Returns
        -------
        values : numpy.ndarray
            ``(stop - start, len(cols))`` float32; NaN outside each target's window and on the target itself.
        rows, cols : range
            Token positions of the rows (targets) and of the columns (context words: the rows' range
            widened by ``window`` on each side, clipped to the document).
        """
        values = {"attention": self.attention, "weights": self.word_weights}.get(kind)
        if values is None:
            raise ValueError(f"The 'kind' parameter must be 'attention' or 'weights'. Got {kind!r} instead.")
        stop = len(self) if stop is None else min(stop, len(self))
        if not 0 <= start < max(stop, 1):
            raise ValueError(f"The 'start' parameter must be in [0, {len(self)}) for this document. "
                             f"Got {start!r} instead.")
        rows = range(start, stop)
        cols = range(max(0, start - self.window), min(len(self), stop + self.window))
        out = np.full((len(rows), len(cols)), np.nan, dtype=np.float32)
        pos = self.context_positions[start:stop]  # (R, S)
        r, s = np.nonzero(pos >= 0)
        out[r, pos[r, s] - cols.start] = values[start:stop][r, s]
        return out, rows, cols

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (target, context word) pair, plus one per target for the document vector.

        Columns: ``doc, target_pos, target, context_pos, context, offset, attention, weight``. The
        document-vector rows have ``context="<doc>"``, ``context_pos=-1``, ``offset=0`` and NaN
        attention; ``context="attention"`` adds a ``"<pooled document words>"`` row per target. ``weight``
        sums to 1 over the rows of a target (every design but ``sum``).
        """
        import pandas as pd  # here, not at the package's import: it costs ~30 MB
        pos = self.context_positions
        t, s = np.nonzero(pos >= 0)
        tokens = np.asarray(self.tokens, dtype=object)
        words = pd.DataFrame({
            "doc": self.label, "target_pos": t, "target": tokens[t], "context_pos": pos[t, s],
            "context": tokens[pos[t, s]], "offset": self.offsets[s], "attention": self.attention[t, s],
            "weight": self.word_weights[t, s],
        })
        n = len(self)
        docs = pd.DataFrame({
            "doc": self.label, "target_pos": np.arange(n), "target": tokens, "context_pos": -1,
            "context": "<doc>", "offset": 0, "attention": np.nan, "weight": self.doc_weight,
        })
        parts = [words, docs]
        if self.pool_weight is not None and (self.pool_weight > 0).any():
            parts.append(pd.DataFrame({
                "doc": self.label, "target_pos": np.arange(n), "target": tokens, "context_pos": -1,
                "context": "<pooled document words>", "offset": 0, "attention": np.nan, "weight": self.pool_weight,
            }))
        frame = pd.concat(parts, ignore_index=True)
        return frame.sort_values(["target_pos", "context_pos"], kind="stable", ignore_index=True)

    def importance_frame(self) -> pd.DataFrame:
        """Tidy table of per-token importance: ``doc, position, token, importance, mean_attention, windows,
        document_attention`` (the last NaN for designs that do not pool the document's words)."""
        import pandas as pd  # here, not at the package's import: it costs ~30 MB
        pooled = np.full(len(self), np.nan, np.float32) if self.document_attention is None else self.document_attention
        return pd.DataFrame({
            "doc": self.label, "position": np.arange(len(self)), "token": self.tokens,
            "importance": self.importance, "mean_attention": self.mean_attention, "windows": self.windows,
            "document_attention": pooled,
        })


# ------------------------------------------------------------------------------------------------
# Batches of full windows


def context_offsets(window: int, device: torch.device | None = None) -> Tensor:
    """``(2 * window,)`` relative offsets of the context slots, in the training order ``-W..-1, 1..W``."""
    rel = torch.arange(1, window + 1, device=device)
    return torch.cat([-rel.flip(0), rel])


def full_window_batch(corpus: DeviceCorpus, positions: Tensor, window: int) -> Batch:
    """Examples predicting the tokens at ``positions`` from their full windows (no shrinking, no negatives).

    Parameters
    ----------
    corpus : DeviceCorpus
        The documents, on the device.
    positions : Tensor
        ``(B,)`` int64 global token positions.
    window : int
        Maximum context distance (the model's ``window``).

    Returns
    -------
    Batch
        ``outputs`` holds the target only, so the batch also runs through ``forward``.
    """
    rel = context_offsets(window, positions.device)  # (S,)
    docs = corpus.docs[positions]  # (B,)
    idx = positions[:, None] + rel[None, :]  # (B, S)
    mask = (idx >= corpus.offsets[docs][:, None]) & (idx < corpus.offsets[docs + 1][:, None])
    words = torch.where(mask, corpus.tokens[idx.clamp(0, len(corpus) - 1)].long(), 0)
    slots = torch.arange(rel.shape[0], device=positions.device).expand_as(idx)
    targets = corpus.tokens[positions].long()[:, None]  # (B, 1)
    return Batch(doc_slots=corpus.tags[docs], words=words, positions=slots, word_mask=mask,
                 outputs=targets, output_mask=torch.ones_like(targets, dtype=torch.bool))


def check_module(module: Doc2VecModule) -> None:
    """Raise a ``ValueError`` naming the fix when ``module`` has no context window (PV-DBOW)."""
    if module.dm == 0:
        raise ValueError("This is a PV-DBOW model (dm=0): it has no context window, so there is no attention "
                         "to extract. Train with dm=1 (and context='attention') to get attention weights.")


@dataclass
class _Step:
    positions: Tensor  # (B,) global target positions
    context: Tensor  # (B, S) global context positions, clamped where masked
    mask: Tensor  # (B, S) bool
    attention: Tensor  # (B, S) p
    word_weights: Tensor  # (B, S) a on the words
    doc_weight: Tensor  # (B,) a on the document slots


def _steps(module: Doc2VecModule, corpus: DeviceCorpus, chunk_size: int) -> Iterator[_Step]:
    """Run the weights of every position of ``corpus`` through the module, ``chunk_size`` targets at a time."""
    check_module(module)
    n = len(corpus)
    window = module.window
    rel = context_offsets(window, corpus.tokens.device)
    for begin in range(0, n, chunk_size):
        positions = torch.arange(begin, min(n, begin + chunk_size), device=corpus.tokens.device)
        batch = full_window_batch(corpus, positions, window)
        a = module.weights(batch)  # (B, T+S)
        n_doc = batch.doc_slots.shape[1]
        if module.uses_attention or module.uses_layer:
            p = module.attention(batch)  # (B, S)
        else:  # mean and sum: every context word has the same share
            valid = batch.word_mask.to(a.dtype)
            p = valid / valid.sum(dim=1, keepdim=True).clamp(min=1)
        yield _Step(positions=positions, context=(positions[:, None] + rel).clamp(0, max(n - 1, 0)),
                    mask=batch.word_mask, attention=p, word_weights=a[:, n_doc:], doc_weight=a[:, :n_doc].sum(1))


def _relative(step: _Step) -> Tensor:
    """``m_t * p[t, s]``: attention relative to the uniform share, ``(B, S)``."""
    m = step.mask.sum(dim=1, keepdim=True).to(step.attention.dtype)
    return step.attention * m


@torch.no_grad()
def extract(module: Doc2VecModule, vocab: Vocabulary, encoded: EncodedCorpus, labels: Sequence[str] | None = None,
            tags: Sequence[Any] | None = None, chunk_size: int = DEFAULT_CHUNK) -> list[DocumentAttention]:
    """Attention of every document of ``encoded``, computed in batches on the module's device.

    Parameters
    ----------
    module : Doc2VecModule
        A PV-DM network.
    vocab : Vocabulary
        Its vocabulary (for the token strings).
    encoded : EncodedCorpus
        The documents; their tag rows only set how many document slots each example has.
    labels : sequence of str, optional
        One name per document (default ``"doc <i>"``).
    tags : sequence, optional
        One training tag (or None) per document, stored in the results.
    chunk_size : int
        Target positions per batched step (bounds the memory used).

    Returns
    -------
    list of DocumentAttention
        One per document, in order.

    Raises
    ------
    ValueError
        For a PV-DBOW model, which has no context window.
    """
    check_module(module)
    device = module.word_vectors.device
    corpus = DeviceCorpus.from_encoded(encoded, device)
    n = len(corpus)
    dtype = module.word_vectors.dtype
    received = torch.zeros(n, dtype=dtype, device=device)  # sum of m_t p[t, j] over windows containing j
    raw = torch.zeros(n, dtype=dtype, device=device)  # sum of p[t, j]
    counts = torch.zeros(n, dtype=dtype, device=device)  # windows containing j
    p_parts, a_parts, d_parts = [], [], []
    for step in _steps(module, corpus, chunk_size):
        index, keep = step.context[step.mask], step.mask
        received.index_add_(0, index, _relative(step)[keep])
        raw.index_add_(0, index, step.attention[keep])
        counts.index_add_(0, index, torch.ones_like(index, dtype=dtype))
        p_parts.append(step.attention)
        a_parts.append(step.word_weights)
        d_parts.append(step.doc_weight)
    S = 2 * module.window
    empty = torch.zeros((0, S), dtype=dtype, device=device)
    p = torch.cat(p_parts).cpu().numpy() if p_parts else empty.cpu().numpy()
    a = torch.cat(a_parts).cpu().numpy() if a_parts else empty.cpu().numpy()
    d = torch.cat(d_parts).cpu().numpy() if d_parts else np.zeros(0, dtype=np.float32)
    counts_np = counts.cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        importance = np.where(counts_np > 0, received.cpu().numpy() / counts_np, np.nan).astype(np.float32)
        mean_att = np.where(counts_np > 0, raw.cpu().numpy() / counts_np, np.nan).astype(np.float32)
    words = np.asarray(vocab.wv.index_to_key, dtype=object)
    tokens = encoded.tokens.astype(np.int64)
    offsets = context_offsets(module.window).numpy()
    pool_weight = np.clip(1.0 - d - a.sum(axis=1), 0.0, 1.0).astype(np.float32) if module.pools_documents \
        else np.zeros_like(d)
    salience = module.layer.pool_weights(torch.as_tensor(tokens, device=device)).cpu().numpy() \
        if module.pools_documents else None
    out = []
    for i in range(encoded.n_docs):  # slicing only, and one softmax per document
        lo, hi = int(encoded.offsets[i]), int(encoded.offsets[i + 1])
        doc_att = None
        if salience is not None:
            scores = salience[lo:hi].reshape(hi - lo, 1 if salience.ndim == 1 else salience.shape[1])  # (n, heads)
            e = np.exp(scores - scores.max(axis=0, initial=0.0))
            doc_att = (e / np.maximum(e.sum(axis=0), 1e-30)).mean(axis=1).astype(np.float32)  # heads averaged
        out.append(DocumentAttention(
            label=f"doc {i}" if labels is None else str(labels[i]), tokens=list(words[tokens[lo:hi]]),
            token_ids=tokens[lo:hi], offsets=offsets, attention=p[lo:hi], word_weights=a[lo:hi],
            doc_weight=d[lo:hi], importance=importance[lo:hi], mean_attention=mean_att[lo:hi],
            windows=counts_np[lo:hi].astype(np.int64), tag=None if tags is None else tags[i],
            pool_weight=pool_weight[lo:hi], document_attention=doc_att,
        ))
    return out


@torch.no_grad()
def word_importance(module: Doc2VecModule, vocab: Vocabulary, encoded: EncodedCorpus,
                    chunk_size: int = DEFAULT_CHUNK) -> pd.DataFrame:
    """Mean importance of each word over every window of a corpus that contains it.

    The per-token importance (attention relative to uniform, see the module docstring) is
    averaged over all occurrences of a word as a context word, in every document. Nothing of
    size ``(tokens, 2 * window)`` is kept, so this runs on corpora of any length.

    Returns
    -------
    pandas.DataFrame
        Columns ``word, windows, importance, mean_attention``, one row per word that occurs as a
        context word, sorted by decreasing importance.
    """
    import pandas as pd  # here, not at the package's import: it costs ~30 MB
    device = module.word_vectors.device
    corpus = DeviceCorpus.from_encoded(encoded, device)
    n_words = len(vocab.wv)
    received = torch.zeros(n_words, dtype=torch.float64, device=device)
    raw = torch.zeros(n_words, dtype=torch.float64, device=device)
    counts = torch.zeros(n_words, dtype=torch.float64, device=device)
    for step in _steps(module, corpus, chunk_size):
        word = corpus.tokens[step.context[step.mask]].long()  # word row of each (target, context) pair
        received.index_add_(0, word, _relative(step)[step.mask].to(torch.float64))
        raw.index_add_(0, word, step.attention[step.mask].to(torch.float64))
        counts.index_add_(0, word, torch.ones_like(word, dtype=torch.float64))
    seen = torch.nonzero(counts > 0).squeeze(1)
    frame = pd.DataFrame({
        "word": np.asarray(vocab.wv.index_to_key, dtype=object)[seen.cpu().numpy()],
        "windows": counts[seen].cpu().numpy().astype(np.int64),
        "importance": (received[seen] / counts[seen]).cpu().numpy(),
        "mean_attention": (raw[seen] / counts[seen]).cpu().numpy(),
    })
    return frame.sort_values("importance", ascending=False, kind="stable", ignore_index=True)


def normalized_entropy(attention: np.ndarray) -> np.ndarray:
    """Entropy of each row of ``attention`` divided by its maximum ``log(m)``; NaN where ``m < 2``.

    Parameters
    ----------
    attention : numpy.ndarray
        ``(L, S)`` rows of probabilities, 0 on invalid slots.

    Returns
    -------
    numpy.ndarray
        ``(L,)`` in ``[0, 1]``: 1 is uniform.
    """
    p = np.asarray(attention, dtype=np.float64)
    m = (p > 0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
        return np.where(m >= 2, h / np.log(np.maximum(m, 2)), np.nan)


# ------------------------------------------------------------------------------------------------
# Snapshots over training


def snapshot(att: DocumentAttention, epoch: int) -> dict:
    """A record of ``att`` for :attr:`Doc2Vec.attention_history` (plain data: arrays are copies)."""
    entropy = att.entropy()
    return {
        "epoch": epoch, "doc": att.label, "tag": att.tag, "tokens": list(att.tokens),
        "attention": att.attention.copy(), "importance": att.importance.copy(),
        "mean_attention": att.mean_attention.copy(),
        "entropy": float(np.nanmean(entropy)) if np.isfinite(entropy).any() else float("nan"),
    }


def history_frame(history: Sequence[dict]) -> pd.DataFrame:
    """Tidy table of snapshots: one row per (epoch, document, token).

    Returns
    -------
    pandas.DataFrame
        Columns ``epoch, doc, position, token, importance, mean_attention, entropy`` (``entropy`` is the
        snapshot's mean normalized entropy, repeated on its rows).
    """
    import pandas as pd  # here, not at the package's import: it costs ~30 MB
    frames = [pd.DataFrame({
        "epoch": snap["epoch"], "doc": snap["doc"], "position": np.arange(len(snap["tokens"])),
        "token": snap["tokens"], "importance": snap["importance"], "mean_attention": snap["mean_attention"],
        "entropy": snap["entropy"],
    }) for snap in history]
    if not frames:
        return pd.DataFrame(columns=["epoch", "doc", "position", "token", "importance", "mean_attention", "entropy"])
    return pd.concat(frames, ignore_index=True)
