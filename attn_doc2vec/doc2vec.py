"""The user-facing :class:`Doc2Vec`, with gensim's API."""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attn_doc2vec import checkpoint, distributed
from attn_doc2vec.batching import Sampler
from attn_doc2vec.config import Doc2VecConfig, config_fields
from attn_doc2vec.corpus import (
    EmptyVocabularyError,
    EncodedCorpus,
    Vocabulary,
    build_vocabulary,
    empty_vocabulary_message,
    encode,
    release_free_heap,
    resolve_corpus,
)
from attn_doc2vec.doc_tables import MappedTables
from attn_doc2vec.explain import AttentionMixin
from attn_doc2vec.inference import infer
from attn_doc2vec.model import Doc2VecModule
from attn_doc2vec.store import open_corpus_store, write_corpus_store
from attn_doc2vec.training import EpochStats, Schedule, Trainer, make_generator, resolve_device

logger = logging.getLogger(__name__)

Callback = Any  # a gensim CallbackAny2Vec or any callable taking the model


class _class_only(classmethod):
    """A classmethod that refuses to run from an instance (``model.load(path)`` would not change ``model``:
    gensim raises ``AttributeError`` there too)."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return super().__get__(instance, owner)
        name = self.__func__.__name__

        def refuse(*_args: Any, **_kwargs: Any) -> None:
            raise AttributeError(f"{name}() is called on the class, not on a model: "
                                 f"model = {type(instance).__name__}.{name}(path). It returns a new model.")
        return refuse


class Doc2Vec(AttentionMixin):
    """Doc2Vec in PyTorch whose PV-DM can weight its context words with learned attention.

    Parameters are gensim's (``vector_size``, ``window``, ``min_count``, ``sample``, ``negative``,
    ``alpha``, ``epochs``, ``dm``, ``hs``, ``dbow_words``, ``sorted_vocab``, ``comment``, ...) plus ``context``,
    ``batch_size`` and ``device``; see :class:`~attn_doc2vec.config.Doc2VecConfig` for every one and its default.

    Parameters
    ----------
    documents : iterable of TaggedDocument, optional
        If given (or ``corpus_file``), the vocabulary is built and the model trained at once.
        Also accepted as ``corpus_iterable``.
    corpus_file : str, optional
        One document per line, tokens separated by spaces (gensim's format).
    dm_mean : int, optional
        gensim's switch: 1 means ``context="mean"``, 0 means ``context="sum"``.
    dm_concat : int, optional
        gensim's switch: 1 means ``context="concat"`` (the document and context vectors concatenated: slow
        and large, as gensim's docs say; PyTorch backend).
    callbacks : sequence, optional
        gensim ``CallbackAny2Vec`` objects or callables ``f(model)`` run at each epoch's end.
    trim_rule : callable, optional
        gensim's vocabulary trimming rule.
    **params
        Any field of :class:`~attn_doc2vec.config.Doc2VecConfig`.

    Examples
    --------
    >>> from attn_doc2vec import Doc2Vec, TaggedDocument
    >>> docs = [TaggedDocument(["the", "cat", "sat"], [0]), TaggedDocument(["a", "dog", "ran"], [1])]
    >>> model = Doc2Vec(docs, vector_size=16, min_count=1, epochs=5, device="cpu")
    >>> model.dv[0].shape
    (16,)
    """

    def __init__(self, documents: Iterable | None = None, corpus_file: str | os.PathLike | None = None, *,
                 corpus_iterable: Iterable | None = None, dm_mean: int | None = None, dm_concat: int | None = None,
                 callbacks: Sequence[Callback] = (), trim_rule: Callable | None = None, **params: Any) -> None:
        known = {f.name for f in config_fields()}
        unknown = sorted(set(params) - known)
        if unknown:
            raise TypeError(f"Doc2Vec got unknown parameter(s) {unknown}; valid ones are {sorted(known)}.")
        if dm_mean is not None:
            if dm_mean not in (0, 1):
                raise ValueError(f"The 'dm_mean' parameter must be 0 (sum) or 1 (mean). Got {dm_mean!r} instead.")
            if "context" in params:
                raise ValueError("Pass either 'context' or gensim's 'dm_mean', not both.")
            params["context"] = "mean" if dm_mean else "sum"
        if dm_concat:  # gensim's switch: 1 means context="concat" (0, its default, changes nothing)
            if dm_concat != 1 or "context" in params:
                raise ValueError("dm_concat=1 means context='concat': pass it alone (not with 'context' or "
                                 f"'dm_mean'). Got dm_concat={dm_concat!r}.")
            params["context"] = "concat"
        if documents is not None and corpus_iterable is not None:
            raise ValueError("Pass the corpus once: either 'documents' or 'corpus_iterable'.")
        self.config = Doc2VecConfig(**params).validate()
        self.callbacks = tuple(callbacks)
        self.vocab: Vocabulary | None = None
        self.module: Doc2VecModule | None = None
        self.generator: torch.Generator | None = None
        self.corpus_count = 0
        self.corpus_total_words = 0
        self.epochs_trained = 0
        self.world_size = 1  # processes that ran the latest train() call (torch.distributed), saved
        self.schedule: Schedule | None = None  # the latest train() call's plan and position (saved, resumable)
        self.loss_history: list[float] = []  # mean loss per prediction, one entry per epoch trained
        self.running_training_loss = 0.0
        self.compute_loss = False
        self.attention_history: list[dict] = []
        self.doc_tables: MappedTables | None = None  # dv_mapfile: the files the per-document tables are mapped from
        self.tracked_docs: list | None = None
        documents = documents if documents is not None else corpus_iterable
        if documents is not None or corpus_file is not None:
            corpus = resolve_corpus(documents, corpus_file, passes=2)
            self.build_vocab(corpus, trim_rule=trim_rule)
            self.train(corpus, total_examples=self.corpus_count, epochs=self.config.epochs)

    # ---------------------------------------------------------------------------------------------
    # gensim-style attribute access: model.epochs, model.window, model.vector_size, ...

    def __getattr__(self, name: str) -> Any:
        config = self.__dict__.get("config")
        if config is not None and name in config.__dataclass_fields__:
            return getattr(config, name)
        if name == "dm_concat" and config is not None:  # gensim's attributes, derived from the design
            return int(config.dm == 1 and config.context == "concat")
        if name == "dm_mean" and config is not None:
            return int(config.context == "mean")
        if name == "syn1":  # the property refused (Python then asks here): say why
            raise AttributeError("syn1 exists with hierarchical softmax only (hs=1); this model has hs=0.")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        """``model.epochs = 5`` (any config field) changes the config, validated, as in gensim; once the
        vocabulary is built only the training settings (:data:`ADJUSTABLE`) can change."""
        config = self.__dict__.get("config")
        if config is None or name not in config.__dataclass_fields__:
            object.__setattr__(self, name, value)
            return
        if self.__dict__.get("module") is not None and name not in ADJUSTABLE:
            raise AttributeError(f"{name!r} is fixed once the vocabulary is built (it shapes the model or its "
                                 f"vocabulary): create a new Doc2Vec(..., {name}={value!r}) and build it again. "
                                 f"Adjustable after build_vocab: {', '.join(sorted(ADJUSTABLE))}.")
        # alpha and min_alpha may pass through an out-of-order moment (gensim's idiom); train() checks them
        schedule = name not in ("alpha", "min_alpha")
        object.__setattr__(self, "config", config.replace(check_schedule=schedule, **{name: value}))

    @property
    def device(self) -> torch.device:
        """Where the tensors live (resolved from ``config.device``)."""
        return self._require_module().word_vectors.device

    @property
    def wv(self):
        """Word vectors as gensim ``KeyedVectors`` (counts in ``get_vecattr(word, "count")``)."""
        return self._require_vocab().wv

    @property
    def syn1neg(self) -> np.ndarray:
        """The output (negative-sampling) vectors, ``(len(wv), vector_size)``, as gensim's ``syn1neg`` (a copy)."""
        return self._require_module().output_vectors[: len(self.wv)].detach().cpu().numpy().copy()

    @property
    def syn1(self) -> np.ndarray:
        """Hierarchical softmax's inner-node vectors (``hs=1``), ``(len(wv), vector_size)``, as gensim's ``syn1``
        (a copy; gensim's last row is unused there too)."""
        if not self.config.hs:
            raise AttributeError("syn1")  # reported by __getattr__
        return self._require_module().output_vectors[len(self.wv):].detach().cpu().numpy().copy()

    @property
    def dv(self):
        """Document vectors as gensim ``KeyedVectors``, keyed by tag."""
        return self._require_vocab().dv

    # ---------------------------------------------------------------------------------------------

    def build_vocab(self, documents: Iterable | None = None, corpus_file: str | os.PathLike | None = None,
                    update: bool = False, trim_rule: Callable | None = None, *,
                    corpus_iterable: Iterable | None = None, progress_per: int = 10000,
                    keep_raw_vocab: bool = False) -> None:
        """Scan the corpus and build the vocabulary exactly as gensim does, then initialize the vectors.

        Parameters
        ----------
        documents, corpus_iterable : iterable of TaggedDocument, optional
            The corpus (one of these or ``corpus_file``).
        corpus_file : str, optional
            One document per line, tokens separated by spaces.
        update : bool
            Not supported: the vocabulary is built once, over the whole corpus.
        trim_rule : callable, optional
            gensim's trimming rule.
        progress_per, keep_raw_vocab : optional
            gensim's logging interval and raw-count option: accepted, without effect here.
        """
        if update:
            raise ValueError("build_vocab(update=True) is not supported: build the vocabulary once, "
                             "on the whole corpus.")
        documents = documents if documents is not None else corpus_iterable
        corpus = resolve_corpus(documents, corpus_file)
        t0 = time.perf_counter()
        rank, world_size = distributed.world()
        if world_size == 1:
            self.vocab = build_vocabulary(corpus, self.config, trim_rule=trim_rule)
        else:  # built once, by rank 0, and sent to every process
            box = [build_vocabulary(corpus, self.config, trim_rule=trim_rule) if rank == 0 else None]
            torch.distributed.broadcast_object_list(box, src=0)
            self.vocab = box[0]
        self.corpus_count = self.vocab.corpus_count
        self.corpus_total_words = self.vocab.corpus_total_words
        device = resolve_device(self.config.device)
        self.doc_tables = self._map_tables(device)
        module = Doc2VecModule.from_config(self.config, len(self.vocab.wv), len(self.vocab.dv),
                                           doc_table=None if self.doc_tables is None else self.doc_tables.table)
        # Initialize on the CPU, so that the starting point does not depend on the device.
        module.reset_parameters(make_generator(self.config.seed, torch.device("cpu")))
        self.module = module.to(device)
        self.generator = make_generator(self.config.seed, device)
        self.epochs_trained = 0
        self.schedule = None
        self.loss_history = []
        self._sync_keyed_vectors()
        release_free_heap()  # what the scan freed (its raw counts, the documents' token lists)
        logger.info("vocabulary: %d words, %d document tags, %d documents, %d raw words (%.2fs); device %s",
                    len(self.vocab.wv), len(self.vocab.dv), self.corpus_count, self.corpus_total_words,
                    time.perf_counter() - t0, device)

    def train(self, documents: Iterable | None = None, corpus_file: str | os.PathLike | None = None,
              total_examples: int | None = None, total_words: int | None = None, epochs: int | None = None,
              start_alpha: float | None = None, end_alpha: float | None = None, compute_loss: bool = False,
              callbacks: Sequence[Callback] = (), progress: bool | None = None, *,
              corpus_iterable: Iterable | None = None, corpus_store: str | os.PathLike | None = None,
              word_count: int = 0, queue_factor: int = 2, report_delay: float = 1.0) -> list[EpochStats]:
        """Train on a corpus whose tags are in the vocabulary (gensim's signature).

        Parameters
        ----------
        documents, corpus_iterable : iterable of TaggedDocument, optional
            The corpus (one of these or ``corpus_file``). Read once and encoded.
        corpus_file : str, optional
            One document per line, tokens separated by spaces.
        corpus_store : str or os.PathLike, optional
            Instead of a corpus: a corpus store written by :meth:`write_corpus_store` with this model's
            vocabulary, memory-mapped (no encoding pass, no token lists in memory).
        total_examples, total_words : int
            The corpus's documents or words: one of them is required, as in gensim (usually
            ``total_examples=model.corpus_count``). The corpus is counted exactly while encoding; a
            ``total_examples`` that differs is logged and the exact count used.
        epochs : int
            Passes over the corpus, required as in gensim (usually ``epochs=model.epochs``).
        start_alpha, end_alpha : float, optional
            Learning-rate schedule for this call (default: ``alpha`` to ``min_alpha``).
        compute_loss : bool
            Record the loss for :meth:`get_latest_training_loss`.
        callbacks : sequence, optional
            gensim ``CallbackAny2Vec`` objects or callables ``f(model)`` called at each epoch's end.
        progress : bool or None
            Show a tqdm progress bar (None: on a terminal).
        word_count, queue_factor, report_delay : optional
            gensim's job-queue and logging settings: accepted, without effect here (any other unknown
            argument is a ``TypeError``, as in gensim).

        Returns
        -------
        list of EpochStats
            Loss, time and words/s of each epoch.
        """
        self._require_module("train")
        documents = documents if documents is not None else corpus_iterable
        corpus = self._corpus_or_store(documents, corpus_file, corpus_store)  # its TypeErrors first, as gensim
        if epochs is None:  # then gensim's required arguments, with its messages
            raise ValueError("You must specify an explicit epochs count. The usual value is epochs=model.epochs.")
        if total_examples is None and total_words is None:
            raise ValueError("You must specify either total_examples or total_words, for proper learning-rate and "
                             "progress calculations. If you've just built the vocabulary using the same corpus, "
                             "using the count cached in the model is sufficient: total_examples=model.corpus_count.")
        epochs = _check_epochs(epochs, "The 'epochs' parameter")
        start = self.config.alpha if start_alpha is None else start_alpha
        end = self.config.min_alpha if end_alpha is None else end_alpha
        _check_alphas(start, end, "start_alpha", "end_alpha")
        reached = None if self.schedule is None else _alpha_reached(self.schedule)
        if reached is not None and start > reached:
            logger.warning("Effective 'alpha' higher than previous training cycles: this call starts at %g, the "
                           "previous one stopped at %g.", start, reached)
        return self._run(corpus, Schedule(start, end, epochs), total_examples, compute_loss, callbacks, progress)

    def resume_training(self, documents: Iterable | None = None, corpus_file: str | os.PathLike | None = None,
                        compute_loss: bool = False, callbacks: Sequence[Callback] = (),
                        progress: bool | None = None, *, corpus_iterable: Iterable | None = None,
                        corpus_store: str | os.PathLike | None = None) -> list[EpochStats]:
        """Finish the latest ``train`` call's plan from where it stopped, exactly.

        A checkpoint saved between epochs (``on_epoch_end``, ``scripts/train.py --save-every``) or after
        Ctrl-C records the learning-rate plan, the next epoch and batch and the random state, so that
        ``train(epochs=4)`` equals ``train(epochs=4)`` stopped after 2, saved, loaded and resumed, bit for
        bit on the same device. Pass the same corpus, in the same order (or the same ``corpus_store``).

        Raises
        ------
        RuntimeError
            If there is nothing to resume: no ``train`` call yet, or it finished every epoch.
        """
        self._require_module("resume training")
        if self.schedule is None or self.schedule.finished:
            done = "no train() call has run" if self.schedule is None else \
                f"the latest train() call finished all its {self.schedule.epochs} epochs"
            raise RuntimeError(f"Nothing to resume: {done}. Call train(documents, epochs=...) to train more.")
        documents = documents if documents is not None else corpus_iterable
        corpus = self._corpus_or_store(documents, corpus_file, corpus_store)
        logger.info("resuming training at epoch %d/%d, batch %d", self.schedule.epoch + 1, self.schedule.epochs,
                    self.schedule.batch)
        return self._run(corpus, self.schedule, None, compute_loss, callbacks, progress)

    def write_corpus_store(self, path: str | os.PathLike, documents: Iterable | None = None,
                           corpus_file: str | os.PathLike | None = None, *,
                           corpus_iterable: Iterable | None = None) -> Path:
        """Encode a corpus once into a corpus store at ``path`` for ``train(corpus_store=path)``.

        The store holds the corpus as int32 word rows of this model's vocabulary (plain ``.npy`` files and
        a ``store.json`` header; see :mod:`attn_doc2vec.store`), written in one streaming pass. Later
        ``train`` calls, in this process or after ``Doc2Vec.load``, map it instead of reading and encoding
        the corpus again.

        Parameters
        ----------
        path : str or os.PathLike
            A new directory (an existing path is refused, never overwritten).
        documents, corpus_iterable, corpus_file : optional
            The corpus, as for :meth:`train`; its tags must be in the vocabulary.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        self._require_module("write_corpus_store")
        documents = documents if documents is not None else corpus_iterable
        return write_corpus_store(resolve_corpus(documents, corpus_file), self.vocab, path)

    def _corpus_or_store(self, documents: Iterable | None, corpus_file: str | os.PathLike | None,
                         corpus_store: str | os.PathLike | None) -> Iterable | EncodedCorpus:
        if corpus_store is None:
            return resolve_corpus(documents, corpus_file)
        if documents is not None or corpus_file is not None:
            raise TypeError("Pass a corpus (documents / corpus_iterable / corpus_file) or corpus_store, not both.")
        return open_corpus_store(corpus_store, self.vocab)

    def _run(self, corpus: Iterable | EncodedCorpus, schedule: Schedule, total_examples: int | None,
             compute_loss: bool, callbacks: Sequence[Callback], progress: bool | None) -> list[EpochStats]:
        if len(self.vocab.wv) == 0:
            raise EmptyVocabularyError(empty_vocabulary_message(self.config.min_count, self.vocab.corpus_count))
        encoded = corpus if isinstance(corpus, EncodedCorpus) else encode(corpus, self.vocab)
        self._remember_corpus(encoded)  # for attention plots by tag (AttentionMixin)
        if total_examples is not None and total_examples != encoded.n_docs:
            logger.warning("total_examples=%d but the corpus has %d documents; using %d.",
                           total_examples, encoded.n_docs, encoded.n_docs)
        empty = int((encoded.lengths() == 0).sum())
        if empty:
            logger.warning("%d of %d documents have no word in the vocabulary and are skipped in training.",
                           empty, encoded.n_docs)
        if (encoded.tags < 0).all(axis=1).any():
            raise ValueError("Every document needs at least one tag: give each TaggedDocument tags=[...].")
        all_callbacks = [*self.callbacks, *callbacks]
        self.compute_loss = compute_loss
        self.running_training_loss = 0.0
        _call(all_callbacks, "on_train_begin", self)
        rank, world_size = distributed.world()
        generator, sync, trained = self.generator, None, encoded
        if world_size > 1:  # this process trains its shard of the documents (attn_doc2vec.distributed)
            trained = distributed.shard(encoded, rank, world_size)
            if schedule.batch and schedule.epoch_rng is not None:
                schedule.epoch_rng = None  # its order was one process's: the epoch restarts (Trainer warns)
            sync = distributed.TableSync(self.module, self.config.sync_every, trained.tags)
            generator = make_generator(distributed.rank_seed(self.config.seed, rank, self.epochs_trained),
                                       self.device)
            logger.info("rank %d of %d: documents %d-%d of %d", rank, world_size,
                        *distributed.shard_range(encoded.offsets, rank, world_size), encoded.n_docs)
        self.world_size = world_size
        trainer = Trainer(self.module, Sampler.from_vocab(self.vocab, self.config, generator), self.config)
        self.schedule = schedule

        def epoch_end(stats: EpochStats) -> None:
            self.epochs_trained += 1
            self.loss_history.append(stats.mean_loss)
            if compute_loss:
                self.running_training_loss += stats.loss
            self._sync_keyed_vectors()
            logger.info("epoch %d/%d: loss %.4f per prediction, %.0f words/s, alpha %.5f",
                        stats.epoch + 1, schedule.epochs, stats.mean_loss, stats.words_per_second, stats.alpha)
            _call(all_callbacks, "on_epoch_end", self)

        try:
            history = trainer.run(
                trained, schedule.epochs, schedule.start_alpha, schedule.end_alpha,
                on_epoch_begin=lambda _: _call(all_callbacks, "on_epoch_begin", self),
                on_epoch_end=epoch_end, progress=progress if rank == 0 else False, schedule=schedule,
                interruptible=sync is None, sync=sync,
            )
        except KeyboardInterrupt:
            self._sync_keyed_vectors()
            logger.warning("training stopped at epoch %d/%d, batch %d: save() keeps this point and "
                           "resume_training() continues from it", schedule.epoch + 1, schedule.epochs, schedule.batch)
            raise
        if sync is not None:
            logger.info("rank %d: %d synchronisations of the shared tables took %.1fs of %.1fs training", rank,
                        sync.syncs, sync.seconds, sum(h.seconds for h in history))
        _call(all_callbacks, "on_train_end", self)
        return history

    def get_latest_training_loss(self) -> float:
        """Summed loss of the latest ``train`` call so far (0 unless ``compute_loss=True``), as in gensim."""
        return self.running_training_loss

    def infer_vector(self, doc_words: list[str], alpha: float | None = None, min_alpha: float | None = None,
                     epochs: int | None = None) -> np.ndarray:
        """Infer a vector for one new document (gensim's semantics; defaults are the model's own).

        Parameters
        ----------
        doc_words : list of str
            The document's tokens.
        alpha, min_alpha : float, optional
            Learning-rate schedule.
        epochs : int, optional
            Passes over the document.

        Returns
        -------
        numpy.ndarray
            ``(vector_size,)`` float32.
        """
        return self.infer_vectors([doc_words], alpha=alpha, min_alpha=min_alpha, epochs=epochs)[0]

    def infer_vectors(self, documents: Sequence[list[str]], alpha: float | None = None,
                      min_alpha: float | None = None, epochs: int | None = None, return_tensor: bool = False,
                      progress: bool | None = None) -> np.ndarray | torch.Tensor:
        """Infer vectors for many documents at once, in batched tensor operations.

        Parameters
        ----------
        documents : sequence of list of str
            Token lists (``TaggedDocument`` objects are accepted: their words are used).
        alpha, min_alpha : float, optional
            Learning-rate schedule (default: the model's).
        epochs : int, optional
            Passes over the documents (default: the model's).
        return_tensor : bool
            Return a tensor on the model's device instead of a numpy array.
        progress : bool or None
            Show a progress bar (None: on a terminal).

        Returns
        -------
        numpy.ndarray or torch.Tensor
            ``(len(documents), vector_size)``.
        """
        self._require_module("infer_vectors")
        if isinstance(documents, (str, bytes)):
            raise TypeError("infer_vectors expects a list of token lists, not a string; for one document "
                            "use infer_vector(text.split()).")
        word_lists = [getattr(d, "words", d) for d in documents]
        for i, words in enumerate(word_lists):
            if isinstance(words, (str, bytes)) or not isinstance(words, Iterable):
                raise TypeError(f"Document #{i} to infer must be a list of tokens (not {type(words).__name__} "
                                f"{str(words)[:40]!r}); split it first, e.g. text.split().")
        word_lists = [list(w) for w in word_lists]
        epochs = _check_epochs(self.config.epochs if epochs is None else epochs,
                               "The 'epochs' parameter of inference")
        alpha = self.config.alpha if alpha is None else alpha
        min_alpha = self.config.min_alpha if min_alpha is None else min_alpha
        _check_alphas(alpha, min_alpha, "alpha", "min_alpha")
        vectors = infer(self.module, self.vocab, self.config, word_lists, epochs=epochs, alpha=alpha,
                        min_alpha=min_alpha, progress=progress)
        return vectors if return_tensor else vectors.cpu().numpy()

    def similarity_unseen_docs(self, doc_words1: list[str], doc_words2: list[str], alpha: float | None = None,
                               min_alpha: float | None = None, epochs: int | None = None) -> float:
        """Cosine similarity of two new documents' inferred vectors (gensim's method).

        Parameters
        ----------
        doc_words1, doc_words2 : list of str
            The two documents' tokens.
        alpha, min_alpha, epochs : optional
            Inference settings, as :meth:`infer_vector` (default: the model's).

        Returns
        -------
        float
            The cosine similarity, in [-1, 1] (0 when a vector is zero).
        """
        d1, d2 = self.infer_vectors([doc_words1, doc_words2], alpha=alpha, min_alpha=min_alpha, epochs=epochs)
        norms = float(np.linalg.norm(d1) * np.linalg.norm(d2))
        return float(np.dot(d1, d2) / norms) if norms > 0 else 0.0

    def estimate_memory(self, vocab_size: int | None = None, report: dict[str, int] | None = None) -> dict[str, int]:
        """Bytes the model's tables take with the current settings (gensim's method, our tables).

        Counted from the module these settings build (on PyTorch's ``meta`` device: nothing is allocated), so
        every table is in: gensim's names where one maps (``vectors`` the words, ``syn1neg`` and with ``hs=1``
        ``syn1`` the output rows, ``doctag_syn0`` the documents) and ours for the rest (attention parameters,
        Adagrad state, pooled documents), plus gensim's estimate of 500 bytes a word for the vocabulary.

        Parameters
        ----------
        vocab_size : int, optional
            Words in the vocabulary (default: the built vocabulary's).
        report : dict of str to int, optional
            Entries to start from (kept unless a table of the same name replaces them).

        Returns
        -------
        dict of str to int
            Bytes per member and their ``"total"``.
        """
        if vocab_size is None:
            vocab_size = len(self._require_vocab().wv)
        n_docs = len(self.vocab.dv) if self.vocab is not None else self.corpus_count
        with torch.device("meta"):
            module = Doc2VecModule.from_config(self.config, vocab_size, n_docs)
        names = {"word_vectors": "vectors", "doc_vectors": "doctag_syn0"}
        out = dict(report or {})
        out["vocab"] = vocab_size * 500
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            size = tensor.numel() * tensor.element_size()
            if name == "output_vectors" and self.config.hs:
                out["syn1neg"] = out["syn1"] = size // 2
            else:
                out[names.get(name, "syn1neg" if name == "output_vectors" else name)] = size
        out.pop("total", None)
        out["total"] = sum(out.values())
        logger.info("estimated required memory for %d words, %d documents and %d dimensions: %d bytes", vocab_size,
                    n_docs, self.config.vector_size, out["total"])
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        """gensim's ``model[key]``: a word's vector if ``key`` is in the vocabulary, else a document's (by tag);
        a list of keys gives the rows stacked."""
        if isinstance(key, (str, int, np.integer)):
            vocab = self._require_vocab()
            return vocab.wv[key] if key in vocab.wv else vocab.dv[key]
        return np.vstack([self[k] for k in key])

    def save_word2vec_format(self, fname: str | os.PathLike, doctag_vec: bool = False, word_vec: bool = True,
                             prefix: str = "*dt_", fvocab: str | os.PathLike | None = None,
                             binary: bool = False) -> None:
        """Write word and/or document vectors in the C word2vec format (gensim's method and options).

        Parameters
        ----------
        fname : path
            The file to write (replaced if it exists, as gensim does).
        doctag_vec : bool
            Write the document vectors, keyed ``prefix + tag``.
        word_vec : bool
            Write the word vectors (first, when both are written; the header counts both).
        prefix : str
            Prefix of the document keys, so that a tag cannot collide with a word.
        fvocab : path, optional
            Also write the word counts to this file.
        binary : bool
            Binary format instead of text.
        """
        vocab = self._require_vocab()
        total = len(vocab.wv) + len(vocab.dv) if word_vec and doctag_vec else None
        if word_vec:
            vocab.wv.save_word2vec_format(fname, fvocab, binary, total)
        if doctag_vec:
            vocab.dv.save_word2vec_format(fname, prefix=prefix, fvocab=fvocab, binary=binary,
                                          write_header=not word_vec, append=word_vec, sort_attr="doc_count")

    # ---------------------------------------------------------------------------------------------
    # Checkpoints

    def save(self, path: str | os.PathLike, force: bool = False, *, separately: Any = None,
             sep_limit: int | None = None) -> None:
        """Write a checkpoint directory; at every instant ``path`` holds the old or the new checkpoint.

        The directory holds ``config.json`` (parameters, format version, library versions, training
        state and schedule, the names and SHA-256 of the other files), ``vocab.<id>.json`` and
        ``model.<id>.safetensors``; nothing is pickled. A save writes only into a new or empty directory
        or one of our checkpoints, and never deletes a file it did not write (see
        :mod:`attn_doc2vec.checkpoint`).

        In a run across processes (``torchrun``, :mod:`attn_doc2vec.distributed`) every process holds the
        same model after each epoch, and only rank 0 writes; the others return at once.

        Parameters
        ----------
        path : path
            The checkpoint directory.
        force : bool
            Save even if a weight is NaN or infinite (a diverged model is refused by default, so that it
            cannot replace a good checkpoint).
        separately, sep_limit : optional
            gensim's options for storing large arrays in files of their own: accepted and without effect,
            since every array here is always stored in the safetensors file (which :meth:`load` can map
            with ``mmap='r'``).

        Raises
        ------
        ValueError
            If a weight is not finite and ``force`` is False.
        FileExistsError
            If ``path`` is a file or a directory that is not ours.
        """
        module = self._require_module("save")
        if not distributed.is_root():  # every process holds the same model: rank 0 writes it
            logger.debug("rank %d: save(%s) left to rank 0", distributed.world()[0], path)
            return
        if not force:
            bad = [name for name, t in module.state_dict().items()
                   if t.is_floating_point() and not _all_finite(t)]
            if bad:
                raise ValueError(f"Not saved: the model has NaN or infinite weights in {', '.join(bad)} (training "
                                 f"diverged), and {path} keeps what it held. Lower alpha and train again from "
                                 "build_vocab, or pass force=True to save it anyway.")
        state = {
            "epochs_trained": self.epochs_trained,
            "loss_history": self.loss_history,
            "corpus_count": self.corpus_count,
            "corpus_total_words": self.corpus_total_words,
            "world_size": self.world_size,
            "schedule": None if self.schedule is None else self.schedule.to_dict(),
        }
        epoch_rng = None if self.schedule is None else self.schedule.epoch_rng
        checkpoint.save(path, self.config, self.vocab, module, self.generator, state, epoch_rng=epoch_rng)

    @_class_only
    def load(cls, path: str | os.PathLike, device: str | None = None, mmap: str | None = None,
             dv_mapfile: str | os.PathLike | None = None) -> Doc2Vec:
        """Load a checkpoint written by :meth:`save`, onto ``device`` (default: the saved ``device`` setting).

        A checkpoint trained on a GPU loads on a CPU-only machine with ``device="cpu"`` or ``"auto"``.
        ``mmap='r'`` (gensim's option) maps the vectors from the file instead of copying them into memory, on
        the CPU: pages are read when used, and training writes private copies (the file never changes).
        ``dv_mapfile`` (a directory, see :class:`~attn_doc2vec.config.Doc2VecConfig`) copies the per-document
        tables into memory-mapped files there, for training on; the directory a checkpoint was trained with is
        not reused unless given.
        """
        if mmap not in (None, "r"):
            raise ValueError(f"mmap must be None or 'r' (read-only map, gensim's option). Got {mmap!r} instead.")
        if mmap is not None and dv_mapfile is not None:
            raise ValueError("Pass mmap='r' (read the checkpoint's own map) or dv_mapfile (train on mapped copies "
                             "of the document tables), not both.")
        tables = None
        if dv_mapfile is not None:
            tables = _mapped_tables(dv_mapfile, torch.device("cpu") if device is None else resolve_device(device))
            device = "cpu"
        loaded = checkpoint.load(path, mmap=mmap is not None, doc_table=None if tables is None else tables.table)
        config = loaded.config.replace(dv_mapfile=None if dv_mapfile is None else os.fspath(dv_mapfile))
        config = config if device is None else config.replace(device=device)
        if device is None and config.device != "auto" and config.device.startswith("cuda") \
                and not torch.cuda.is_available():
            logger.warning("checkpoint was trained on %s, which is not available here; loading on the CPU",
                           config.device)
            config = config.replace(device="cpu")
        model = cls(**config.to_dict())
        target = resolve_device(config.device)
        model.vocab = loaded.vocab
        model.module = loaded.module.to(target)
        model.doc_tables = tables
        model.generator = make_generator(config.seed, target)
        same_rng = loaded.generator_state is not None and target.type == loaded.rng_device
        if same_rng:  # a generator's state only fits a generator of the same device type
            model.generator.set_state(loaded.generator_state)
        model.corpus_count = loaded.state["corpus_count"]
        model.corpus_total_words = loaded.state["corpus_total_words"]
        model.epochs_trained = loaded.state["epochs_trained"]
        model.world_size = loaded.state.get("world_size", 1)  # absent before distributed training
        plan = loaded.state.get("schedule")  # absent before format 3
        if plan is not None:
            model.schedule = Schedule(**plan, epoch_rng=loaded.epoch_rng if plan["batch"] and same_rng else None)
        model.loss_history = list(loaded.state["loss_history"])
        model._sync_keyed_vectors()
        return model

    # ---------------------------------------------------------------------------------------------

    def _sync_keyed_vectors(self) -> None:
        # On the CPU the KeyedVectors share memory with the tensors; elsewhere this is a copy.
        self.vocab.wv.vectors = self.module.word_vectors.data.cpu().numpy()
        self.vocab.dv.vectors = self.module.document_vectors().data.cpu().numpy()
        self.vocab.wv.norms = None
        self.vocab.dv.norms = None

    def _map_tables(self, device: torch.device) -> MappedTables | None:
        """The mapped per-document tables of ``dv_mapfile`` (a directory per process of a distributed run)."""
        if self.config.dv_mapfile is None:
            return None
        self.doc_tables = None  # a model's own earlier tables free their directory first
        return _mapped_tables(self.config.dv_mapfile, device)

    def _require_vocab(self) -> Vocabulary:
        if self.vocab is None:
            raise RuntimeError("This model has no vocabulary yet: call build_vocab(documents) first.")
        return self.vocab

    def _require_module(self, action: str = "use the vectors") -> Doc2VecModule:
        if self.module is None:
            raise RuntimeError(f"Cannot {action} before the vocabulary is built: call "
                               "model.build_vocab(documents) first (or pass documents to Doc2Vec(...)).")
        return self.module

    def __repr__(self) -> str:
        size = f"{len(self.vocab.wv)} words, {len(self.vocab.dv)} docs" if self.vocab else "no vocabulary"
        mode = f"PV-DM/{self.config.context}" if self.config.dm else "PV-DBOW"
        return f"Doc2Vec<{mode}, vector_size={self.config.vector_size}, window={self.config.window}, {size}>"


# Config fields that a built model can change between train() calls (``model.epochs = 5``): the schedule and
# the batches' settings; the rest shape the tensors or the vocabulary.
ADJUSTABLE = frozenset({"epochs", "alpha", "min_alpha", "workers", "batch_size", "negative", "backend", "pool_group",
                        "pool_exclude", "update_rule", "attention_alpha", "row_update_cap", "shrink_windows",
                        "batch_words", "dbow_words", "comment", "epoch_block", "sync_every"})


def _check_epochs(epochs: Any, what: str) -> int:
    """``epochs`` if it is an int >= 1, else a ValueError starting with ``what``."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"{what} must be an int >= 1. Got {epochs!r} instead.")
    return epochs


def _alpha_reached(schedule: Schedule) -> float:
    """The learning rate a train() call had reached at the start of the epoch where it stopped (its end
    when it finished)."""
    done = min(1.0, schedule.epoch / schedule.epochs)
    return schedule.start_alpha + (schedule.end_alpha - schedule.start_alpha) * done


def _check_alphas(alpha: Any, min_alpha: Any, name: str, min_name: str) -> None:
    """Learning rates must be finite, ``alpha > 0`` and ``0 <= min_alpha <= alpha``."""
    for value, label in ((alpha, name), (min_alpha, min_name)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"The {label!r} parameter must be a finite number. Got {value!r} instead.")
    if alpha <= 0:
        raise ValueError(f"The {name!r} parameter (learning rate) must be > 0. Got {alpha!r} instead.")
    if not 0 <= min_alpha <= alpha:
        raise ValueError(f"The {min_name!r} parameter must be in [0, {name}={alpha!r}]. Got {min_alpha!r} instead.")


def _mapped_tables(dv_mapfile: str | os.PathLike, device: torch.device) -> MappedTables:
    """The document tables of ``dv_mapfile`` for a model on ``device`` (the CPU only), in ``dv_mapfile`` or, in a
    distributed run, ``dv_mapfile/rank<N>`` (each process its own)."""
    if device.type != "cpu":
        raise ValueError(f"dv_mapfile maps the document tables into CPU memory, but the model is on {device}: "
                         "pass device='cpu', or dv_mapfile=None to keep them on the device.")
    rank, world_size = distributed.world()
    return MappedTables(Path(dv_mapfile) / f"rank{rank}" if world_size > 1 else Path(dv_mapfile))


def _all_finite(tensor: torch.Tensor, chunk: int = 1 << 20) -> bool:
    """No NaN or infinity in ``tensor``, checked a million elements at a time (``torch.isfinite`` of a whole
    table allocates several table-sized temporaries: +165 MB for 300,000 documents' tables, measured)."""
    flat = tensor.reshape(-1)
    return all(bool(torch.isfinite(flat[lo:lo + chunk]).all()) for lo in range(0, flat.shape[0], chunk))


def _call(callbacks: Sequence[Callback], event: str, model: Doc2Vec) -> None:
    """Call gensim-style callback methods; plain callables run at each epoch's end."""
    for cb in callbacks:
        method = getattr(cb, event, None)
        if callable(method):
            method(model)
        elif event == "on_epoch_end" and callable(cb):
            cb(model)


def _signature() -> inspect.Signature:
    """``Doc2Vec.__init__``'s signature with every config field spelled out, for help() and IDEs."""
    base = inspect.signature(Doc2Vec.__init__)
    params = [p for p in base.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    defaults = Doc2VecConfig()
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=getattr(defaults, f.name))
               for f in config_fields()]
    return base.replace(parameters=params)


Doc2Vec.__init__.__signature__ = _signature()
