"""One model trained by several processes on ``torch.distributed`` (``torchrun``): shards and synchronisation.

Launch ``torchrun --nproc-per-node N scripts/train.py ...`` (add ``--nnodes``/``--rdzv-endpoint`` for several
machines), or initialise a process group yourself before calling ``Doc2Vec.build_vocab`` and ``train``: the
facade notices the group and trains one model with it. gloo serves CPUs, NCCL GPUs
(:func:`init_from_environment` picks).

How the work is split
    * **Vocabulary**: rank 0 scans the corpus and broadcasts the vocabulary; every rank builds the same
      initial tables from the same seed, and rank 0's tables are broadcast once more at the start of each
      ``train`` call, so that all ranks start from one model.
    * **Documents**: each rank trains one contiguous range of the documents, the ranges balanced by tokens
      (:func:`shard_range`), so that a corpus store shards without a copy. At the end of every epoch the
      document rows (free vectors and their Adagrad state) are exchanged: a row that one rank's documents tag
      (nearly all of them) is sent by that rank to the others (a ``broadcast`` of its range of rows, in place);
      only rows that several ranks' documents share (a label tag on documents of several shards) keep a copy
      of their value at the epoch's start and are added up as the shared tables are. No rank keeps a second
      copy of the document table, which may be larger than memory (``dv_mapfile``).
    * **Shared tables** (word vectors, output vectors, attention scores and their Adagrad states): every rank
      trains its own copy, and every ``sync_every`` of its batches (config) all ranks add up what they changed
      since the last synchronisation, ``x ← x₀ + Σ_r (x_r − x₀)``, one ``all_reduce`` per table
      (:class:`TableSync`). Each rank runs the same number of synchronisations per epoch, spread evenly over
      its own batches, whatever the sizes of the shards.

Why a sum of changes rather than an average of the copies (local SGD's rule, and the periodic model
averaging of distributed word2vec implementations): an average divides the step of every row that several
ranks moved by their number, so that ``N`` processes would train like one process at ``1/N`` of the learning
rate on frequent words. A sum applies every example's update once, as threads sharing one table do
(Hogwild; gensim's workers), only later: between two synchronisations a rank does not see the others'
changes. Row-wise Adagrad's squared-gradient sums add up exactly. Exchanging whole tables is simple; its
cost, ``2 (N − 1) / N`` times the tables' size per synchronisation, is measured in docs/benchmarks.md ("Many
processes": about a third of each rank's time with 2 processes on one 2-core machine, a 37,586-word
vocabulary).
Exchanging only the rows that changed was tried there and was slower: about half the rows change between two
synchronisations, and finding and gathering them cost more than the smaller exchange saved.
"""

from __future__ import annotations

import logging
import math
import os
import time

import numpy as np
import torch
from torch import Tensor

from attn_doc2vec.corpus import EncodedCorpus

logger = logging.getLogger(__name__)

# Tensors of Doc2VecModule that belong to documents: a rank changes only the rows of its own documents.
DOCUMENT_TENSORS = ("doc_vectors", "adagrad_docs", "pooled_docs")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, ``(0, 1)`` without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_root() -> bool:
    """Whether this process writes files and prints: rank 0, or a process on its own."""
    return world()[0] == 0


def init_from_environment(device: str = "auto") -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    gloo when the processes train on CPUs, NCCL when they train on CUDA devices (each rank then uses
    ``cuda:LOCAL_RANK``). Nothing happens without ``torchrun``'s variables or when a group already exists.

    Parameters
    ----------
    device : str
        The model's ``device`` setting (``"auto"``: CUDA when available).

    Returns
    -------
    bool
        Whether a group of more than one process is initialised.
    """
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return world()[1] > 1
    if not dist.is_initialized():
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        logger.info("process group: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(),
                    dist.get_backend())
    return world()[1] > 1


def shard_range(offsets: np.ndarray, rank: int, world_size: int) -> tuple[int, int]:
    """The documents ``[first, last)`` that ``rank`` trains: contiguous ranges with about equal tokens.

    Parameters
    ----------
    offsets : numpy.ndarray
        ``(n_docs + 1,)`` document starts in the token array.
    rank, world_size : int
        This process and the number of processes.
    """
    total = int(offsets[-1])
    n_docs = len(offsets) - 1
    cut = [0, *(int(np.searchsorted(offsets, total * r / world_size, side="left")) for r in range(1, world_size)),
           n_docs]
    cut = np.minimum(np.maximum.accumulate(cut), n_docs)
    return int(cut[rank]), int(cut[rank + 1])


def shard(encoded: EncodedCorpus, rank: int, world_size: int) -> EncodedCorpus:
    """The part of ``encoded`` that ``rank`` trains (views of its arrays, no copy of the tokens).

    Its ``raw_words`` is the corpus's raw words in proportion to the shard's tokens.
    """
    first, last = shard_range(encoded.offsets, rank, world_size)
    begin, end = int(encoded.offsets[first]), int(encoded.offsets[last])
    total = int(encoded.offsets[-1])
    raw = round(encoded.raw_words * (end - begin) / total) if total else 0
    return EncodedCorpus(tokens=encoded.tokens[begin:end], offsets=encoded.offsets[first:last + 1] - begin,
                         tags=encoded.tags[first:last], raw_words=raw)


def rank_seed(seed: int, rank: int, epochs_trained: int) -> int:
    """The seed of a rank's random draws in a ``train`` call: same seed, same number of processes, same model."""
    return (seed * 1_000_003 + rank * 7_919 + epochs_trained * 104_729) % 2**63


class TableSync:
    """Adds up the ranks' changes of the shared tables every ``sync_every`` batches, and exchanges the document
    rows once per epoch (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        The model; its state tensors are updated in place (the kernels keep views of them).
    sync_every : int
        Batches between two synchronisations of the shared tables.
    tags : numpy.ndarray
        ``(n, T)`` the document-vector rows of this rank's documents (its shard's ``tags``, -1 padded).
    """

    # rows sent at once by one broadcast when a rank's rows are scattered (bounds the buffer)
    CHUNK_ROWS = 65_536

    def __init__(self, module: torch.nn.Module, sync_every: int, tags: np.ndarray) -> None:
        self.sync_every = sync_every
        state = module.state_dict()
        floating = {k: v for k, v in state.items() if v.is_floating_point()}
        self.shared = [v for k, v in floating.items() if k not in DOCUMENT_TENSORS]
        # pooled_docs is recomputed from the word vectors after each epoch (Trainer), not trained
        self.documents = [floating[k] for k in ("doc_vectors", "adagrad_docs") if k in floating]
        for tensor in state.values():  # everything, integer state included, starts as rank 0's
            torch.distributed.broadcast(tensor, src=0)
        self.shared_base = [t.clone() for t in self.shared]
        n_rows = self.documents[0].shape[0] if self.documents else 0
        self.senders, self.common_rows = self._document_rows(tags, n_rows)
        self.document_base = [t[self.common_rows] for t in self.documents]  # the shared rows' values only
        self.rounds = self.done = self.n_batches = 0
        self.syncs = 0
        self.seconds = 0.0

    def _document_rows(self, tags: np.ndarray, n_rows: int) -> tuple[list[slice | Tensor], Tensor]:
        """Who sends which document rows: for each rank, the rows that only its documents tag (a slice when
        they are contiguous, as with one tag per document, else their indices), and the rows that several
        ranks' documents tag."""
        device = self._device()
        rank, world_size = world()
        rows = np.unique(np.asarray(tags)[np.asarray(tags) >= 0])
        # one all_reduce tells each row how many ranks tag it (high bits) and, when one does, which (low bits)
        marks = torch.zeros(n_rows, dtype=torch.int64, device=device)
        marks[torch.as_tensor(rows, dtype=torch.int64, device=device)] = (1 << 32) + rank
        torch.distributed.all_reduce(marks)
        count, owner = marks >> 32, marks & 0xFFFFFFFF
        common = torch.nonzero(count > 1).flatten()
        senders: list[slice | Tensor] = []
        for r in range(world_size):
            own = torch.nonzero((count == 1) & (owner == r)).flatten()
            if own.numel() and int(own[-1] - own[0]) + 1 == own.numel():
                senders.append(slice(int(own[0]), int(own[-1]) + 1))
            else:
                senders.append(own)
        del marks, count, owner
        return senders, common

    def begin_epoch(self, n_batches: int) -> None:
        """Agree on this epoch's number of synchronisations: one per ``sync_every`` batches of the busiest rank."""
        most = torch.tensor([n_batches], dtype=torch.int64, device=self._device())
        torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX)
        self.rounds = max(1, math.ceil(int(most) / self.sync_every))
        self.n_batches, self.done = n_batches, 0

    def after_batch(self, index: int) -> None:
        """Run the synchronisations due after batch ``index`` (0-based) of this rank's epoch."""
        due = (index + 1) * self.rounds // self.n_batches
        while self.done < due:
            self._add_up(self.shared, self.shared_base)
            self.done += 1

    def end_epoch(self) -> None:
        """The synchronisations still due (a rank with fewer batches), then the document rows."""
        while self.done < self.rounds:
            self._add_up(self.shared, self.shared_base)
            self.done += 1
        self._exchange_documents()

    def sum_(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over the ranks, in place."""
        torch.distributed.all_reduce(tensor)
        return tensor

    def total(self, *values: float) -> list[float]:
        """Numbers summed over the ranks (losses, example counts)."""
        out = torch.tensor(values, dtype=torch.float64, device=self._device())
        torch.distributed.all_reduce(out)
        return out.tolist()

    def _add_up(self, tensors: list[Tensor], bases: list[Tensor]) -> None:
        t0 = time.perf_counter()
        for tensor, base in zip(tensors, bases, strict=True):
            delta = tensor - base
            torch.distributed.all_reduce(delta)
            base.add_(delta)
            tensor.copy_(base)
        self.syncs += 1
        self.seconds += time.perf_counter() - t0

    def _exchange_documents(self) -> None:
        """Every rank's document rows to every rank: each rank sends the rows that only it trained, the rows
        that several trained add up their changes."""
        t0 = time.perf_counter()
        rank = world()[0]
        for tensor, base in zip(self.documents, self.document_base, strict=True):
            for src, rows in enumerate(self.senders):
                if isinstance(rows, slice):  # contiguous rows: sent and received in place
                    torch.distributed.broadcast(tensor[rows], src=src)
                    continue
                for first in range(0, rows.numel(), self.CHUNK_ROWS):
                    part = rows[first:first + self.CHUNK_ROWS]
                    buffer = (tensor[part] if src == rank else
                              torch.empty((part.numel(), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device))
                    torch.distributed.broadcast(buffer, src=src)
                    if src != rank:
                        tensor[part] = buffer
            if self.common_rows.numel():
                delta = tensor[self.common_rows] - base
                torch.distributed.all_reduce(delta)
                base.add_(delta)
                tensor[self.common_rows] = base
        self.syncs += 1
        self.seconds += time.perf_counter() - t0

    def _device(self) -> torch.device:
        return self.shared[0].device if self.shared else torch.device("cpu")
