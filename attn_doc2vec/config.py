"""The one place where every default of attn_doc2vec lives.

:class:`Doc2VecConfig` is stored whole in every checkpoint and the command-line
flags of ``scripts/train.py`` are generated from it, so a default changed here
changes everywhere.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

from attn_doc2vec.context import CONTEXT_NAMES as CONTEXT_MODES
from attn_doc2vec.context import DEFAULT_DOC_SHARE, LAYERS
from attn_doc2vec.context.pooled import ATTENTION_PARTS, CONTEXT_SCORES

SGD_ALPHA = 0.025  # gensim's default learning rate, for the designs trained with gensim's SGD
ADAGRAD_ALPHA = 0.1  # default learning rate of the designs trained by autograd with row-wise Adagrad
BACKENDS = ("auto", "torch", "numba")
UPDATE_RULES = ("batch", "example")  # how the autograd designs apply a batch (see Doc2VecConfig.update_rule)
POOL_EXCLUDE = ("position", "word")  # what an example's own document sample leaves out (Doc2VecConfig.pool_exclude)
POOL_VALUES = ("shared", "own")  # which table the pooled document words' vectors come from (Doc2VecConfig.pool_values)


@dataclass
class Doc2VecConfig:
    """Model and training parameters, named as in gensim's ``Doc2Vec`` where they apply.

    Attributes
    ----------
    vector_size : int
        Dimensionality of word and document vectors.
    dm : int
        Training algorithm: 1 for PV-DM (distributed memory), 0 for PV-DBOW.
    context : str
        How PV-DM combines the document and the context words (one design per file in
        :mod:`attn_doc2vec.context`): ``"attention"`` (free document vector, attentive context and an
        attention-pooled sample of the document's own words), ``"docquery"``, ``"docloss"``,
        ``"wordpos"`` (word x position attention, the earlier design), ``"mean"`` or ``"sum"``
        (gensim's ``dm_mean=1`` / ``dm_mean=0``).
    window : int
        Maximum distance between the predicted word and a context word.
    min_count : int
        Ignore words with a total frequency below this.
    max_vocab_size : int or None
        Prune the vocabulary while scanning when it grows beyond this (gensim's rule).
    max_final_vocab : int or None
        Keep at most this many words, raising the effective ``min_count`` as needed.
    sample : float
        Threshold for downsampling frequent words (0 disables it).
    negative : int
        Number of negative samples per predicted word (must be >= 1).
    ns_exponent : float
        Exponent shaping the negative-sampling distribution (counts ** ns_exponent).
    alpha : float or None
        Initial learning rate. None picks the design's default: 0.025 (gensim's) for PV-DBOW, ``mean``,
        ``sum`` and ``wordpos``, trained with gensim's SGD; 0.1 for the autograd designs (``attention``,
        ``docquery``, ``docloss``), trained with row-wise Adagrad.
    min_alpha : float
        Learning rate reached, linearly, at the end of the last epoch.
    epochs : int
        Number of passes over the corpus.
    seed : int
        Seed for initial vectors and every random draw in training.
    batch_size : int
        Number of predicted words (PV-DM) or (document, word) pairs (PV-DBOW; with ``dbow_words=1`` also
        (word, word) pairs, mixed in one random order) per vectorized training step.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    backend : str
        Who runs the SGD steps: ``"torch"`` (the PyTorch reference, any device), ``"numba"``
        (fused CPU kernels, same results up to float rounding, several times faster) or
        ``"auto"`` (Numba on the CPU when it is installed, else PyTorch).
    workers : int or None
        CPU threads PyTorch and Numba may use while training (gensim's worker threads);
        ``None`` keeps PyTorch's default.
    sync_every : int
        Training across processes (``torchrun``, :mod:`attn_doc2vec.distributed`): each process's batches
        between two synchronisations of the shared tables (words, outputs, attention), where the processes
        add up what each changed. Fewer means fresher tables and more traffic. No effect in one process.
    epoch_block : int
        Token positions an epoch prepares at a time. A corpus (or a process's shard) with more tokens is
        trained in blocks of whole documents: each epoch deals the documents, in random order, into blocks of
        about this many tokens, and each block is downsampled, shuffled and cut into batches on its own, so an
        epoch's temporaries (about 100 bytes a position) stay bounded however large the corpus is. A corpus
        no larger than one block is shuffled whole, as before. 0: always the whole corpus at once.
    dv_mapfile : str or None
        A directory (gensim's parameter name) where the per-document tables (the free document vectors, their
        Adagrad state, the pooled words of ``attention``, ``model.dv``) live as memory-mapped ``.npy`` files
        instead of in memory (:mod:`attn_doc2vec.doc_tables`), for corpora with tens of millions of documents;
        CPU only. A new or empty directory, or one such tables were mapped into before (they are replaced).
        ``save`` still writes every table into the checkpoint; ``Doc2Vec.load(path, dv_mapfile=...)`` maps a
        loaded model's tables. None: in memory.
    doc_share : float or None
        PV-DM: the document vectors' fixed share of the context vector, the words sharing the
        rest; None gives the design's default: every input the same share for ``mean``/``sum``/``wordpos``
        (as gensim's mean does), 0 for ``attention`` (no free document vector: a document is represented by
        its attention-pooled words), 1/2 for ``docquery`` and ``docloss``.
    pool_share : float
        ``attention`` only: share of the attention-pooled document words in the hidden vector.
    pool_sample : int
        ``attention`` only: words drawn from the target's document per prediction and pooled.
    pool_group : int
        ``attention`` only: each epoch is ordered in runs of up to this many positions of one document
        (runs shuffled, so a batch mixes about ``batch_size / pool_group`` documents), and a document's
        examples in a batch share one draw of ``pool_sample`` words, pooled once. 1: every example draws
        its own sample (the target excluded) and positions are shuffled freely. The default, 8, measured as
        accurate as 1 (20 Newsgroups, 3,000 posts, 3 seeds) and trains faster (docs/attention-designs.md).
    pool_exclude : str
        ``attention`` with ``pool_group=1`` only: what an example's own sample leaves out. ``"position"``
        (default): the target's own token (Doc2VecC's corruption). ``"word"``: every copy of the target word,
        so the pooled words never predict a word by repeating it and the scores must earn their weight by
        predicting the document's other words. Measured 5 points worse on both benchmarks (round 16 of
        docs/attention-designs.md): kept to reproduce that finding.
    pool_values : str
        ``attention`` only: which vectors the document's pooling averages. ``"shared"`` (default): the word
        vectors, the same ones the context words use (Doc2VecC's choice). ``"own"``: a second word table,
        ``pool_vectors``, used only by the pooling, so that what a word contributes to its document's
        representation need not be what it contributes to a window's context (``model.wv`` stays the context
        words' table). Needs ``update_rule="batch"`` and context scores of their own (not ``"shared"``).
        Measured worse (IMDB 5,000 reviews, 3 seeds: 16.35 % error against 15.35 %; 20 Newsgroups 3,000 posts
        level; round 17 of docs/attention-designs.md): an ablation.
    pool_heads : int
        ``attention`` only: heads of the document's attention pooling. Each head has its own learned score per
        word and pools its own slice of ``vector_size / pool_heads`` components of the word vectors (multi-head
        attention with the word vectors, cut into slices, as values), so one head may weigh what another
        does not. 1 (the default): one score per word over whole vectors. Measured worse (20 Newsgroups 3,000
        posts, seed 0: 61.87 % with 2 heads, 62.88 % with 4, against 67.39 %; docs/attention-designs.md, round
        10): an ablation. Must divide ``vector_size``; more than 1 needs ``update_rule="batch"`` and
        ``context_scores`` other than ``"shared"``.
    pool_loss : float
        ``attention`` only: weight of a second loss in which the document's representation alone predicts the
        target (PV-DBOW's objective on the attention-pooled vector, or with ``doc_share`` > 0 on ``model.dv``'s
        mix of the free vector and the pooled words; 0: none). The default, 8 (since round 14 of
        docs/attention-designs.md; 2 before), measured 80.90 ± 0.44 % on all of 20 Newsgroups against 79.97 ±
        0.25 % with 2 (3 seeds), and 12.40 % error on 25,000 IMDB reviews against 12.93 % (2 seeds); without the
        loss (0) the same model scored 58.74 % on 3,000 posts where 2 scored 66.38.
    context_dropout : float
        ``docquery`` only: training-time probability of hiding each context word.
    uniform_attention : bool
        Ablation: keep the design's attention scores at zero (uniform weights: its "uniform twin").
    attention_parts : str
        ``attention`` only: which attention learns, ``"both"``, ``"document"`` (over the document's own
        words; the context stays a mean) or ``"context"`` (over the context words; the document's words
        are pooled by a plain mean).
    update_rule : str
        The autograd designs (``attention``, ``docquery``, ``docloss``): ``"batch"`` computes a batch's
        gradients from the same tables, sums them per row and takes one row-wise Adagrad step per row
        (both backends, equal up to float rounding); ``"example"`` (Numba backend only) steps example
        after example, each seeing the previous one's updates, as gensim's SGD does.
    context_scores : str
        ``attention`` only: how context words are scored, ``"word+position"`` (a score per word plus one per
        relative position), ``"word"`` (per word only) or ``"shared"`` (the document attention's word scores).
    attention_alpha : float
        Learning-rate multiplier for the attention scores, relative to ``alpha``.
    row_update_cap : int
        A vector used k times in one batch moves by the mean of its k updates times
        ``min(k, row_update_cap)``, so frequent words cannot blow up large batches.
    hs : int
        gensim's switch: 1 adds hierarchical softmax over gensim's Huffman tree of the vocabulary (alone with
        ``negative=0``, or beside negative sampling), for PV-DBOW and the hand-written PV-DM designs
        (``mean``, ``sum``, ``wordpos``, ``concat``); 0 (default): negative sampling only.
    shrink_windows : bool
        PV-DM, as gensim: True draws each target's window uniformly from 1..``window`` (word2vec's
        weighting of near words); False always uses the full ``window``.
    dm_tag_count : int
        ``context="concat"`` (gensim's ``dm_concat=1``) only, as gensim: the number of document tags whose
        vectors start the concatenated input; a document with another number of tags is skipped.
    batch_words : int
        Accepted for gensim's signature: gensim's size of the jobs it hands its worker threads, in words.
        It has no effect here: training steps are cut by ``batch_size`` predictions.
    dbow_words : int
        PV-DBOW (``dm=0``), as gensim: 1 also trains the word vectors skip-gram style, interleaved with the
        document vectors: each word is predicted by every word of its window (shrunk as ``shrink_windows``
        says, within its document) through the same output layer, learning rate and negatives (or Huffman
        path); an epoch then makes about ``window + 1`` times more predictions. 0 (default): the word
        vectors stay at their random start. Ignored with ``dm=1`` (gensim ignores it too: PV-DM trains
        its words anyway) and in inference (gensim runs those pairs with the words frozen: no effect).
    sorted_vocab : int
        As gensim: 1 (default) orders the vocabulary by descending frequency, 0 keeps the words in the order
        they were first seen.
    comment : str or None
        A free-form note kept with the model and saved in its checkpoint (gensim's ``comment``).
    """

    vector_size: int = 100
    dm: int = 1
    context: str = "attention"
    window: int = 5
    min_count: int = 5
    max_vocab_size: int | None = None
    max_final_vocab: int | None = None
    sample: float = 1e-3
    negative: int = 5
    ns_exponent: float = 0.75
    alpha: float | None = None
    min_alpha: float = 0.0001
    epochs: int = 10
    seed: int = 1
    batch_size: int = 1024
    device: str = "auto"
    backend: str = "auto"
    workers: int | None = None
    sync_every: int = 8
    epoch_block: int = 2**20
    dv_mapfile: str | None = None
    doc_share: float | None = None
    attention_alpha: float = 1.0
    row_update_cap: int = 32
    pool_share: float = 0.5
    pool_sample: int = 40
    pool_group: int = 8
    pool_exclude: str = "position"
    pool_values: str = "shared"
    pool_heads: int = 1
    pool_loss: float = 8.0
    context_dropout: float = 0.3
    uniform_attention: bool = False
    attention_parts: str = "both"
    context_scores: str = "word"
    update_rule: str = "batch"
    hs: int = 0
    shrink_windows: bool = True
    batch_words: int = 10000
    dm_tag_count: int = 1
    dbow_words: int = 0
    sorted_vocab: int = 1
    comment: str | None = None

    def validate(self, check_schedule: bool = True) -> Doc2VecConfig:
        """Check every parameter; raise ``ValueError`` naming the bad one and its value.

        Parameters
        ----------
        check_schedule : bool
            Also require ``min_alpha <= alpha``. False lets gensim's idiom of lowering both between
            ``train()`` calls (``model.alpha -= d; model.min_alpha = model.alpha``) pass through a moment
            where they are out of order; ``train()`` checks the schedule it runs.

        Returns
        -------
        Doc2VecConfig
            ``self``, so calls can be chained.
        """
        _check_int(self, "vector_size", 1)
        if self.dm not in (0, 1):
            raise ValueError(f"The 'dm' parameter must be 1 (PV-DM) or 0 (PV-DBOW). Got {self.dm!r} instead.")
        if self.context not in CONTEXT_MODES:
            raise ValueError(
                f"The 'context' parameter must be one of {', '.join(map(repr, CONTEXT_MODES))}. "
                f"Got {self.context!r} instead."
            )
        _check_int(self, "window", 1)
        _check_int(self, "min_count", 1)
        _check_int(self, "max_vocab_size", 1, optional=True)
        _check_int(self, "max_final_vocab", 1, optional=True)
        _check_float(self, "sample", 0.0)
        if self.hs not in (0, 1) or isinstance(self.hs, bool):
            raise ValueError(f"The 'hs' parameter must be 0 (negative sampling) or 1 (hierarchical softmax). "
                             f"Got {self.hs!r} instead.")
        _check_int(self, "negative", 0)
        if self.hs == 0 and self.negative == 0:
            raise ValueError("You must set either 'hs' or 'negative' to be positive for proper training: with hs=0 "
                             "and negative=0 nothing predicts the target (gensim's rule). Use negative=5 (default).")
        if self.hs and self.dm == 1 and self.context in LAYERS:
            raise ValueError(f"hs=1 (hierarchical softmax) is implemented for PV-DBOW (dm=0) and the hand-written "
                             f"PV-DM designs (context 'mean', 'sum', 'wordpos', 'concat'), not for "
                             f"context={self.context!r}: "
                             "use negative sampling (hs=0) with it, or pick one of those.")
        _check_int(self, "dm_tag_count", 1)
        if self.dm == 1 and self.context == "concat" and self.backend == "numba":
            raise ValueError("context='concat' (gensim's dm_concat=1) runs on the PyTorch backend only: use "
                             "backend='torch' or 'auto'.")
        if not isinstance(self.shrink_windows, bool):
            raise ValueError(f"The 'shrink_windows' parameter must be True or False. Got {self.shrink_windows!r} "
                             "instead.")
        _check_int(self, "batch_words", 1)
        for name, meaning in (("dbow_words", "0 or 1 (1: also train word vectors skip-gram style in PV-DBOW)"),
                              ("sorted_vocab", "0 or 1 (1: vocabulary by descending frequency)")):
            value = getattr(self, name)
            if value not in (0, 1):  # True and False pass, stored as gensim's ints
                raise ValueError(f"The {name!r} parameter must be {meaning}. Got {value!r} instead.")
            setattr(self, name, int(value))
        if self.comment is not None and not isinstance(self.comment, str):
            raise ValueError(f"The 'comment' parameter must be a string or None. Got {self.comment!r} instead; "
                             f"write comment=str(...).")
        _check_float(self, "ns_exponent", None)
        if self.alpha is None:
            self.alpha = ADAGRAD_ALPHA if self.dm == 1 and self.context in LAYERS else SGD_ALPHA
        _check_float(self, "alpha", 0.0, strict=True)
        _check_float(self, "min_alpha", 0.0)
        if check_schedule and self.min_alpha > self.alpha:
            raise ValueError(
                f"The 'min_alpha' parameter must not exceed 'alpha' ({self.alpha}). Got {self.min_alpha!r} instead."
            )
        _check_int(self, "epochs", 1)
        _check_int(self, "seed", 0)
        _check_int(self, "batch_size", 1)
        if self.backend not in BACKENDS:
            raise ValueError(
                f"The 'backend' parameter must be one of {', '.join(map(repr, BACKENDS))}. "
                f"Got {self.backend!r} instead."
            )
        _check_int(self, "workers", 1, optional=True)
        _check_int(self, "sync_every", 1)
        _check_int(self, "epoch_block", 0)
        if self.dv_mapfile is not None and not isinstance(self.dv_mapfile, str):
            if not isinstance(self.dv_mapfile, os.PathLike):
                raise ValueError(f"The 'dv_mapfile' parameter must be a directory path or None. "
                                 f"Got {self.dv_mapfile!r} instead.")
            self.dv_mapfile = os.fspath(self.dv_mapfile)  # a path, stored as a string (config.json)
        _check_float(self, "attention_alpha", 0.0)
        low = 0 if self.context == "attention" else 0 + 1e-300  # only 'attention' has another document part
        if self.doc_share is not None and (isinstance(self.doc_share, bool) or not (
                isinstance(self.doc_share, (int, float)) and low <= self.doc_share < 1)):
            bounds = "[0, 1) for context='attention'" if low == 0 else "(0, 1)"
            raise ValueError(f"The 'doc_share' parameter must be a number in {bounds} or None. "
                             f"Got {self.doc_share!r} instead.")
        _check_int(self, "row_update_cap", 1)
        _check_int(self, "pool_sample", 1)
        _check_int(self, "pool_group", 1)
        if self.pool_exclude not in POOL_EXCLUDE:
            raise ValueError(f"The 'pool_exclude' parameter must be 'position' or 'word'. Got {self.pool_exclude!r} "
                             f"instead.")
        if self.pool_exclude == "word" and self.pool_group != 1:
            raise ValueError(f"pool_exclude='word' leaves the target word out of each example's own sample, and "
                             f"pool_group={self.pool_group!r} shares one sample between a document's examples: "
                             f"set pool_group=1.")
        if self.pool_values not in POOL_VALUES:
            raise ValueError(f"The 'pool_values' parameter must be 'shared' or 'own'. Got {self.pool_values!r} "
                             f"instead.")
        if self.pool_values == "own" and self.update_rule != "batch":
            raise ValueError(f"pool_values='own' needs update_rule='batch'. Got update_rule={self.update_rule!r}; "
                             f"set update_rule='batch' or pool_values='shared'.")
        if self.pool_values == "own" and self.context_scores == "shared":
            raise ValueError("pool_values='own' gives the pooled words a table of their own, and "
                             "context_scores='shared' scores the context words with the pooling's scores: use "
                             "context_scores='word' or pool_values='shared'.")
        _check_float(self, "pool_loss", 0.0)
        _check_int(self, "pool_heads", 1)
        if self.vector_size % self.pool_heads:
            raise ValueError(f"The 'pool_heads' parameter must divide vector_size ({self.vector_size}): each head "
                             f"pools an equal slice of the vectors. Got {self.pool_heads!r} instead.")
        if self.pool_heads > 1 and self.update_rule != "batch":
            raise ValueError(f"pool_heads > 1 needs update_rule='batch'. Got update_rule={self.update_rule!r}; set "
                             f"update_rule='batch' or pool_heads=1.")
        if self.pool_heads > 1 and self.context_scores == "shared":
            raise ValueError("pool_heads > 1 cannot share the document's scores with the context words "
                             "(context_scores='shared'): use context_scores='word' or pool_heads=1.")
        for name in ("pool_share", "context_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"The {name!r} parameter must be a number in [0, 1). Got {value!r} instead.")
        share = self.doc_share if self.doc_share is not None else DEFAULT_DOC_SHARE["attention"]
        if self.dm == 1 and self.context == "attention" and share + self.pool_share <= 0:
            raise ValueError("context='attention' needs doc_share or pool_share > 0: with neither, a document has no "
                             f"representation. Got doc_share={self.doc_share!r}, pool_share={self.pool_share!r}.")
        if self.dm == 1 and self.context == "attention" and share + self.pool_share >= 1:
            raise ValueError(f"context='attention' needs doc_share + pool_share < 1 so that the context words keep "
                             f"a share. Got doc_share={self.doc_share!r}, pool_share={self.pool_share!r}.")
        if self.attention_parts not in ATTENTION_PARTS:
            raise ValueError(f"The 'attention_parts' parameter must be 'both', 'document' or 'context'. "
                             f"Got {self.attention_parts!r} instead.")
        if self.context_scores not in CONTEXT_SCORES:
            raise ValueError(f"The 'context_scores' parameter must be 'word+position', 'word' or 'shared'. "
                             f"Got {self.context_scores!r} instead.")
        if self.update_rule not in UPDATE_RULES:
            raise ValueError(f"The 'update_rule' parameter must be one of {', '.join(map(repr, UPDATE_RULES))}. "
                             f"Got {self.update_rule!r} instead.")
        if not isinstance(self.uniform_attention, bool):
            raise ValueError(f"The 'uniform_attention' parameter must be True or False. "
                             f"Got {self.uniform_attention!r} instead.")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"The 'device' parameter must be a string such as 'auto', 'cpu' or 'cuda'. "
                             f"Got {self.device!r} instead.")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serializable dictionary of every parameter."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Doc2VecConfig:
        """Build a config from :meth:`to_dict` output, refusing unknown keys.

        Raises
        ------
        ValueError
            If ``values`` holds a key this version does not know.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown configuration keys {unknown}: this checkpoint or config was written by a newer "
                "attn_doc2vec; upgrade the package to use it."
            )
        return cls(**values).validate()

    def replace(self, check_schedule: bool = True, **changes: Any) -> Doc2VecConfig:
        """Copy with some parameters changed, validated (``check_schedule``: as :meth:`validate`)."""
        return dataclasses.replace(self, **changes).validate(check_schedule)


def config_fields() -> list[dataclasses.Field]:
    """The public fields of :class:`Doc2VecConfig`, in declaration order (for CLI generation)."""
    return list(fields(Doc2VecConfig))


def _check_int(cfg: Doc2VecConfig, name: str, minimum: int, optional: bool = False, hint: str = "") -> None:
    value = getattr(cfg, name)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " or None" if optional else ""
        raise ValueError(
            f"The {name!r} parameter must be an int >= {minimum}{extra}{' ' + hint if hint else ''}. "
            f"Got {value!r} instead."
        )


def _check_float(cfg: Doc2VecConfig, name: str, minimum: float | None, strict: bool = False) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else (f" > {minimum}" if strict else f" >= {minimum}")
        raise ValueError(f"The {name!r} parameter must be a number{bound}. Got {value!r} instead.")
