"""The CPU backend: the reference SGD step and batch cutting, fused into Numba kernels.

:class:`FusedStep` performs exactly the step of the PyTorch reference
(:meth:`~attn_doc2vec.model.Doc2VecModule.gradients` followed by
:func:`~attn_doc2vec.training.apply_update`, ``row_update_cap`` included) on the same
:class:`~attn_doc2vec.model.Batch`, without materializing ``(B, T+S, D)`` gathers: the
tables are numpy views of the module's tensors, updated in place. Two passes per batch:

1. per example (``prange`` over the batch): the combination weights, ``h``, the output
   scores, ``g = dL/dz``, ``dL/dh`` and, for attention, the gradients of the scores, all
   at the batch's starting point, into scratch arrays;
2. the scatter updates: thread ``t`` owns the rows whose hash falls to it, lists its
   entries in batch order, counts each row's uses (for the cap), then applies them.

No atomics and no Hogwild races: every row receives its updates in batch order whatever
the number of threads, so a seed gives the same tables on 1 or 16 cores, equal to the
reference up to float32 rounding. One thread runs a serial copy without parallel regions.

Batches for it are cut by :class:`~attn_doc2vec.fused_batching.FusedSampler`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from attn_doc2vec.config import Doc2VecConfig
from attn_doc2vec.model import Batch, Doc2VecModule

logger = logging.getLogger(__name__)

MEAN, SUM, ATTENTION, DBOW = 0, 1, 2, 3
MODES = {"mean": MEAN, "sum": SUM, "wordpos": ATTENTION}

# 'reassoc' lets LLVM vectorize the dot products over D (a strict left-to-right sum cannot be);
# it changes float32 rounding but not determinism, as the compiled code does not depend on the
# thread count. No 'nnan'/'ninf': a diverging run must still produce the non-finite loss the
# trainer reports.
FASTMATH = {"reassoc", "contract"}


# Numba's OpenMP layer spin-waits between parallel regions, and a spinning thread that the OS
# deschedules stalls every barrier: on a busy 2-core machine (PyTorch's own pool, other
# processes) a launch took ~8 ms instead of ~2 us, and even with OMP_WAIT_POLICY=PASSIVE some
# runs did. The workqueue layer sleeps instead and costs a steady ~40 us per launch, so it is
# chosen unless the user picked a layer (NUMBA_THREADING_LAYER), and only before Numba's first
# parallel launch in the process (later the choice is fixed). TBB would be better still, but its
# pip wheel does not load here.
if numba.config.THREADING_LAYER == "default" and "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
_LAUNCH = threading.Lock()  # the workqueue layer must not be entered by two threads at once, nor our tables


@contextmanager
def parallel_launch(threads: int | None = None) -> Iterator[None]:
    """Hold the process-wide lock around a ``parallel=True`` kernel, on ``threads`` Numba threads.

    Numba's workqueue layer aborts the whole process (SIGABRT) when two Python threads enter
    parallel regions at once, so every parallel kernel of the package runs inside this lock:
    a web server's thread pool or a notebook may train and infer from several threads.
    """
    with _LAUNCH:
        previous = numba.get_num_threads()
        if threads is not None:
            numba.set_num_threads(threads)
        try:
            yield
        finally:
            numba.set_num_threads(previous)


# Numba compiles a kernel at its first call in a process unless its on-disk cache (cache=True: beside the
# sources, or in Numba's user cache directory when the install is read-only) already holds it.
COMPILE_NOTICE_AFTER = 2.0  # seconds: a first call still running then is compiling
_called: set[Callable] = set()
_announced = threading.Event()
_first_call_seconds = [0.0]


def _announce_compilation() -> None:
    if not _announced.is_set():
        _announced.set()
        logger.warning("compiling attn_doc2vec's CPU kernels (Numba), once per install: they are cached on disk "
                       "for later runs, and the time is left out of the words/s figures")


def call_kernel(kernel: Callable, *args):
    """``kernel(*args)``; the first call of each kernel in the process is timed (:func:`first_call_seconds`)
    and, when it takes over ``COMPILE_NOTICE_AFTER`` seconds (compiling), the user is told once."""
    if kernel in _called:
        return kernel(*args)
    timer = threading.Timer(COMPILE_NOTICE_AFTER, _announce_compilation)
    timer.daemon = True
    t0 = time.perf_counter()
    timer.start()
    try:
        return kernel(*args)
    finally:
        timer.cancel()
        _first_call_seconds[0] += time.perf_counter() - t0
        _called.add(kernel)


def first_call_seconds() -> float:
    """Seconds spent so far in this process in kernels' first calls (compiling or loading them)."""
    return _first_call_seconds[0]


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


@intrinsic
def _prefetch(typingctx, table, row, col):
    """Ask the CPU to start loading ``table[row, col]`` into the cache (``llvm.prefetch``), and move on."""
    sig = types.void(table, row, col)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], args[2]])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch." + ptr.type.intrinsic_name)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])  # read, keep, data
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _prefetch1(typingctx, array, index):
    """:func:`_prefetch` for ``array[index]`` of a 1-d array."""
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch." + ptr.type.intrinsic_name)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def _prefetch_row(table, row):
    for col in range(0, table.shape[1], 16):  # one 64-byte line per 16 floats
        _prefetch(table, row, col)


# Rows are random, so every example waits for ~13 rows from memory; asking for the rows of the
# example PREFETCH ahead while computing this one hides most of that latency (measured 2.5x
# faster random row reads).
PREFETCH = 2  # examples ahead, while computing gradients
AHEAD = 8  # rows ahead, while applying updates (a row's update is short)


@njit(cache=True, inline="always")
def _prefetch_example(b, doc_slots, words, word_mask, outputs, output_mask, docs, word_vectors, output_vectors,
                      word_scores, mode):
    for t in range(doc_slots.shape[1]):
        if doc_slots[b, t] >= 0:
            _prefetch_row(docs, doc_slots[b, t])
    for j in range(words.shape[1]):
        if word_mask[b, j]:
            _prefetch_row(word_vectors, words[b, j])
            if mode == ATTENTION:
                _prefetch(word_scores, words[b, j], 0)
    for k in range(outputs.shape[1]):
        if output_mask[b, k]:
            _prefetch_row(output_vectors, outputs[b, k])


@njit(fastmath=FASTMATH, cache=True)
def _example(b, doc_slots, words, positions, word_mask, outputs, output_mask, labels, docs, word_vectors,
             output_vectors, word_scores, position_scores, mode, doc_share, alpha, score_step, need_scores,
             h, gh, coef, gout, dscore):
    """Gradients of example ``b`` at the batch's starting point, into row ``b`` of the scratch arrays; its loss.

    ``coef[b]`` (T+S,) first holds the weights ``a``, at the end the input step ``-alpha * scale * a``;
    ``dscore[b]`` (S,) first holds the attention ``p``, then ``dL/da``, at the end the score step.
    """
    n_doc, n_ctx, n_out, dim = doc_slots.shape[1], words.shape[1], outputs.shape[1], h.shape[1]
    one, zero = np.float32(1.0), np.float32(0.0)
    if b + PREFETCH < doc_slots.shape[0]:
        _prefetch_example(b + PREFETCH, doc_slots, words, word_mask, outputs, output_mask, docs, word_vectors,
                          output_vectors, word_scores, mode)
    nd = 0
    for t in range(n_doc):
        if doc_slots[b, t] >= 0:
            nd += 1
    m = 0
    for j in range(n_ctx):
        if word_mask[b, j]:
            m += 1
    n = np.float32(nd + m)
    # combination weights a (documents, then words), as Doc2VecModule.weights: the documents share
    # doc_total (doc_share, or their count's share when doc_share < 0 stands for None), the words the rest
    if mode == DBOW or mode == SUM:
        doc_total, a_doc = one, one
    else:
        if doc_share < zero:
            doc_total = np.float32(nd) / n
        else:
            doc_total = doc_share if m > 0 else one
        a_doc = doc_total / np.float32(max(nd, 1))
    word_total = one - doc_total
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
        for j in range(n_ctx):
            if word_mask[b, j]:
                dscore[b, j] /= total
            coef[b, n_doc + j] = dscore[b, j] * word_total
    else:
        a_word = word_total / np.float32(max(m, 1)) if mode == MEAN else one
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
    # negative sampling (and hierarchical softmax's path, labelled 1 - code): g = sigmoid(z) - label,
    # dL/dh = sum_k g_k v_k
    for d in range(dim):
        gh[b, d] = zero
    # loss term softplus(s), s = -z for the target and z for negatives: max(s, 0) + log(1 + exp(-|z|)),
    # with the logs of all K terms taken at once as the log of a product (one exp per output, one log)
    loss, product = zero, one
    for k in range(n_out):
        if not output_mask[b, k]:
            gout[b, k] = zero
            continue
        row = outputs[b, k]
        z = _dot(h, b, output_vectors, row)
        t = np.exp(-abs(z))
        sigmoid = one / (one + t) if z >= zero else t / (one + t)
        y = labels[b, k]
        loss += max(-z if y > np.float32(0.5) else z, zero)
        product *= one + t
        if product > np.float32(1e30):  # only with ~100 negatives
            loss += np.log(product)
            product = one
        g = sigmoid - y
        _axpy(g, output_vectors, row, gh, b)
        gout[b, k] = -alpha * g
    loss += np.log(product)
    # gensim's input scaling (training.input_scale): mean and attention n, sum 1/n, dbow 1
    scale = one if mode == DBOW else (one / n if mode == SUM else n)
    if mode == ATTENTION and need_scores:
        # softmax backward, scaled by the words' share: de_j = a_j (ga_j - sum_i p_i ga_i), ga_j = dL/dh . x_j
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
def _factor(counts, t, key, cap):
    """``min(1, cap / k)`` for one of the ``k`` updates of ``key``; the counter is cleared after the last one.

    ``counts[t]`` (thread ``t``'s own row: no cache line is written by two threads) holds ``k`` in
    its low 32 bits and the updates already applied in the high 32 bits.
    """
    c = counts[t, key]
    k = c & 0xFFFFFFFF
    done = (c >> 32) + 1
    counts[t, key] = 0 if done == k else c + (1 << 32)
    return np.float32(1.0) if k <= cap else np.float32(cap) / np.float32(k)


@njit(cache=True, inline="always")
def _collect(t, n_threads, rows, valid, entries):
    """The entries ``(b << 16) | slot`` of ``rows`` (B, n) that are valid and owned by thread ``t``, in batch order.

    Appends without branching on ownership (a coin flip per entry the CPU cannot predict); returns the count.
    """
    count = 0
    for b in range(rows.shape[0]):
        for slot in range(rows.shape[1]):
            entries[count] = (b << 16) | slot
            count += valid[b, slot] & (_owner(rows[b, slot], n_threads) == t)
    return count


@njit(fastmath=FASTMATH, cache=True)
def _apply_owned(t, n_threads, cap, doc_slots, words, positions, word_mask, outputs, output_mask, docs,
                 word_vectors, output_vectors, word_scores, mode, update_shared, h, gh, coef, gout, dscore,
                 doc_count, word_count, out_count, score_count, doc_entries, word_entries, out_entries):
    """Add, in batch order, every update that falls on a row owned by thread ``t``.

    A row used ``k`` times in the batch gets each update scaled by ``min(1, cap / k)``, as
    :func:`~attn_doc2vec.training.apply_update` does: the thread lists its entries, counts, applies.
    """
    n_doc = doc_slots.shape[1]
    n_pos = word_scores.shape[1]
    scores = update_shared and mode == ATTENTION
    doc_list, word_list, out_list = doc_entries[t], word_entries[t], out_entries[t]
    n_docs = _collect(t, n_threads, doc_slots, doc_slots >= 0, doc_list)
    n_words = _collect(t, n_threads, words, word_mask, word_list) if update_shared else 0
    n_outs = _collect(t, n_threads, outputs, output_mask, out_list) if update_shared else 0
    for i in range(n_docs):
        doc_count[t, doc_slots[doc_list[i] >> 16, doc_list[i] & 0xFFFF]] += 1
    for i in range(n_words):
        b, j = word_list[i] >> 16, word_list[i] & 0xFFFF
        word_count[t, words[b, j]] += 1
        if scores:
            score_count[t, words[b, j] * n_pos + positions[b, j]] += 1
    for i in range(n_outs):
        out_count[t, outputs[out_list[i] >> 16, out_list[i] & 0xFFFF]] += 1
    for i in range(n_docs):
        if i + AHEAD < n_docs:
            _prefetch_row(docs, doc_slots[doc_list[i + AHEAD] >> 16, doc_list[i + AHEAD] & 0xFFFF])
        b, s = doc_list[i] >> 16, doc_list[i] & 0xFFFF
        row = doc_slots[b, s]
        _axpy(coef[b, s] * _factor(doc_count, t, row, cap), gh, b, docs, row)
    for i in range(n_words):
        if i + AHEAD < n_words:
            _prefetch_row(word_vectors, words[word_list[i + AHEAD] >> 16, word_list[i + AHEAD] & 0xFFFF])
        b, j = word_list[i] >> 16, word_list[i] & 0xFFFF
        row = words[b, j]
        _axpy(coef[b, n_doc + j] * _factor(word_count, t, row, cap), gh, b, word_vectors, row)
        if scores:
            key = row * n_pos + positions[b, j]
            word_scores[row, positions[b, j]] += dscore[b, j] * _factor(score_count, t, key, cap)
    for i in range(n_outs):
        if i + AHEAD < n_outs:
            _prefetch_row(output_vectors, outputs[out_list[i + AHEAD] >> 16, out_list[i + AHEAD] & 0xFFFF])
        b, k = out_list[i] >> 16, out_list[i] & 0xFFFF
        row = outputs[b, k]
        _axpy(gout[b, k] * _factor(out_count, t, row, cap), h, b, output_vectors, row)


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


@njit(cache=True)
def _finish(positions, word_mask, position_scores, dscore, cap, need_scores, losses):
    if need_scores:
        _apply_positions(positions, word_mask, position_scores, dscore, cap)
    total = 0.0
    for b in range(losses.shape[0]):
        total += losses[b]
    return total


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _step(doc_slots, words, positions, word_mask, outputs, output_mask, labels, docs, word_vectors, output_vectors,
          word_scores, position_scores, mode, doc_share, alpha, score_step, update_shared, n_threads, cap, h, gh,
          coef, gout, dscore, losses, doc_count, word_count, out_count, score_count, doc_entries, word_entries,
          out_entries):
    need_scores = update_shared and mode == ATTENTION
    for b in prange(doc_slots.shape[0]):
        losses[b] = _example(b, doc_slots, words, positions, word_mask, outputs, output_mask, labels, docs,
                             word_vectors, output_vectors, word_scores, position_scores, mode, doc_share, alpha,
                             score_step, need_scores, h, gh, coef, gout, dscore)
    for t in prange(n_threads):
        _apply_owned(t, n_threads, cap, doc_slots, words, positions, word_mask, outputs, output_mask, docs,
                     word_vectors, output_vectors, word_scores, mode, update_shared, h, gh, coef, gout, dscore,
                     doc_count, word_count, out_count, score_count, doc_entries, word_entries, out_entries)
    return _finish(positions, word_mask, position_scores, dscore, cap, need_scores, losses)


@njit(fastmath=FASTMATH, cache=True)
def _step_serial(doc_slots, words, positions, word_mask, outputs, output_mask, labels, docs, word_vectors,
                 output_vectors, word_scores, position_scores, mode, doc_share, alpha, score_step, update_shared,
                 n_threads, cap, h, gh, coef, gout, dscore, losses, doc_count, word_count, out_count, score_count,
                 doc_entries, word_entries, out_entries):
    """:func:`_step` on one thread without parallel regions (Numba's workqueue layer costs ~40 us a launch)."""
    need_scores = update_shared and mode == ATTENTION
    for b in range(doc_slots.shape[0]):
        losses[b] = _example(b, doc_slots, words, positions, word_mask, outputs, output_mask, labels, docs,
                             word_vectors, output_vectors, word_scores, position_scores, mode, doc_share, alpha,
                             score_step, need_scores, h, gh, coef, gout, dscore)
    _apply_owned(0, 1, cap, doc_slots, words, positions, word_mask, outputs, output_mask, docs, word_vectors,
                 output_vectors, word_scores, mode, update_shared, h, gh, coef, gout, dscore, doc_count, word_count,
                 out_count, score_count, doc_entries, word_entries, out_entries)
    return _finish(positions, word_mask, position_scores, dscore, cap, need_scores, losses)


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
                 attention_alpha: float = 1.0, cap: int = Doc2VecConfig.row_update_cap,
                 threads: int | None = None) -> None:
        self.mode = DBOW if module.dm == 0 else MODES[module.context]
        doc_share = getattr(module, "doc_share", None)
        self.doc_share = np.float32(-1.0 if doc_share is None else doc_share)
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
        outputs = self.output_vectors.shape[0] if update_shared else 0  # hs=1: syn1neg and syn1
        scores = self.word_scores.size if update_shared and module.uses_attention else 0
        self.counts = tuple(np.zeros((self.threads, size), np.int64)
                            for size in (self.docs.shape[0], shared, outputs, scores))
        self._scratch: tuple[np.ndarray, ...] | None = None

    def __call__(self, batch: Batch, alpha: float) -> float:
        """Apply one step with learning rate ``alpha``; return the batch's summed loss (as ``Gradients.loss``)."""
        arrays = [np.ascontiguousarray(x.numpy()) for x in (batch.doc_slots, batch.words, batch.positions,
                                                              batch.word_mask, batch.outputs, batch.output_mask)]
        arrays.append(np.ascontiguousarray(batch.labels().numpy(), dtype=np.float32))
        scratch = self._scratch_for(*arrays[0].shape, arrays[1].shape[1], arrays[4].shape[1])
        with parallel_launch(self.threads):
            kernel = _step if self.threads > 1 else _step_serial
            return call_kernel(kernel, *arrays, self.docs, self.word_vectors, self.output_vectors,
                               self.word_scores, self.position_scores, self.mode, self.doc_share, np.float32(alpha),
                               np.float32(-alpha * self.attention_alpha), self.update_shared, self.threads, self.cap,
                               *scratch[:6], *self.counts, *scratch[6:])

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
                # each thread's list of the entries it owns, per table (B*T, B*S, B*K)
                np.empty((self.threads, rows * n_doc), np.int64),
                np.empty((self.threads, rows * n_ctx), np.int64),
                np.empty((self.threads, rows * n_out), np.int64),
            )
        return tuple(x[:n_batch] for x in self._scratch[:6]) + self._scratch[6:]


def _table(tensor: torch.Tensor, name: str) -> np.ndarray:
    if tensor.device.type != "cpu" or tensor.dtype != torch.float32 or not tensor.is_contiguous():
        raise ValueError(
            f"backend='numba' needs contiguous float32 tables on the CPU, but {name} is {tensor.dtype} on "
            f"{tensor.device}; use backend='torch' (or 'auto') for this device."
        )
    return tensor.numpy()
