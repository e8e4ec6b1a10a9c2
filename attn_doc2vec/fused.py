"""The CPU backend: one SGD step per batch fused into two Numba kernels.

:class:`FusedStep` performs exactly the step of the PyTorch reference
(:meth:`~attn_doc2vec.model.Doc2VecModule.gradients` followed by
:func:`~attn_doc2vec.training.apply_update`) on the same :class:`~attn_doc2vec.model.Batch`,
but without materializing ``(B, T+S, D)`` gathers: the tables are numpy views of
the module's tensors, updated in place.

Two passes, both parallel over the CPU cores and both deterministic:

1. per example (``prange`` over the batch): the combination weights, ``h``, the
   output scores ``z``, ``g = dL/dz``, ``dL/dh`` and, for attention, the
   gradients of the scores, all at the batch's starting point, into scratch arrays;
2. the scatter updates: thread ``t`` owns the rows ``row % n_threads == t`` of
   every table, scans all entries in batch order and applies only its own rows.

No atomics and no Hogwild races: every row receives its updates in the same
order whatever the number of threads, so a seed gives the same tables on 1 or 16
cores, equal to the reference up to float32 rounding.
"""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
import torch
from numba import njit, prange

from attn_doc2vec.model import Batch, Doc2VecModule

MEAN, SUM, ATTENTION, DBOW = 0, 1, 2, 3
MODES = {"mean": MEAN, "sum": SUM, "attention": ATTENTION}

# 'reassoc' lets LLVM vectorize the dot products over D (a strict left-to-right sum cannot be);
# it changes float32 rounding but not determinism, as the compiled code does not depend on the
# thread count. No 'nnan'/'ninf': a diverging run must still produce the non-finite loss the
# trainer reports.
FASTMATH = {"reassoc", "contract"}

# Numba's OpenMP layer spin-waits between parallel regions; on a machine whose cores are busy with
# anything else (PyTorch's own OpenMP pool building the next batch, other processes) a descheduled
# spinning thread stalls every barrier, measured 5-20x slower per batch. The workqueue layer sleeps
# instead. Only chosen when the user has not picked a layer, and only before Numba's first parallel
# launch in the process (later the choice is fixed).
if numba.config.THREADING_LAYER == "default" and "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
_LAUNCH = threading.Lock()  # the workqueue layer must not be entered by two threads at once


# The kernels index tables as table[row, d] and never take row views (table[row]): a view
# increments the parent array's reference count atomically, and with two threads doing so per
# row the counter's cache line bounces between the cores (measured 2-3x slower).


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _dot(x, i, y, j):
    """``x[i] . y[j]``."""
    acc = np.float32(0.0)
    for d in range(x.shape[1]):
        acc += x[i, d] * y[j, d]
    return acc


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _axpy(c, x, i, y, j):
    """``y[j] += c * x[i]``."""
    for d in range(x.shape[1]):
        y[j, d] += c * x[i, d]


@njit(fastmath=FASTMATH, cache=True)
def _example(b, doc_slots, words, positions, word_mask, outputs, output_mask, docs, word_vectors,
             output_vectors, word_scores, position_scores, mode, alpha, score_step, need_scores,
             h, gh, coef, gout, dscore):
    """Gradients of example ``b`` at the batch's starting point, into row ``b`` of the scratch arrays; its loss.

    ``coef[b]`` (T+S,) first holds the weights ``a``, at the end the input step ``-alpha * scale * a``;
    ``dscore[b]`` (S,) first holds the attention ``p``, then ``dL/da``, at the end the score step.
    """
    n_doc, n_ctx, n_out, dim = doc_slots.shape[1], words.shape[1], outputs.shape[1], h.shape[1]
    one, zero = np.float32(1.0), np.float32(0.0)
    nd = 0
    for t in range(n_doc):
        if doc_slots[b, t] >= 0:
            nd += 1
    m = 0
    for j in range(n_ctx):
        if word_mask[b, j]:
            m += 1
    n = np.float32(nd + m)
    # combination weights a (documents, then words), as Doc2VecModule.weights
    a_doc = one / n if mode == MEAN or mode == ATTENTION else one
    for t in range(n_doc):
        coef[b, t] = a_doc if doc_slots[b, t] >= 0 else zero
    if mode == ATTENTION:
        e_max = np.float32(-np.inf)
        for j in range(n_ctx):
            if word_mask[b, j]:
                pos = positions[b, j]
                dscore[b, j] = word_scores[words[b, j], pos] + position_scores[pos]
                e_max = max(e_max, dscore[b, j])
        total = zero
        for j in range(n_ctx):
            if word_mask[b, j]:
                dscore[b, j] = np.exp(dscore[b, j] - e_max)
                total += dscore[b, j]
            else:
                dscore[b, j] = zero
        share = np.float32(m) / n
        for j in range(n_ctx):
            if word_mask[b, j]:
                dscore[b, j] /= total
            coef[b, n_doc + j] = share * dscore[b, j]
    else:
        a_word = one / n if mode == MEAN else one
        for j in range(n_ctx):
            coef[b, n_doc + j] = a_word if word_mask[b, j] else zero
    # h = sum_s a_s x_s
    for d in range(dim):
        h[b, d] = zero
    for t in range(n_doc):
        if doc_slots[b, t] >= 0:
            _axpy(coef[b, t], docs, doc_slots[b, t], h, b)
    for j in range(n_ctx):
        if word_mask[b, j]:
            _axpy(coef[b, n_doc + j], word_vectors, words[b, j], h, b)
    # negative sampling: g = sigmoid(z) - label, dL/dh = sum_k g_k v_k
    for d in range(dim):
        gh[b, d] = zero
    loss = zero
    for k in range(n_out):
        if not output_mask[b, k]:
            gout[b, k] = zero
            continue
        row = outputs[b, k]
        z = _dot(h, b, output_vectors, row)
        s = z if k > 0 else -z  # softplus(s) is the loss term
        loss += max(s, zero) + np.log1p(np.exp(-abs(s)))
        g = one / (one + np.exp(-z)) - (one if k == 0 else zero)
        _axpy(g, output_vectors, row, gh, b)
        gout[b, k] = -alpha * g
    # gensim's input scaling (training.input_scale): mean and attention n, sum 1/n, dbow 1
    scale = one if mode == DBOW else (one / n if mode == SUM else n)
    if mode == ATTENTION and need_scores:
        # softmax backward scaled by m/n: de_j = a_j (ga_j - sum_i p_i ga_i), ga_j = dL/dh . x_j
        mean_ga = zero
        for j in range(n_ctx):
            if word_mask[b, j]:
                ga = _dot(gh, b, word_vectors, words[b, j])
                mean_ga += dscore[b, j] * ga
                dscore[b, j] = ga
        for j in range(n_ctx):
            if word_mask[b, j]:
                dscore[b, j] = score_step * coef[b, n_doc + j] * (dscore[b, j] - mean_ga)
            else:
                dscore[b, j] = zero
    c = -alpha * scale
    for s in range(n_doc + n_ctx):
        coef[b, s] *= c
    return loss


@njit(cache=True, inline="always")
def _owner(row, n_threads):
    # Fibonacci hashing, then Lemire's range reduction: no division, and the frequent words
    # (gensim's first rows) spread evenly over the threads.
    return (((row * 2654435769) & 0xFFFFFFFF) * n_threads) >> 32


@njit(cache=True, inline="always")
def _factor(counts, key, cap):
    """``min(1, cap / k)`` for one of the ``k`` updates of ``key``; the counter is cleared after the last one.

    ``counts`` holds ``k`` in its low 32 bits and the updates already applied in the high 32 bits.
    """
    c = counts[key]
    k = c & 0xFFFFFFFF
    done = (c >> 32) + 1
    counts[key] = 0 if done == k else c + (1 << 32)
    return np.float32(1.0) if k <= cap else np.float32(cap) / np.float32(k)


@njit(fastmath=FASTMATH, cache=True)
def _apply_owned(t, n_threads, cap, doc_slots, words, positions, word_mask, outputs, output_mask, docs,
                 word_vectors, output_vectors, word_scores, mode, update_shared, h, gh, coef, gout, dscore,
                 doc_count, word_count, out_count, score_count):
    """Add, in batch order, every update that falls on a row owned by thread ``t``.

    A row used ``k`` times in the batch gets each update scaled by ``min(1, cap / k)``, as
    :func:`~attn_doc2vec.training.apply_update` does: a first pass counts, a second applies.
    """
    n_batch, n_doc, n_ctx, n_out = doc_slots.shape[0], doc_slots.shape[1], words.shape[1], outputs.shape[1]
    n_pos = word_scores.shape[1]
    scores = update_shared and mode == ATTENTION
    for b in range(n_batch):
        for s in range(n_doc):
            row = doc_slots[b, s]
            if row >= 0 and _owner(row, n_threads) == t:
                doc_count[row] += 1
        if not update_shared:
            continue
        for j in range(n_ctx):
            row = words[b, j]
            if word_mask[b, j] and _owner(row, n_threads) == t:
                word_count[row] += 1
                if scores:
                    score_count[row * n_pos + positions[b, j]] += 1
        for k in range(n_out):
            row = outputs[b, k]
            if output_mask[b, k] and _owner(row, n_threads) == t:
                out_count[row] += 1
    for b in range(n_batch):
        for s in range(n_doc):
            row = doc_slots[b, s]
            if row >= 0 and _owner(row, n_threads) == t:
                _axpy(coef[b, s] * _factor(doc_count, row, cap), gh, b, docs, row)
        if not update_shared:
            continue
        for j in range(n_ctx):
            row = words[b, j]
            if word_mask[b, j] and _owner(row, n_threads) == t:
                _axpy(coef[b, n_doc + j] * _factor(word_count, row, cap), gh, b, word_vectors, row)
                if scores:
                    key = row * n_pos + positions[b, j]
                    word_scores[row, positions[b, j]] += dscore[b, j] * _factor(score_count, key, cap)
        for k in range(n_out):
            row = outputs[b, k]
            if output_mask[b, k] and _owner(row, n_threads) == t:
                _axpy(gout[b, k] * _factor(out_count, row, cap), h, b, output_vectors, row)


@njit(cache=True)
def _apply_positions(positions, word_mask, position_scores, dscore, cap):
    """The few position scores, serially: each used ``k`` times moves by ``min(1, cap / k)`` of its sum."""
    k = np.zeros(position_scores.shape[0], np.int64)
    for b in range(positions.shape[0]):
        for j in range(positions.shape[1]):
            if word_mask[b, j]:
                k[positions[b, j]] += 1
    for b in range(positions.shape[0]):
        for j in range(positions.shape[1]):
            if word_mask[b, j]:
                pos = positions[b, j]
                factor = np.float32(1.0) if k[pos] <= cap else np.float32(cap) / np.float32(k[pos])
                position_scores[pos] += dscore[b, j] * factor


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _step(doc_slots, words, positions, word_mask, outputs, output_mask, docs, word_vectors, output_vectors,
          word_scores, position_scores, mode, alpha, score_step, update_shared, n_threads, cap, h, gh, coef, gout,
          dscore, losses, doc_count, word_count, out_count, score_count):
    n_batch = doc_slots.shape[0]
    need_scores = update_shared and mode == ATTENTION
    for b in prange(n_batch):
        losses[b] = _example(b, doc_slots, words, positions, word_mask, outputs, output_mask, docs, word_vectors,
                             output_vectors, word_scores, position_scores, mode, alpha, score_step, need_scores,
                             h, gh, coef, gout, dscore)
    for t in prange(n_threads):
        _apply_owned(t, n_threads, cap, doc_slots, words, positions, word_mask, outputs, output_mask, docs,
                     word_vectors, output_vectors, word_scores, mode, update_shared, h, gh, coef, gout, dscore,
                     doc_count, word_count, out_count, score_count)
    if need_scores:
        _apply_positions(positions, word_mask, position_scores, dscore, cap)
    total = 0.0
    for b in range(n_batch):
        total += losses[b]
    return total


class FusedStep:
    """One SGD step of the reference math, run by the Numba kernels on CPU tables.

    Parameters
    ----------
    module : Doc2VecModule
        The network, on the CPU in float32; its tables are updated in place.
    docs : Tensor
        The document matrix being trained (the module's own, or a fresh one for inference).
    update_shared : bool
        Also update words, outputs and attention (False during inference).
    attention_alpha : float
        Multiplier of ``alpha`` for the attention scores.
    cap : int
        Most updates of one row that add up in a batch (``row_update_cap``).
    threads : int, optional
        Numba threads (default: all that Numba was started with).

    Raises
    ------
    ValueError
        If a table is not a contiguous float32 CPU tensor.
    """

    def __init__(self, module: Doc2VecModule, docs: torch.Tensor, update_shared: bool,
                 attention_alpha: float = 1.0, cap: int = 8, threads: int | None = None) -> None:
        self.mode = DBOW if module.dm == 0 else MODES[module.context]
        self.update_shared = update_shared
        self.attention_alpha = attention_alpha
        self.cap = cap
        self.threads = min(threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)
        self.docs = _table(docs, "docs")
        self.word_vectors = _table(module.word_vectors.data, "word_vectors")
        self.output_vectors = _table(module.output_vectors.data, "output_vectors")
        n_words = self.word_vectors.shape[0]
        if module.uses_attention:
            self.word_scores = _table(module.word_scores.data, "word_scores")
            self.position_scores = _table(module.position_scores.data, "position_scores")
        else:  # placeholders keep one compiled signature for every mode
            self.word_scores = np.zeros((1, 1), dtype=np.float32)
            self.position_scores = np.zeros(1, dtype=np.float32)
        # Per-row update counters of each table, zero between steps (the kernel clears what it uses).
        shared = n_words if update_shared else 0
        self.counts = (np.zeros(self.docs.shape[0], np.int64), np.zeros(shared, np.int64),
                       np.zeros(shared, np.int64),
                       np.zeros(self.word_scores.size if update_shared and module.uses_attention else 0, np.int64))
        self._scratch: tuple[np.ndarray, ...] | None = None

    def __call__(self, batch: Batch, alpha: float) -> float:
        """Apply one step with learning rate ``alpha``; return the batch's summed loss (as ``Gradients.loss``)."""
        arrays = [np.ascontiguousarray(x.numpy()) for x in (batch.doc_slots, batch.words, batch.positions,
                                                              batch.word_mask, batch.outputs, batch.output_mask)]
        scratch = self._scratch_for(*arrays[0].shape, arrays[1].shape[1], arrays[4].shape[1])
        with _LAUNCH:
            previous = numba.get_num_threads()
            numba.set_num_threads(self.threads)
            try:
                return _step(*arrays, self.docs, self.word_vectors, self.output_vectors, self.word_scores,
                             self.position_scores, self.mode, np.float32(alpha),
                             np.float32(-alpha * self.attention_alpha), self.update_shared, self.threads, self.cap,
                             *scratch, *self.counts)
            finally:
                numba.set_num_threads(previous)

    def _scratch_for(self, n_batch: int, n_doc: int, n_ctx: int, n_out: int) -> tuple[np.ndarray, ...]:
        # Allocated once and reused: a trainer's batches all have the same shape but the last.
        dim = self.docs.shape[1]
        if self._scratch is None or self._scratch[0].shape[0] < n_batch or \
                self._scratch[2].shape[1] != n_doc + n_ctx or self._scratch[3].shape[1] != n_out:
            rows = max(n_batch, 1)
            self._scratch = (
                np.empty((rows, dim), np.float32),  # h       (B, D)
                np.empty((rows, dim), np.float32),  # dL/dh   (B, D)
                np.empty((rows, n_doc + n_ctx), np.float32),  # input step coefficient (B, T+S)
                np.empty((rows, n_out), np.float32),  # output step coefficient (B, K)
                np.empty((rows, n_ctx), np.float32),  # score step (B, S)
                np.empty(rows, np.float32),  # loss (B,)
            )
        return tuple(x[:n_batch] for x in self._scratch)


def _table(tensor: torch.Tensor, name: str) -> np.ndarray:
    if tensor.device.type != "cpu" or tensor.dtype != torch.float32 or not tensor.is_contiguous():
        raise ValueError(
            f"backend='numba' needs contiguous float32 tables on the CPU, but {name} is {tensor.dtype} on "
            f"{tensor.device}; use backend='torch' (or 'auto') for this device."
        )
    return tensor.numpy()
