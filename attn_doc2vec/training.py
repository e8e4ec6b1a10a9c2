"""The training loop: batches, learning-rate decay, sparse SGD updates, device, progress.

Updates follow gensim's rules so that results are comparable: plain SGD with a
learning rate decaying linearly from ``alpha`` to ``min_alpha`` over all epochs,
and context-vector errors propagated to the inputs as gensim does (undivided for
``mean``, divided by the number of inputs for ``sum``). For ``attention`` each
input receives the error in proportion to its weight, ``n * a_j * dL/dh``: the
document vector exactly as in gensim's mean rule, the words too while the
attention is uniform.

The autograd designs of :mod:`attn_doc2vec.context` (``attention``, ``docquery``,
``docloss``) instead differentiate their loss with autograd and take row-wise Adagrad
steps (:class:`AutogradStep`; on the CPU the equal Numba kernel of
:mod:`attn_doc2vec.fused_layers`).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import mmap
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from attn_doc2vec.batching import DeviceCorpus, Sampler, dbow_examples, epoch_blocks, trains_in_blocks
from attn_doc2vec.config import Doc2VecConfig
from attn_doc2vec.corpus import EncodedCorpus
from attn_doc2vec.distributed import TableSync
from attn_doc2vec.model import Batch, Doc2VecModule, Gradients
from attn_doc2vec.optim import dense_adagrad, row_adagrad

logger = logging.getLogger(__name__)


@dataclass
class EpochStats:
    """What one epoch did.

    Attributes
    ----------
    epoch : int
        Index of the epoch within its ``train`` call.
    loss : float
        Summed negative-sampling loss over the epoch's examples.
    examples : int
        Predictions made (PV-DM: kept tokens; PV-DBOW: (tag, token) pairs, plus with ``dbow_words=1`` the
        skip-gram (word, word) pairs).
    raw_words : int
        Corpus tokens of the epoch, counted before downsampling.
    seconds : float
        Wall time of the epoch.
    alpha : float
        Learning rate at the end of the epoch.
    compile_seconds : float
        Part of ``seconds`` spent in the CPU kernels' first calls in the process (compiling or loading
        them from Numba's cache); :attr:`words_per_second` leaves it out.
    sync_seconds : float
        Part of ``seconds`` spent adding up the processes' changes (training across processes; 0 alone).
    """

    epoch: int
    loss: float
    examples: int
    raw_words: int
    seconds: float
    alpha: float
    compile_seconds: float = 0.0
    sync_seconds: float = 0.0

    @property
    def mean_loss(self) -> float:
        """Loss per prediction."""
        return self.loss / max(self.examples, 1)

    @property
    def words_per_second(self) -> float:
        """Corpus tokens (before downsampling) per second of training, kernel compilation left out."""
        return self.raw_words / max(self.seconds - self.compile_seconds, 1e-9)


@dataclass
class Schedule:
    """Where a ``train`` call stands: its learning-rate plan and the next batch to run.

    Saved in every checkpoint, so that training continues exactly where it stopped
    (:meth:`attn_doc2vec.Doc2Vec.resume_training`).

    Attributes
    ----------
    start_alpha, end_alpha : float
        The learning rate decays linearly from one to the other over ``epochs``.
    epochs : int
        Passes planned.
    epoch, batch : int
        The next epoch and the next batch within it (``epoch == epochs``: finished).
    epoch_rng : Tensor or None
        The generator's state when ``epoch`` began, which rebuilds its downsampling and order
        when it stopped in the middle (``batch > 0``).
    """

    start_alpha: float
    end_alpha: float
    epochs: int
    epoch: int = 0
    batch: int = 0
    epoch_rng: Tensor | None = None

    @property
    def finished(self) -> bool:
        """Whether every planned epoch ran."""
        return self.epoch >= self.epochs

    def to_dict(self) -> dict:
        """JSON-serializable fields (``epoch_rng`` travels with the tensors)."""
        return {"start_alpha": self.start_alpha, "end_alpha": self.end_alpha, "epochs": self.epochs,
                "epoch": self.epoch, "batch": self.batch}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training cleanly between two batches; ``schedule`` says where."""

    def __init__(self, schedule: Schedule) -> None:
        super().__init__(f"training interrupted at epoch {schedule.epoch + 1}/{schedule.epochs}, "
                         f"batch {schedule.batch}")
        self.schedule = schedule


@contextmanager
def stop_on_interrupt(enabled: bool) -> Iterator[list[bool]]:
    """Turn the first Ctrl-C into a request to stop after the current batch (a second one stops at once).

    Yields a one-element list that becomes ``[True]`` when a stop was requested. Only the main thread
    can receive signals: elsewhere (and when not ``enabled``) Ctrl-C keeps Python's behaviour.
    """
    flag = [False]
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if not enabled or not callable(previous):  # not the main thread, or SIGINT ignored or handled outside Python
        yield flag
        return

    def request_stop(signum, frame) -> None:
        flag[0] = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C interrupts at once
        logger.warning("interrupt: stopping after the current batch (press Ctrl-C again to stop at once)")

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def first_call_seconds() -> float:
    """Seconds this process spent in the CPU kernels' first calls (0 when Numba was never loaded)."""
    fused = sys.modules.get("attn_doc2vec.fused")
    return fused.first_call_seconds() if fused is not None else 0.0


def pool_function(backend: str, config: Doc2VecConfig) -> Callable[..., Tensor] | None:
    """The per-document pooling of ``backend`` (Numba's kernel on the CPU; None: the PyTorch reference)."""
    if backend != "numba":
        return None
    from functools import partial

    from attn_doc2vec.fused_layers import pooled_documents_cpu  # imports Numba only when it is used

    return partial(pooled_documents_cpu, threads=config.workers)


def page_releaser(array: np.ndarray) -> Callable[[], None] | None:
    """For an array mapped from a file (a corpus store's tokens): a function that lets the kernel drop the pages
    read so far, which are read again from the file when needed, so that passes over a corpus larger than memory
    do not fill the process's resident memory with it. None for an array in memory."""
    base = array
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    mapping = getattr(base, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    return lambda: mapping.madvise(mmap.MADV_DONTNEED)


def resolve_device(name: str) -> torch.device:
    """Turn ``"auto"`` into CUDA when available, else CPU; check that an explicit device exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"The 'device' parameter must name a torch device such as 'cpu' or 'cuda'. "
                         f"Got {name!r} instead.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} was requested but CUDA is not available here; use device='cpu' or 'auto'.")
    return device


def resolve_backend(name: str, device: torch.device) -> str:
    """Turn ``"auto"`` into ``"numba"`` on the CPU when Numba is installed, else ``"torch"``; check ``"numba"``.

    With ``"numba"`` the hand-written designs run in :mod:`attn_doc2vec.fused` and the autograd designs in
    :mod:`attn_doc2vec.fused_layers`.
    """
    has_numba = importlib.util.find_spec("numba") is not None
    if name == "auto":
        return "numba" if device.type == "cpu" and has_numba else "torch"
    if name == "numba" and device.type != "cpu":
        raise ValueError(f"backend='numba' runs on the CPU only, but the device is {device}; use backend='torch' "
                         "or 'auto' (or device='cpu').")
    if name == "numba" and not has_numba:
        raise ImportError("backend='numba' needs Numba: pip install numba (or use backend='torch').")
    return name


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


@contextmanager
def training_mode(device: torch.device, workers: int | None):
    """Deterministic kernels on CUDA and the requested CPU threads, restored afterwards.

    The deterministic flag is left alone on the CPU: setting it imports ``torch._inductor`` (about 70 MB of
    memory and a second or two on PyTorch 2.13), which the CPU paths never use.
    """
    previous_threads = torch.get_num_threads()
    cuda = device.type == "cuda"
    previous_det = (torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled()) if cuda else None
    try:
        if workers is not None:
            torch.set_num_threads(workers)
        if cuda:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(previous_threads)
        if previous_det is not None:
            torch.use_deterministic_algorithms(previous_det[0], warn_only=previous_det[1])


class Trainer:
    """Runs epochs of SGD over an encoded corpus.

    Parameters
    ----------
    module : Doc2VecModule
        The network, already on its device.
    sampler : Sampler
        Random draws (downsampling, windows, negatives) on the same device.
    config : Doc2VecConfig
        Training parameters.
    """

    def __init__(self, module: Doc2VecModule, sampler: Sampler, config: Doc2VecConfig) -> None:
        self.module = module
        self.config = config
        self.sync: TableSync | None = None
        self._release_pages: Callable[[], None] | None = None  # run(): lets a mapped corpus's pages go
        self.device = module.word_vectors.device
        self.backend = resolve_backend(config.backend, self.device)
        if module.concatenates:  # gensim's dm_concat has no fused kernel (config refuses backend="numba")
            self.backend = "torch"
        sampler.pool_sample = module.layer.pool_sample if module.uses_layer else 0
        sampler.pool_group = config.pool_group
        sampler.pool_exclude = config.pool_exclude
        sampler.context_dropout = module.layer.context_dropout if module.uses_layer else 0.0
        if self.backend == "numba":
            from attn_doc2vec.fused_batching import FusedSampler  # the same draws, batches cut by kernels

            sampler = FusedSampler.from_sampler(sampler)
        self.sampler = sampler

    def run(
        self,
        encoded: EncodedCorpus,
        epochs: int,
        start_alpha: float,
        end_alpha: float,
        doc_vectors: Tensor | None = None,
        on_epoch_begin: Callable[[int], None] | None = None,
        on_epoch_end: Callable[[EpochStats], None] | None = None,
        progress: bool | None = None,
        desc: str = "training",
        schedule: Schedule | None = None,
        interruptible: bool = False,
        sync: TableSync | None = None,
    ) -> list[EpochStats]:
        """Train for ``epochs`` passes.

        Parameters
        ----------
        encoded : EncodedCorpus
            The corpus; its tag rows index ``doc_vectors``.
        epochs : int
            Passes over the corpus.
        start_alpha, end_alpha : float
            Learning rate at the start and at the end, decayed linearly per batch.
        doc_vectors : Tensor, optional
            Train this document matrix only, leaving words, outputs and attention frozen (inference).
            By default the module's own tables are all trained.
        on_epoch_begin, on_epoch_end : callable, optional
            Hooks called with the epoch index / its :class:`EpochStats`.
        progress : bool or None
            Show a tqdm bar (None: only on a terminal).
        schedule : Schedule, optional
            Continue this plan from its position instead of starting a new one (``epochs``,
            ``start_alpha`` and ``end_alpha`` must then be its own). It is updated in place as batches
            complete; :attr:`schedule` is the same object.
        interruptible : bool
            The first Ctrl-C stops training after the current batch, raising :class:`TrainingInterrupted`.
        sync : TableSync, optional
            Training across processes (:mod:`attn_doc2vec.distributed`): ``encoded`` is this rank's shard, and
            ``sync`` adds up the ranks' changes during and after each epoch. The epochs' figures are then the
            whole corpus's (losses and examples summed over the ranks, words of the whole corpus).

        Raises
        ------
        FloatingPointError
            If the loss stops being finite.
        TrainingInterrupted
            If Ctrl-C stopped an ``interruptible`` run.
        """
        if schedule is None:
            schedule = Schedule(start_alpha, end_alpha, epochs)
        elif (schedule.epochs, schedule.start_alpha, schedule.end_alpha) != (epochs, start_alpha, end_alpha):
            raise ValueError("run(schedule=...) continues that schedule: pass its own epochs and alphas.")
        if sync is not None and interruptible:
            raise ValueError("Ctrl-C cannot stop the processes of a distributed run together: train with "
                             "interruptible=False (checkpoints at epoch ends resume it).")
        self.schedule = schedule
        self.sync = sync
        blocked = trains_in_blocks(len(encoded.tokens), self.config.epoch_block)  # blocks index their own docs
        corpus = DeviceCorpus.from_encoded(encoded, self.device, with_docs=not blocked)
        # a corpus store's tokens: once a block is gathered, the pages read are let go (read again when needed)
        self._release_pages = page_releaser(encoded.tokens) if blocked else None
        docs = self.module.doc_vectors.data if doc_vectors is None else doc_vectors
        total_words = epochs * encoded.raw_words
        history: list[EpochStats] = []
        bar = tqdm(total=total_words, unit="word", unit_scale=True, desc=desc,
                   disable={None: None, True: False, False: True}[progress], leave=False,
                   initial=(schedule.epoch * encoded.raw_words))
        # With the Numba backend PyTorch only builds the batches, one thread suffices: more would spin
        # in OpenMP barriers against the kernels' threads (measured 5-20x slower batches on 2 cores).
        threads = 1 if self.backend == "numba" else self.config.workers
        with torch.no_grad(), training_mode(self.device, threads), bar, stop_on_interrupt(interruptible) as stop:
            while not schedule.finished:
                epoch = schedule.epoch
                if on_epoch_begin is not None:
                    on_epoch_begin(epoch)
                t0, compiled0 = time.perf_counter(), first_call_seconds()
                synced0 = 0.0 if sync is None else sync.seconds
                loss, examples, alpha = self._epoch(corpus, docs, doc_vectors is None, schedule, bar,
                                                    encoded.raw_words, stop)
                if doc_vectors is None and self.module.pools_documents:
                    self.module.pool_tags(corpus.tokens, corpus.offsets, corpus.tags, docs.shape[0],
                                          pool=pool_function(self.backend, self.config),
                                          reduce=None if sync is None else sync.sum_, out=self.module.pooled_docs)
                    if self._release_pages is not None:  # the pooling read every document's words
                        self._release_pages()
                raw_words = encoded.raw_words
                if sync is not None:  # the whole corpus's figures
                    loss, examples, raw_words = sync.total(loss, examples, raw_words)
                    examples, raw_words = int(examples), int(raw_words)
                if schedule.batch:  # Ctrl-C stopped it in the middle of the epoch
                    raise TrainingInterrupted(schedule)
                stats = EpochStats(epoch=epoch, loss=loss, examples=examples, raw_words=raw_words,
                                   seconds=time.perf_counter() - t0, alpha=alpha,
                                   compile_seconds=first_call_seconds() - compiled0,
                                   sync_seconds=0.0 if sync is None else sync.seconds - synced0)
                # loss per prediction of zero output vectors: log 2 per output row (hs: at most the longest path)
                hs_rows = 0 if self.sampler.hs_mask is None else self.sampler.hs_mask.shape[1]
                untrained = ((1 + self.config.negative) * (self.config.negative > 0) + hs_rows) * math.log(2)
                if not stats.mean_loss <= 10 * untrained:  # also catches nan and inf
                    raise FloatingPointError(
                        f"The training loss diverged in epoch {epoch + 1}: {stats.mean_loss:.4g} per prediction "
                        f"(an untrained model has {untrained:.2f}): the learning rate (alpha={start_alpha}) is "
                        f"probably too high for batch_size={self.config.batch_size}; lower alpha or batch_size "
                        "and train again from build_vocab."
                    )
                bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{stats.mean_loss:.4f}")
                history.append(stats)
                if on_epoch_end is not None:
                    on_epoch_end(stats)
                if stop[0] and not schedule.finished:
                    raise TrainingInterrupted(schedule)
        return history

    def _epoch(self, corpus: DeviceCorpus, docs: Tensor, update_shared: bool, schedule: Schedule, bar,
               raw_words: int, stop: list[bool]) -> tuple[float, int, float]:
        generator = self.sampler.generator
        resumed = schedule.batch > 0 and schedule.epoch_rng is not None
        if resumed:  # rebuild the interrupted epoch's downsampling and order, then go on from the saved state
            now = generator.get_state()
            generator.set_state(schedule.epoch_rng)
        else:
            if schedule.batch:
                logger.warning("the random state of the interrupted epoch %d is not available on %s: it restarts "
                               "from its first batch", schedule.epoch + 1, generator.device)
            schedule.batch, schedule.epoch_rng = 0, generator.get_state()
        blocks = None
        if trains_in_blocks(len(corpus), self.config.epoch_block):
            blocks = epoch_blocks(corpus.offsets, self.config.epoch_block, generator)
            base = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
            counts = [self._prepare(self._gather(corpus, block), update_shared, self._block_generator(base, k),
                                    order=False)[4] for k, block in enumerate(blocks)]
        else:  # the whole corpus at once, from the epoch's generator
            whole = self._prepare(corpus, update_shared)
            counts = [whole[4]]
        if resumed:
            generator.set_state(now)
        batch_size = self.config.batch_size
        if not update_shared:
            # Inference trains few document vectors, each used by many examples: keep a document's
            # expected uses per batch within row_update_cap, so a lone document is not averaged away.
            batch_size = min(batch_size, self.config.row_update_cap * docs.shape[0])
        block_batches = [math.ceil(count / batch_size) for count in counts]
        n_batches = sum(block_batches)
        sync = self.sync if update_shared else None
        if sync is not None:
            sync.begin_epoch(n_batches)
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        start_alpha, end_alpha = schedule.start_alpha, schedule.end_alpha
        epoch, epochs = schedule.epoch, schedule.epochs
        alpha = start_alpha
        words_done = raw_words * schedule.batch // max(n_batches, 1)
        step = self._step(docs, update_shared)
        examples = 0
        first = 0  # the global index of the block's first batch
        for k, block_n in enumerate(block_batches):
            if first + block_n <= schedule.batch:  # done before an interruption
                first += block_n
                continue
            if blocks is None:
                kept, positions, slots, pairs, n, order = whole
            else:
                kept = positions = slots = pairs = order = None  # the previous block's arrays go first
                kept, positions, slots, pairs, n, order = self._prepare(
                    self._gather(corpus, blocks[k]), update_shared, self._block_generator(base, k))
            n_doc = positions.shape[0]
            for i in range(max(schedule.batch, first), first + block_n):
                alpha = start_alpha - (start_alpha - end_alpha) * (epoch + i / n_batches) / epochs
                j = i - first
                pick = order[j * batch_size:(j + 1) * batch_size]
                if self.module.dm:
                    batch = self.sampler.pvdm_batch(kept, positions[pick])
                elif pairs is None:
                    batch = self.sampler.dbow_batch(kept, positions[pick], None if slots is None else slots[pick])
                else:
                    docs_pick, pairs_pick = pick[pick < n_doc], pick[pick >= n_doc] - n_doc
                    batch = self.sampler.dbow_batch(kept, positions[docs_pick],
                                                    None if slots is None else slots[docs_pick], pairs[pairs_pick])
                loss += step(batch, alpha)
                if sync is not None:
                    sync.after_batch(i)
                examples += pick.shape[0]
                schedule.batch = i + 1
                words = raw_words * (i + 1) // n_batches
                bar.update(words - words_done)
                words_done = words
                if stop[0] and i + 1 < n_batches:
                    return float(loss), examples, alpha
            first += block_n
        bar.update(raw_words - words_done)
        if sync is not None:
            sync.end_epoch()
        schedule.epoch, schedule.batch, schedule.epoch_rng = epoch + 1, 0, None
        return float(loss), examples, alpha

    def _prepare(self, corpus: DeviceCorpus, update_shared: bool, generator: torch.Generator | None = None,
                 order: bool = True) -> tuple:
        """An epoch's (or a block's) examples: ``(kept, positions, slots, pairs, n, order)``: the downsampled
        corpus, the PV-DM positions or PV-DBOW (position, tag slot) examples, the skip-gram pairs of
        ``dbow_words``, the number of examples and their random order (None with ``order=False``), drawn from
        ``generator`` (default: the sampler's)."""
        saved = self.sampler.generator
        if generator is not None:
            self.sampler.generator = generator
        try:
            kept = self.sampler.downsample(corpus)
            slots = pairs = None
            if self.module.dm:
                positions = torch.arange(len(kept), device=self.device)
            else:
                positions, slots = dbow_examples(kept)
                if self.config.dbow_words and update_shared:  # inference: gensim's pairs there move nothing
                    pairs = self.sampler.skipgram_pairs(kept)
            n_doc = positions.shape[0]
            n = n_doc + (0 if pairs is None else pairs.shape[0])  # PV-DBOW: the skip-gram pairs are n_doc..
            if not order:
                return kept, positions, slots, pairs, n, None
            # A fresh order every epoch: a batch then mixes many documents, so few rows repeat in it
            # (pool_group > 1: runs of a document's positions, in random order).
            if self.module.dm:
                ranks = self.sampler.epoch_order(kept)
            else:  # dbow_words: the pairs outnumber the words ~window + 1 times: int32 order where it fits
                small = pairs is not None and n < 2**31
                ranks = torch.randperm(n, generator=self.sampler.generator, device=self.device,
                                       dtype=torch.int32 if small else torch.int64)
            return kept, positions, slots, pairs, n, ranks
        finally:
            self.sampler.generator = saved

    def _gather(self, corpus: DeviceCorpus, documents: Tensor) -> DeviceCorpus:
        """A block's corpus (:meth:`DeviceCorpus.select`), then the memory-mapped pages it read let go."""
        block = corpus.select(documents)
        if self._release_pages is not None:
            self._release_pages()
        return block

    def _block_generator(self, base: int, block: int) -> torch.Generator:
        """The generator of an epoch's block ``block``: seeded from the epoch's draw ``base``, so that a block's
        examples can be prepared again (counted first, rebuilt on resume) without replaying the others."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed((base + block) % 2**63)
        return generator

    def _step(self, docs: Tensor, update_shared: bool) -> Callable[[Batch, float], Tensor | float]:
        """The backend's SGD step, ``step(batch, alpha) -> loss``: fused Numba kernels or the PyTorch reference."""
        cfg = self.config
        if self.backend == "numba" and not self.module.uses_layer:
            from attn_doc2vec.fused import FusedStep  # imports Numba only when it is used

            return FusedStep(self.module, docs, update_shared, cfg.attention_alpha, cfg.row_update_cap, cfg.workers)

        if self.module.uses_layer:
            if self.backend == "numba":
                from attn_doc2vec.fused_layers import LayerFusedStep  # imports Numba only when it is used

                return LayerFusedStep(self.module, docs, update_shared, cfg.attention_alpha, cfg.update_rule,
                                      cfg.workers)
            if cfg.update_rule != "batch":
                raise ValueError(f"update_rule={cfg.update_rule!r} runs on the Numba backend only (backend='numba' "
                                 "on a CPU); the PyTorch backend applies the 'batch' rule.")
            return AutogradStep(self.module, docs, update_shared, cfg.attention_alpha)

        def reference(batch: Batch, alpha: float) -> Tensor:
            grads = self.module.gradients(batch, docs)
            apply_update(self.module, batch, grads, alpha, docs, update_shared, cfg.attention_alpha, cfg.row_update_cap)
            return grads.loss

        return reference


class AutogradStep:
    """One step of an autograd design: its loss differentiated by PyTorch, then row-wise Adagrad.

    Parameters
    ----------
    module : Doc2VecModule
        A module with a :class:`~attn_doc2vec.context.ContextLayer`.
    docs : Tensor
        The document matrix being trained (the module's, or a fresh one for inference).
    update_shared : bool
        Also update words, outputs and the layer (False during inference).
    attention_alpha : float
        Learning-rate multiplier for the layer's parameters.
    """

    def __init__(self, module: Doc2VecModule, docs: Tensor, update_shared: bool, attention_alpha: float) -> None:
        self.module, self.docs, self.update_shared = module, docs, update_shared
        self.attention_alpha = attention_alpha
        own = docs.data_ptr() == module.doc_vectors.data_ptr()
        self.doc_state = module.adagrad_docs if own else torch.zeros(docs.shape[0], device=docs.device)
        self.params = [(module.layer.get_parameter(n), getattr(module, "adagrad_layer_" + n.replace(".", "_")))
                       for n in module.layer.learnable()]

    def __call__(self, batch: Batch, alpha: float) -> Tensor:
        module = self.module
        rows = module.gather(batch, self.docs)
        names = ["docs", *(("words", "pool", "outputs") if self.update_shared else ())]
        names = [n for n in names if n in rows]
        leaves = [rows[n].requires_grad_() for n in names]
        params = [p for p, _ in self.params] if self.update_shared else []
        try:
            for param in params:
                param.requires_grad_(True)
            with torch.enable_grad():
                loss, _ = module.layer_loss(batch, rows)
                grads = torch.autograd.grad(loss, leaves + params, allow_unused=True)
        finally:
            for param in params:
                param.requires_grad_(False)
        grad = dict(zip(names, grads[:len(names)], strict=True))
        dim = self.docs.shape[1]
        doc_rows = torch.where(batch.doc_slots >= 0, batch.doc_slots, -1).reshape(-1)
        row_adagrad(self.docs, self.doc_state, doc_rows, grad["docs"].reshape(-1, dim), alpha)
        if not self.update_shared:
            return loss.detach()
        word_rows = [torch.where(batch.word_mask, batch.words, -1).reshape(-1)]
        word_grads = [grad["words"].reshape(-1, dim)]
        if "pool" in grad:
            pool_rows = torch.where(batch.pool_mask, batch.pool_words, -1).reshape(-1)
            if module.own_pool_values:  # the pooled words' table of their own
                row_adagrad(module.pool_vectors.data, module.adagrad_pool, pool_rows, grad["pool"].reshape(-1, dim),
                            alpha)
            else:
                word_rows.append(pool_rows)
                word_grads.append(grad["pool"].reshape(-1, dim))
        row_adagrad(module.word_vectors.data, module.adagrad_words, torch.cat(word_rows), torch.cat(word_grads),
                    alpha)
        out_rows = torch.where(batch.output_mask, batch.outputs, -1).reshape(-1)
        row_adagrad(module.output_vectors.data, module.adagrad_outputs, out_rows, grad["outputs"].reshape(-1, dim),
                    alpha)
        for (param, state), g in zip(self.params, grads[len(names):], strict=True):
            if g is not None:
                dense_adagrad(param.data, state, g, alpha * self.attention_alpha)
        return loss.detach()


def input_scale(module: Doc2VecModule, batch: Batch) -> Tensor:
    """Per-example factor turning the exact input gradient into gensim's update, ``(B,)``."""
    n = module.slot_mask(batch).sum(dim=1).to(module.word_vectors.dtype)
    if module.dm == 0 or module.concatenates:  # concat: gensim adds each slot's error to its vector as is
        return torch.ones_like(n)
    if module.context == "sum":
        return 1.0 / n
    return n


def apply_update(module: Doc2VecModule, batch: Batch, grads: Gradients, alpha: float, docs: Tensor,
                 update_shared: bool, attention_alpha: float = 1.0, cap: int = 32) -> None:
    """One SGD step: scatter-add every row's updates, capping rows repeated in the batch.

    Updates computed in one batch all start from the same point, so ``k`` updates of a row
    summed can overshoot where ``k`` sequential ones (gensim's) would not. A row (word,
    output, document vector or attention score) used ``k`` times in the batch therefore
    moves by the mean of its updates times ``min(k, cap)``: sums as in sequential SGD up to
    ``cap``, an average beyond.

    Parameters
    ----------
    module : Doc2VecModule
        Holds the word, output and attention tables.
    batch, grads : Batch, Gradients
        The examples and their exact gradients.
    alpha : float
        Learning rate.
    docs : Tensor
        The document matrix being trained.
    update_shared : bool
        Also update words, outputs and attention (False during inference).
    attention_alpha : float
        Multiplier of ``alpha`` for the attention scores.
    cap : int
        Most updates of one row that add up in a batch (``row_update_cap``).
    """
    n_doc = batch.doc_slots.shape[1]
    step = grads.slots * (-alpha * input_scale(module, batch))[:, None, None]  # (B, T+S, D)
    _scatter_rows(docs, batch.doc_slots, batch.doc_slots >= 0, step[:, :n_doc], cap)
    if not update_shared:
        return
    if batch.words.shape[1]:
        _scatter_rows(module.word_vectors.data, batch.words, batch.word_mask, step[:, n_doc:], cap)
    _scatter_rows(module.output_vectors.data, batch.outputs, batch.output_mask, grads.outputs * -alpha, cap)
    if grads.scores is not None:
        word_step = grads.scores * (-alpha * attention_alpha)  # (B, S)
        n_pos = module.position_scores.shape[0]
        _scatter_rows(module.word_scores.data.view(-1), batch.words * n_pos + batch.positions, batch.word_mask,
                      word_step, cap)
        _scatter_rows(module.position_scores.data, batch.positions, batch.word_mask, word_step, cap)


def _scatter_rows(table: Tensor, rows: Tensor, valid: Tensor, values: Tensor, cap: int) -> None:
    """``table[rows] += values`` over the valid entries, each row's sum scaled to at most ``cap`` updates."""
    rows = torch.where(valid, rows, -1).reshape(-1)  # padding forms its own group; its values are zero
    values = values.reshape(rows.shape[0], -1) if table.dim() > 1 else values.reshape(-1)
    _, inverse, counts = torch.unique(rows, return_inverse=True, return_counts=True)
    k = counts[inverse].to(values.dtype)
    factor = torch.where(k > cap, cap / k, torch.ones_like(k))
    values = values * (factor[:, None] if table.dim() > 1 else factor)
    # index_put_ with accumulate=True is deterministic on CPU and, in deterministic mode, on CUDA.
    table.index_put_((rows.clamp(min=0),), values, accumulate=True)
