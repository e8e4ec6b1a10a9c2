"""Attention methods of :class:`~attn_doc2vec.doc2vec.Doc2Vec`: extraction, the snapshot callback and plots.

:class:`AttentionMixin` only glues the model to :mod:`attn_doc2vec.attention` (numbers) and
:mod:`attn_doc2vec.plotting` (figures). A document can be named in three ways everywhere:

* a training tag (``"1"``, ``0``, ...): the model keeps the words of the corpus of its latest
  ``train`` call (up to :attr:`AttentionMixin.keep_corpus_tokens` tokens; beyond that only the first
  and the tracked documents), never in checkpoints;
* a list of tokens: any text, e.g. ``simple_preprocess(text)``;
* a ``TaggedDocument``: its words, with its tags' document slots when the model knows them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attn_doc2vec import plotting
from attn_doc2vec.attention import DEFAULT_CHUNK, DocumentAttention, extract, history_frame, snapshot, word_importance
from attn_doc2vec.corpus import EncodedCorpus, tag_matrix

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

DocRef = Any  # a training tag, a list of tokens or a TaggedDocument


class AttentionMixin:
    """Attention extraction and plots for a Doc2Vec model (mixed into :class:`~attn_doc2vec.doc2vec.Doc2Vec`).

    Expects the host to provide ``module``, ``vocab``, ``epochs_trained``, ``attention_history`` (a list)
    and ``tracked_docs`` (None or a list), and to call :meth:`_remember_corpus` from ``train``.
    """

    default_tracked: int = 5  # documents tracked by compute_weights when tracked_docs is None
    keep_corpus_tokens: int = 20_000_000  # larger corpora keep only the first and the tracked documents

    # ---------------------------------------------------------------------------------------------
    # Extraction

    def attention_weights(self, doc: DocRef) -> DocumentAttention:
        """The attention inside one document, exactly as the forward pass computes it (full windows).

        Parameters
        ----------
        doc : tag, list of str or TaggedDocument
            A training document's tag, or tokens of any text.

        Returns
        -------
        DocumentAttention
            Target x context-slot weights, the document vector's weight, tokens and per-token importance
            (mean attention received relative to uniform; see :mod:`attn_doc2vec.attention`).
            ``.to_frame()`` and ``.importance_frame()`` give tidy tables.

        Examples
        --------
        >>> att = model.attention_weights("1")  # doctest: +SKIP
        >>> att.attention.sum(axis=1)  # doctest: +SKIP
        array([1., 1., 1.], dtype=float32)
        """
        return self.attention_weights_many([doc])[0]

    def attention_weights_many(self, docs: Sequence[DocRef],
                               chunk_size: int = DEFAULT_CHUNK) -> list[DocumentAttention]:
        """The attention of many documents at once, in batches on the model's device.

        Parameters
        ----------
        docs : sequence of (tag, list of str or TaggedDocument)
            The documents (each item as in :meth:`attention_weights`).
        chunk_size : int
            Target positions per batched step.

        Returns
        -------
        list of DocumentAttention
            One per document, in order.
        """
        module = self._require_module("extract attention")
        if isinstance(docs, (str, bytes)):
            raise TypeError("attention_weights_many expects a list of documents (tags or token lists), not a string; "
                            "for one document use attention_weights(doc).")
        encoded, labels, tags = self._encode_refs(list(docs))
        return extract(module, self.vocab, encoded, labels=labels, tags=tags, chunk_size=chunk_size)

    def word_attention(self, documents: Iterable[DocRef] | None = None) -> pd.DataFrame:
        """Mean attention each word receives across a corpus, relative to uniform (1 = the mean PV-DM's share).

        Parameters
        ----------
        documents : iterable of (tag, list of str or TaggedDocument), optional
            The corpus (default: the corpus of the latest ``train`` call).

        Returns
        -------
        pandas.DataFrame
            ``word, windows, importance, mean_attention``, most attended first; filter on ``windows`` to
            ignore rare words.
        """
        module = self._require_module("measure word attention")
        if documents is None:
            encoded = self._training_corpus()
            if getattr(self, "_corpus_truncated", False):
                raise RuntimeError("The model kept only part of its training corpus (it has more than "
                                   f"keep_corpus_tokens={self.keep_corpus_tokens} tokens): pass the documents, "
                                   "word_attention(documents).")
        else:
            encoded = self._encode_refs(list(documents))[0]
        return word_importance(module, self.vocab, encoded)

    # ---------------------------------------------------------------------------------------------
    # Tracking over training

    def track_documents(self, docs: Sequence[DocRef] | None = None, n: int | None = None) -> list | None:
        """Choose the documents that :meth:`compute_weights` records.

        Parameters
        ----------
        docs : sequence of (tag, list of str or TaggedDocument), optional
            The documents. None: the first ``n`` documents of the training corpus.
        n : int, optional
            How many leading documents to track when ``docs`` is None (default ``default_tracked``, 5).

        Returns
        -------
        list or None
            The new ``tracked_docs`` (None until training starts when ``docs`` is None).
        """
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"The 'n' parameter must be an int >= 1. Got {n!r} instead.")
            self.default_tracked = n
        if docs is None:
            self.tracked_docs = None
            if getattr(self, "_attention_corpus", None) is not None:
                self.tracked_docs = self._default_tracked()
            return self.tracked_docs
        if isinstance(docs, (str, bytes)) or not isinstance(docs, Sequence):
            raise TypeError(f"'docs' must be a list of tags or token lists, e.g. ['1', '2']. Got {docs!r} instead.")
        self.tracked_docs = list(docs)
        return self.tracked_docs

    def compute_weights(self, model: Any = None) -> None:
        """Record an attention snapshot of each tracked document in ``attention_history``.

        Pass it as a training callback, ``train(..., callbacks=[model.compute_weights])``: the trainer
        calls it with the model at each epoch's end, so ``attention_history`` gets one snapshot per
        tracked document per epoch. It can also be called by hand at any time.

        Each snapshot is a dict with ``epoch`` (``epochs_trained`` when taken), ``doc`` (label),
        ``tag``, ``tokens``, ``attention`` (``(L, 2 * window)``), ``importance``, ``mean_attention``
        and ``entropy`` (mean normalized entropy, 1 = uniform). Tracked documents are ``tracked_docs``,
        by default the first ``default_tracked`` (5) training documents (see :meth:`track_documents`).

        Parameters
        ----------
        model : Doc2Vec, optional
            The model the trainer passes; it must be this one.
        """
        if model is not None and model is not self:
            raise ValueError("compute_weights records the attention of its own model: pass "
                             "callbacks=[model.compute_weights] to that same model's train().")
        docs = self._tracked()
        epoch = self.epochs_trained
        for att in self.attention_weights_many(docs):
            self.attention_history.append(snapshot(att, epoch))

    def attention_history_frame(self) -> pd.DataFrame:
        """``attention_history`` as a tidy table.

        Columns: ``epoch, doc, position, token, importance, mean_attention, entropy``.
        """
        return history_frame(self.attention_history)

    # ---------------------------------------------------------------------------------------------
    # Figures

    def visualize_attention(self, doc: DocRef | None = None, path: str | os.PathLike | None = None, *,
                            start: int = 0, length: int | None = 40, kind: str = "attention", show: bool | None = None,
                            **kwargs: Any) -> Figure:
        """Heatmap of target words x context words, darker = more attention, with a per-token importance strip.

        Parameters
        ----------
        doc : tag, list of str or TaggedDocument, optional
            The document (default: the first tracked document, i.e. the first training document).
        path : path, optional
            Also save the figure there (PNG unless the suffix says otherwise).
        start, length : int
            Draw targets ``[start, start + length)``; page through long documents with ``start``.
            ``length=None`` draws the whole document.
        kind : str
            ``"attention"`` (softmax over the context words) or ``"weights"`` (forward-pass weights).
        show : bool or None
            ``True``: create the figure through pyplot and call ``plt.show()``; ``False``: only return it
            (and save it to ``path``). ``None`` (default) does what the situation needs: in a notebook the
            returned figure displays itself; in a script it opens a window when there is a display, and
            otherwise, with no ``path``, saves ``<kind>-<document>.png`` in the current folder and logs
            a warning saying where.
        **kwargs
            Passed to :func:`attn_doc2vec.plotting.attention_map` (``cmap``, ``vmin``, ``annot``, ``title``).

        Returns
        -------
        matplotlib.figure.Figure
            The figure (axes labelled ``"attention"`` and ``"importance"``).
        """
        att = self.attention_weights(self._default_doc() if doc is None else doc)
        if length is not None and len(att) > start + length:
            logger.info("showing targets %d-%d of %d in %s; pass start=%d for the next page", start,
                        start + length - 1, len(att), att.label, start + length)
        show = _resolve_show(show, path)
        fig = plotting.attention_map(att, start=start, length=length, kind=kind, pyplot=show, **kwargs)
        return _finish(fig, path, show, f"{kind}-{att.label}")

    def visualize_importance(self, doc: DocRef | None = None, path: str | os.PathLike | None = None, *,
                             start: int = 0, length: int | None = None, per_line: int = 12, show: bool | None = None,
                             **kwargs: Any) -> Figure:
        """The document's text shaded by each token's importance (attention received relative to uniform).

        Parameters are as in :meth:`visualize_attention`; ``per_line`` tokens make one line of text, and
        ``**kwargs`` go to :func:`attn_doc2vec.plotting.importance_text`.
        """
        att = self.attention_weights(self._default_doc() if doc is None else doc)
        show = _resolve_show(show, path)
        fig = plotting.importance_text(att, start=start, length=length, per_line=per_line, pyplot=show, **kwargs)
        return _finish(fig, path, show, f"importance-{att.label}")

    def plot_attention_history(self, doc: DocRef | None = None, path: str | os.PathLike | None = None, *,
                               start: int = 0, length: int | None = 40, show: bool | None = None) -> Figure:
        """How the tracked documents' attention changed epoch by epoch (needs ``callbacks=[model.compute_weights]``).

        Parameters
        ----------
        doc : str, optional
            Label (first tag) of the tracked document whose tokens are drawn (default: the first).
        path : path, optional
            Also save the figure there.
        start, length : int
            Tokens ``[start, start + length)`` of that document.
        show : bool or None
            As in :meth:`visualize_attention`.

        Returns
        -------
        matplotlib.figure.Figure
            An epochs x tokens heatmap of importance and a line plot of mean entropy per epoch.
        """
        if not self.attention_history:
            raise RuntimeError("No attention history yet: train with callbacks=[model.compute_weights] "
                               "(or call model.compute_weights() between train() calls).")
        show = _resolve_show(show, path)
        fig = plotting.attention_history(self.attention_history_frame(), doc=None if doc is None else str(doc),
                                         start=start, length=length, pyplot=show)
        return _finish(fig, path, show, "attention-history")

    # ---------------------------------------------------------------------------------------------
    # Corpus memory and document resolution

    def _remember_corpus(self, encoded: EncodedCorpus) -> None:
        """Keep the encoded training corpus (called by ``train``), or a part of it when it is very large."""
        self._corpus_truncated = len(encoded.tokens) > self.keep_corpus_tokens
        if not self._corpus_truncated:
            self._attention_corpus = encoded
            return
        keep = np.zeros(encoded.n_docs, dtype=bool)
        keep[: self.default_tracked] = True
        for ref in self.tracked_docs or []:
            row = self._tag_row(ref) if _is_tag(ref) else None
            if row is not None:
                keep |= (encoded.tags == row).any(axis=1)
        self._attention_corpus = _select(encoded, np.flatnonzero(keep))
        logger.info("kept the words of %d of %d training documents for attention plots (corpus over %d tokens)",
                    int(keep.sum()), encoded.n_docs, self.keep_corpus_tokens)

    def _training_corpus(self) -> EncodedCorpus:
        encoded = getattr(self, "_attention_corpus", None)
        if encoded is None:
            raise RuntimeError("This model holds no training documents (it was loaded from a checkpoint or not "
                               "trained yet): pass the document's tokens, e.g. visualize_attention(doc=words) or "
                               "attention_weights(simple_preprocess(text)).")
        return encoded

    def _default_tracked(self) -> list:
        encoded = self._training_corpus()
        first = encoded.tags[: self.default_tracked, 0]
        return [self.vocab.dv.index_to_key[row] for row in first if row >= 0]

    def _tracked(self) -> list:
        if self.tracked_docs is None:
            self.tracked_docs = self._default_tracked()
        return list(self.tracked_docs)

    def _default_doc(self) -> DocRef:
        tracked = self._tracked()
        if not tracked:
            raise RuntimeError("No document to show: pass doc= (a training tag or a list of tokens).")
        return tracked[0]

    def _tag_row(self, tag: Any) -> int | None:
        row = self.vocab.dv.get_index(tag, -1)
        return None if row < 0 else int(row)

    def _encode_refs(self, refs: list[DocRef]) -> tuple[EncodedCorpus, list[str], list[Any]]:
        """Token rows and document slots of each document, whichever way it is named."""
        index = self.vocab.wv.key_to_index
        token_parts, tag_rows, labels, tags = [], [], [], []
        for i, ref in enumerate(refs):
            if hasattr(ref, "words") and hasattr(ref, "tags"):
                rows = [self._tag_row(t) for t in ref.tags]
                known = bool(rows) and all(r is not None for r in rows)
                token_parts.append(_rows(ref.words, index, i))
                tag_rows.append(rows if known else [0])
                labels.append(str(ref.tags[0]) if len(ref.tags) else f"doc {i}")
                tags.append(ref.tags[0] if known else None)
            elif _is_tag(ref):
                tokens, rows = self._find_training_doc(ref)
                token_parts.append(tokens)
                tag_rows.append(rows)
                labels.append(str(ref))
                tags.append(ref)
            else:
                token_parts.append(_rows(ref, index, i))
                tag_rows.append([0])  # one document slot, as in inference; its vector is never read
                labels.append(f"doc {i}")
                tags.append(None)
        lengths = np.array([len(t) for t in token_parts], dtype=np.int64)
        offsets = np.zeros(len(refs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tags_matrix = tag_matrix([r for rows in tag_rows for r in rows], [len(rows) for rows in tag_rows])
        tokens = np.concatenate(token_parts) if token_parts else np.zeros(0, dtype=np.int32)
        encoded = EncodedCorpus(tokens=tokens.astype(np.int32), offsets=offsets, tags=tags_matrix,
                                raw_words=int(lengths.sum()))
        return encoded, labels, tags

    def _find_training_doc(self, tag: Any) -> tuple[np.ndarray, list[int]]:
        row = self._tag_row(tag)
        if row is None:
            hint = " To see the attention over a text, pass its tokens, e.g. simple_preprocess(text) or text.split()." \
                if isinstance(tag, str) else ""
            raise KeyError(f"{tag!r} is not a document tag of this model.{hint}")
        encoded = self._training_corpus()
        hits = np.flatnonzero((encoded.tags == row).any(axis=1))
        if len(hits) == 0:
            raise KeyError(f"The words of document {tag!r} are not kept (the corpus of the latest train() call "
                           f"does not have it, or had over keep_corpus_tokens={self.keep_corpus_tokens} tokens): "
                           "pass its tokens instead, or track_documents([...]) before training.")
        doc = int(hits[0])
        rows = encoded.tags[doc]
        return encoded.tokens[encoded.offsets[doc]:encoded.offsets[doc + 1]], [int(r) for r in rows if r >= 0]


def save_attention_map(model: AttentionMixin, path: str | os.PathLike, doc: DocRef | None = None) -> Path | None:
    """Write the attention heatmap of ``doc`` (default: the first training document) to ``path``.

    Meant for training scripts, to leave a picture beside the checkpoint. PV-DBOW models have no
    attention: nothing is written and None is returned.

    Parameters
    ----------
    model : Doc2Vec
        A trained model (which still holds its training corpus when ``doc`` is None or a tag).
    path : path
        The PNG to write.
    doc : tag, list of str or TaggedDocument, optional
        The document.

    Returns
    -------
    pathlib.Path or None
        The file written.
    """
    if model.config.dm == 0:
        logger.info("PV-DBOW model: no attention map to save")
        return None
    fig = model.visualize_attention(doc, show=False)
    return plotting.save_figure(fig, path)


NON_INTERACTIVE = {"agg", "pdf", "svg", "ps", "cairo", "pgf", "template"}  # matplotlib backends without windows


def _resolve_show(show: bool | None, path: str | os.PathLike | None) -> bool | None:
    """``show=None``: a notebook displays the returned figure; a script shows a window when it can.

    Returns True (pyplot window), False (only return / save) or None (no display and no path: the
    figure is saved to a default file by :func:`_finish`).
    """
    if show is not None:
        return show
    if _in_notebook() or path is not None:
        return False
    return True if _has_display() else None


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _has_display() -> bool:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32")):
        return False
    import matplotlib.pyplot as plt  # resolves the backend: Agg when no GUI toolkit is installed

    return plt.get_backend().lower() not in NON_INTERACTIVE


def _finish(fig: Figure, path: str | os.PathLike | None, show: bool | None, name: str) -> Figure:
    if show is None:  # a script on a machine without a display: a figure nobody sees is no use
        path = Path.cwd() / (re.sub(r"[^\w.-]+", "_", name) + ".png")
        plotting.save_figure(fig, path)
        logger.warning("no display to show the figure on: saved it to %s (pass path=... to choose where, or "
                       "show=False to only return it)", path)
        return fig
    if path is not None:
        plotting.save_figure(fig, path)
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return fig


def _is_tag(ref: Any) -> bool:
    return isinstance(ref, (str, int, np.integer))


def _rows(words: Any, index: dict, i: int) -> np.ndarray:
    if isinstance(words, (str, bytes)):
        raise TypeError(f"Document #{i} must be a list of tokens, not the string {words[:40]!r}; "
                        "split it first, e.g. text.split() or gensim.utils.simple_preprocess(text).")
    if not isinstance(words, Iterable):
        raise TypeError(f"Document #{i} must be a training tag or a list of tokens. Got {words!r} instead.")
    rows = np.fromiter((index.get(w, -1) for w in words), dtype=np.int64)
    return rows[rows >= 0].astype(np.int32)


def _select(encoded: EncodedCorpus, docs: np.ndarray) -> EncodedCorpus:
    """The documents ``docs`` of ``encoded`` (a handful: the loop slices, nothing per token)."""
    parts = [encoded.tokens[encoded.offsets[d]:encoded.offsets[d + 1]] for d in docs]
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return EncodedCorpus(tokens=tokens, offsets=offsets, tags=encoded.tags[docs], raw_words=int(offsets[-1]))
