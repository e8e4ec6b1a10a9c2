"""Batches for the CPU backend: the torch Sampler's draws, cut by Numba kernels.

:class:`FusedSampler` is a :class:`~attn_doc2vec.batching.Sampler` that consumes the same
torch random numbers in the same order, so a seed gives exactly the plain sampler's
downsampled epochs and batches; the windows, tags and negatives are gathered by kernels
instead of ~20 tensor operations per batch, and the negatives are found with a bucketed
``bisect_left`` (the answers of ``torch.searchsorted`` in a few steps instead of ~17).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from attn_doc2vec.batching import UINT32_RANGE, DeviceCorpus, Sampler
from attn_doc2vec.fused import _prefetch1, call_kernel, parallel_launch
from attn_doc2vec.model import Batch


@njit(cache=True, inline="always")
def _bisect_left(cum, lo, hi, x):
    """First index in ``[lo, hi]`` whose ``cum`` is ``>= x`` (``torch.searchsorted``, gensim's bisect_left)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, inline="always")
def _draw_outputs(b, target, draws, cum, buckets, shift, outputs, output_mask):
    outputs[b, 0] = target
    output_mask[b, 0] = True
    for k in range(draws.shape[1]):
        x = draws[b, k]
        bucket = x >> shift  # the answer lies between the first entries >= bucket * 2**shift and >= the next one
        neg = _bisect_left(cum, buckets[bucket], buckets[bucket + 1], x)
        outputs[b, k + 1] = neg
        output_mask[b, k + 1] = neg != target


# Serial on purpose: a batch costs ~100 ns per example, less than a parallel launch would save.
# Each gather is its own short loop, so the CPU overlaps the cache misses of many examples.


@njit(cache=True)
def _pvdm_batch(tokens, docs, offsets, tags, positions, reach, draws, cum, buckets, shift, window,
                doc_slots, words, word_mask, outputs, output_mask):
    n = positions.shape[0]
    d, start, end = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    for b in range(n):  # positions are random: start loading every example's window at once
        _prefetch1(tokens, max(positions[b] - window, 0))
        _prefetch1(tokens, min(positions[b] + window, tokens.shape[0] - 1))
        _prefetch1(docs, positions[b])
    for b in range(n):
        d[b] = docs[positions[b]]
    for b in range(n):
        start[b], end[b] = offsets[d[b]], offsets[d[b] + 1]
        for t in range(tags.shape[1]):
            doc_slots[b, t] = tags[d[b], t]
    for b in range(n):
        p = positions[b]
        for j in range(2 * window):
            rel = j - window if j < window else j - window + 1  # -W..-1, 1..W as Sampler.rel
            idx = p + rel
            ok = start[b] <= idx < end[b] and abs(rel) <= reach[b, 0]
            word_mask[b, j] = ok
            words[b, j] = tokens[idx] if ok else 0
    for b in range(n):
        _draw_outputs(b, tokens[positions[b]], draws, cum, buckets, shift, outputs, output_mask)


@njit(cache=True)
def _dbow_batch(tokens, docs, tags, positions, tag_slots, draws, cum, buckets, shift, doc_slots, outputs,
                output_mask):
    n = positions.shape[0]
    d = np.empty(n, np.int64)
    for b in range(n):
        d[b] = docs[positions[b]]
    for b in range(n):
        doc_slots[b, 0] = tags[d[b], tag_slots[b]]
    for b in range(n):
        _draw_outputs(b, tokens[positions[b]], draws, cum, buckets, shift, outputs, output_mask)


@njit(cache=True)
def _negatives(targets, draws, cum, buckets, shift, outputs, output_mask):
    for b in range(targets.shape[0]):
        _draw_outputs(b, targets[b], draws, cum, buckets, shift, outputs, output_mask)


@njit(parallel=True, cache=True)
def _downsample(tokens, offsets, sample_int, draws):
    """The kept tokens (``sample_int[token] >= draw``), their documents and the new offsets, document by document."""
    n_docs = offsets.shape[0] - 1
    kept_offsets = np.zeros(n_docs + 1, np.int64)
    for d in prange(n_docs):
        count = 0
        for i in range(offsets[d], offsets[d + 1]):
            if sample_int[tokens[i]] >= draws[i]:
                count += 1
        kept_offsets[d + 1] = count
    for d in range(n_docs):
        kept_offsets[d + 1] += kept_offsets[d]
    kept_tokens = np.empty(kept_offsets[n_docs], np.int32)
    kept_docs = np.empty(kept_offsets[n_docs], np.int32)
    for d in prange(n_docs):
        j = kept_offsets[d]
        for i in range(offsets[d], offsets[d + 1]):
            if sample_int[tokens[i]] >= draws[i]:
                kept_tokens[j] = tokens[i]
                kept_docs[j] = d
                j += 1
    return kept_tokens, kept_docs, kept_offsets


class FusedSampler(Sampler):
    """A :class:`~attn_doc2vec.batching.Sampler` whose epochs and batches are cut by Numba kernels on the CPU."""

    @classmethod
    def from_sampler(cls, sampler: Sampler) -> FusedSampler:
        """The same tables and the same generator (shared, not copied)."""
        return cls(sample_int=sampler.sample_int, cum_table=sampler.cum_table, window=sampler.window,
                   negative=sampler.negative, generator=sampler.generator, pool_sample=sampler.pool_sample,
                   pool_group=sampler.pool_group, pool_exclude=sampler.pool_exclude,
                   context_dropout=sampler.context_dropout, shrink_windows=sampler.shrink_windows,
                   hs_points=sampler.hs_points, hs_labels=sampler.hs_labels, hs_mask=sampler.hs_mask)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cum_table.device.type != "cpu":
            raise ValueError(f"FusedSampler runs on the CPU, but its tables are on {self.cum_table.device}.")
        self._cum = np.ascontiguousarray(self.cum_table.numpy(), dtype=np.int64)
        self._shift = max(0, int(self.cum_max).bit_length() - 16)  # about 2**16 buckets
        bounds = np.arange((self.cum_max >> self._shift) + 2, dtype=np.int64) << self._shift
        self._buckets = np.searchsorted(self._cum, bounds, side="left").astype(np.int64)
        self._slots = np.zeros((0, 2 * self.window), np.int64)

    def downsample(self, corpus: DeviceCorpus) -> DeviceCorpus:
        """As :meth:`Sampler.downsample` (the same draw per token), in one pass without temporary gathers."""
        if not self.downsamples:
            return corpus
        draws = torch.randint(0, UINT32_RANGE, (len(corpus),), generator=self.generator)
        with parallel_launch():
            tokens, docs, offsets = call_kernel(_downsample, corpus.tokens.numpy(), corpus.offsets.numpy(),
                                                self.sample_int.numpy(), draws.numpy())
        return DeviceCorpus(tokens=torch.from_numpy(tokens), docs=torch.from_numpy(docs),
                            offsets=torch.from_numpy(offsets), tags=corpus.tags)

    def pvdm_batch(self, corpus: DeviceCorpus, positions: Tensor) -> Batch:
        """As :meth:`Sampler.pvdm_batch`."""
        n = positions.shape[0]
        n_ctx, n_tags = 2 * self.window, corpus.tags.shape[1]
        reach = self.reach(n)
        keep = torch.rand((n, n_ctx), generator=self.generator) >= self.context_dropout \
            if self.context_dropout else None
        draws = torch.randint(0, self.cum_max, (n, self.negative), generator=self.generator)
        doc_slots, words = np.empty((n, n_tags), np.int64), np.empty((n, n_ctx), np.int64)
        word_mask, outputs, output_mask = _outputs(n, n_ctx, self.negative)
        call_kernel(_pvdm_batch, corpus.tokens.numpy(), corpus.docs.numpy(), corpus.offsets.numpy(),
                    corpus.tags.numpy(), positions.numpy(), reach.numpy(), draws.numpy(), self._cum, self._buckets,
                    self._shift, self.window, doc_slots, words, word_mask, outputs, output_mask)
        if self._slots.shape[0] < n:
            self._slots = np.tile(np.arange(n_ctx, dtype=np.int64), (n, 1))
        words, word_mask = torch.from_numpy(words), torch.from_numpy(word_mask)
        if keep is not None:  # context dropout (designs that ask for it), as Sampler.pvdm_batch
            word_mask &= keep
            words = torch.where(word_mask, words, 0)
        pool_words, pool_mask, pool_index = self.pool_draws(corpus, positions, corpus.docs[positions])
        outputs, output_mask, labels = self._rows(outputs, output_mask)
        return Batch(doc_slots=torch.from_numpy(doc_slots), words=words,
                     positions=torch.from_numpy(self._slots[:n]), word_mask=word_mask,
                     outputs=outputs, output_mask=output_mask, output_labels=labels,
                     pool_words=pool_words, pool_mask=pool_mask, pool_index=pool_index)

    def negatives(self, targets: Tensor) -> tuple[Tensor, Tensor]:
        """As :meth:`Sampler.negatives` (the same draws), the table searched by a kernel."""
        n = targets.shape[0]
        draws = torch.randint(0, self.cum_max, (n, self.negative), generator=self.generator)
        _, outputs, output_mask = _outputs(n, 0, self.negative)
        call_kernel(_negatives, np.ascontiguousarray(targets.numpy(), dtype=np.int64), draws.numpy(), self._cum,
                    self._buckets, self._shift, outputs, output_mask)
        return torch.from_numpy(outputs), torch.from_numpy(output_mask)

    def dbow_batch(self, corpus: DeviceCorpus, positions: Tensor, tag_slot: Tensor | None = None,
                   pairs: Tensor | None = None) -> Batch:
        """As :meth:`Sampler.dbow_batch`."""
        if pairs is not None:  # dbow_words=1: a few tensor gathers, the negatives drawn by the kernel above
            return super().dbow_batch(corpus, positions, tag_slot, pairs)
        n = positions.shape[0]
        draws = torch.randint(0, self.cum_max, (n, self.negative), generator=self.generator)
        slots = np.zeros(n, np.int64) if tag_slot is None else tag_slot.numpy()
        doc_slots = np.empty((n, 1), np.int64)
        _, outputs, output_mask = _outputs(n, 0, self.negative)
        call_kernel(_dbow_batch, corpus.tokens.numpy(), corpus.docs.numpy(), corpus.tags.numpy(), positions.numpy(),
                    slots, draws.numpy(), self._cum, self._buckets, self._shift, doc_slots, outputs, output_mask)
        empty = torch.zeros((n, 0), dtype=torch.int64)
        outputs, output_mask, labels = self._rows(outputs, output_mask)
        return Batch(doc_slots=torch.from_numpy(doc_slots), words=empty, positions=empty, word_mask=empty.bool(),
                     outputs=outputs, output_mask=output_mask, output_labels=labels)

    def _rows(self, outputs: np.ndarray, output_mask: np.ndarray) -> tuple[Tensor, Tensor, Tensor | None]:
        # the kernels wrote the target then the negatives; Sampler.output_rows adds what hs/negative=0 change
        outputs, output_mask = torch.from_numpy(outputs), torch.from_numpy(output_mask)
        return self.output_rows(outputs[:, 0], outputs, output_mask)


def _outputs(n: int, n_ctx: int, negative: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.empty((n, n_ctx), np.bool_), np.empty((n, 1 + negative), np.int64),
            np.empty((n, 1 + negative), np.bool_))
