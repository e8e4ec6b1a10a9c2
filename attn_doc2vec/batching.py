"""Training batches cut from an encoded corpus with vectorized tensor operations.

Everything here runs on the training device: downsampling a whole epoch is one
comparison against gensim's per-word thresholds, and a batch of windows is a few
gathers with a ``(B, 2 * window)`` index matrix. No Python loop touches a token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attn_doc2vec.config import Doc2VecConfig
from attn_doc2vec.corpus import EncodedCorpus, Vocabulary
from attn_doc2vec.model import Batch

UINT32_RANGE = 2**32


@dataclass
class DeviceCorpus:
    """An :class:`~attn_doc2vec.corpus.EncodedCorpus` on the device, with each token's document.

    The per-token arrays are int32 (8 bytes a token together, against 16 as int64; a CPU corpus's tokens
    are the encoded array itself, not a copy); what a batch gathers from them is int64, as PyTorch's
    scatter operations want.
    """

    tokens: Tensor  # (N,) int32 word rows
    docs: Tensor | None  # (N,) int32 document index of each token (None: not built, see from_encoded)
    offsets: Tensor  # (n_docs + 1,) int64
    tags: Tensor  # (n_docs, T) int64 document-vector rows, -1 padded

    @classmethod
    def from_encoded(cls, encoded: EncodedCorpus, device: torch.device, with_docs: bool = True) -> DeviceCorpus:
        """Move an encoded corpus to ``device`` (``with_docs=False``: without the per-token document index,
        for a corpus trained in blocks, :meth:`select`)."""
        offsets = torch.as_tensor(encoded.offsets, dtype=torch.int64, device=device)
        tokens = torch.as_tensor(encoded.tokens, device=device).to(torch.int32)
        tags = torch.as_tensor(encoded.tags, dtype=torch.int64, device=device)
        return cls(tokens=tokens, docs=_token_docs(offsets) if with_docs else None, offsets=offsets, tags=tags)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, documents: Tensor) -> DeviceCorpus:
        """The corpus of ``documents`` (indices, in this order): their tokens gathered, their tag rows kept."""
        starts = self.offsets[documents]
        lengths = self.offsets[documents + 1] - starts
        offsets = torch.zeros(documents.shape[0] + 1, dtype=torch.int64, device=starts.device)
        torch.cumsum(lengths, dim=0, out=offsets[1:])
        index = torch.repeat_interleave(starts - offsets[:-1], lengths)  # each token's shift, then its source
        index += torch.arange(index.shape[0], device=index.device)
        return DeviceCorpus(tokens=self.tokens[index], docs=_token_docs(offsets), offsets=offsets,
                            tags=self.tags[documents])


def _token_docs(offsets: Tensor) -> Tensor:
    """``(N,)`` int32 index of each token's document."""
    lengths = offsets[1:] - offsets[:-1]
    return torch.repeat_interleave(torch.arange(lengths.shape[0], dtype=torch.int32, device=offsets.device), lengths)


def trains_in_blocks(n_tokens: int, block: int) -> bool:
    """Whether a corpus of ``n_tokens`` trains in blocks (:func:`epoch_blocks`) under ``epoch_block = block``."""
    return 0 < block < n_tokens


def epoch_blocks(offsets: Tensor, block: int, generator: torch.Generator) -> list[Tensor]:
    """Deal the documents, in one random order, into blocks of about ``block`` tokens each (whole documents:
    a block closes at the first document that reaches ``block`` tokens); each block's document indices are
    sorted, so that it reads its corpus in order.

    Parameters
    ----------
    offsets : Tensor
        ``(n_docs + 1,)`` the corpus's document offsets.
    block : int
        Tokens per block (``Doc2VecConfig.epoch_block``).
    generator : torch.Generator
        Draws the order.
    """
    lengths = offsets[1:] - offsets[:-1]
    order = torch.randperm(lengths.shape[0], generator=generator, device=offsets.device)
    ends = torch.cumsum(lengths[order], 0)
    cuts, start, done, n = [], 0, 0, order.shape[0]
    while start < n:  # one step per block: a block ends with the first document whose end reaches `block` more
        end = min(int(torch.searchsorted(ends, done + block, side="left")) + 1, n)
        cuts.append(torch.sort(order[start:end]).values)
        done, start = int(ends[end - 1]), end
    return cuts


@dataclass
class Sampler:
    """The random draws of word2vec training, from one seeded generator.

    Attributes
    ----------
    sample_int : Tensor
        ``(V,)`` gensim's keep thresholds: a word is kept when ``sample_int >= uniform uint32``.
    cum_table : Tensor
        ``(V,)`` gensim's cumulative negative-sampling table.
    window, negative : int
        Maximum context distance and negatives per target.
    generator : torch.Generator
        Source of every random number, on the device.
    """

    sample_int: Tensor
    cum_table: Tensor
    window: int
    negative: int
    generator: torch.Generator
    pool_sample: int = 0  # words drawn from each example's document (designs that pool them)
    pool_group: int = 1  # positions of one document kept together in the order, sharing one sample
    pool_exclude: str = "position"  # pool_group=1: the target's own token, or every copy of the target word
    context_dropout: float = 0.0  # probability of hiding each context word (designs that ask for it)
    shrink_windows: bool = True  # each target's window drawn from 1..window (False: always the full window)
    hs_points: Tensor | None = None  # (V, L) hierarchical softmax: each word's path rows in the output table
    hs_labels: Tensor | None = None  # (V, L) float32 1 - code along the path
    hs_mask: Tensor | None = None  # (V, L) bool, True on the path (False on padding)
    null_word: int | None = None  # gensim's dm_concat: every window full, padded with this word's row

    @classmethod
    def from_vocab(cls, vocab: Vocabulary, config: Doc2VecConfig, generator: torch.Generator) -> Sampler:
        """A sampler with gensim's tables from ``vocab``, on the generator's device."""
        device = generator.device
        hs = {}
        if config.hs:  # inner node i is row V + i of the output table (Doc2VecModule)
            points, codes, lengths = vocab.huffman_tree()
            hs = dict(hs_points=torch.as_tensor(points + len(vocab.wv), device=device),
                      hs_labels=torch.as_tensor(1.0 - codes.astype("float32"), device=device),
                      hs_mask=torch.as_tensor(np.arange(points.shape[1])[None, :] < lengths[:, None], device=device))
        concat = config.dm == 1 and config.context == "concat"  # gensim: fixed windows, null-word padding
        return cls(
            sample_int=torch.as_tensor(vocab.sample_int, device=device),
            cum_table=torch.as_tensor(vocab.cum_table.astype("int64"), device=device),
            window=config.window, negative=config.negative, generator=generator,
            shrink_windows=config.shrink_windows and not concat, **hs,
            null_word=vocab.wv.key_to_index["\0"] if concat else None,
        )

    def __post_init__(self) -> None:
        device = self.cum_table.device
        rel = torch.arange(1, self.window + 1, device=device)
        self.rel = torch.cat([-rel.flip(0), rel])  # (S,) relative offsets -W..-1, 1..W
        self.downsamples = bool((self.sample_int < UINT32_RANGE - 1).any())
        self.cum_max = int(self.cum_table[-1])

    def downsample(self, corpus: DeviceCorpus) -> DeviceCorpus:
        """Drop frequent words for one epoch with gensim's probabilities; windows then span the kept words."""
        if not self.downsamples:
            return corpus
        draw = torch.randint(0, UINT32_RANGE, (len(corpus),), generator=self.generator, device=corpus.tokens.device)
        keep = self.sample_int[corpus.tokens] >= draw
        docs = corpus.docs[keep]
        counts = torch.bincount(docs, minlength=corpus.tags.shape[0])
        offsets = torch.zeros_like(corpus.offsets)
        torch.cumsum(counts, dim=0, out=offsets[1:])
        return DeviceCorpus(tokens=corpus.tokens[keep], docs=docs, offsets=offsets, tags=corpus.tags)

    def epoch_order(self, corpus: DeviceCorpus) -> Tensor:
        """The order of an epoch's PV-DM positions: a random permutation, or with ``pool_group = g > 1`` runs
        of up to ``g`` positions of one document (each document's positions shuffled, then cut into runs),
        the runs in random order."""
        n = len(corpus)
        device = corpus.tokens.device
        if self.pool_group <= 1 or not self.pool_sample:
            return torch.randperm(n, generator=self.generator, device=device)
        g = self.pool_group
        # positions are stored document after document: sorting by document + a uniform draw in [0, 1)
        # shuffles each document's positions in place
        within = torch.argsort(corpus.docs.double() + torch.rand(n, generator=self.generator, device=device,
                                                                 dtype=torch.float64))
        rank = torch.arange(n, device=device) - corpus.offsets[corpus.docs]  # rank of slot j within its document
        lengths = corpus.offsets[1:] - corpus.offsets[:-1]
        runs = (lengths + g - 1) // g
        first = torch.cumsum(runs, 0) - runs  # each document's first run
        run = first[corpus.docs] + rank // g  # (n,) run of slot j
        shuffled = torch.randperm(int(runs.sum()), generator=self.generator, device=device)
        return within[torch.argsort(shuffled[run], stable=True)]

    def reach(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        """``(n, 1)`` context distances: word2vec's random window shrinking (each target's window drawn from
        1..W) or, with ``shrink_windows=False``, W for every target."""
        if self.shrink_windows:
            return torch.randint(1, self.window + 1, (n, 1), generator=self.generator, device=device)
        return torch.full((n, 1), self.window, dtype=torch.int64, device=device)

    def output_rows(self, targets: Tensor, outputs: Tensor | None = None, output_mask: Tensor | None = None
                    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The rows that predict ``targets``: negative sampling's (drawn here unless ``outputs`` and
        ``output_mask`` bring them; none with ``negative=0``), then with ``hs=1`` each target's Huffman path.

        Returns
        -------
        tuple of Tensor
            ``outputs``, ``output_mask`` and ``output_labels`` as :class:`~attn_doc2vec.model.Batch` holds
            them (labels None: negative sampling's layout).
        """
        if outputs is None:
            outputs, output_mask = self.negatives(targets)
        if self.negative == 0:
            outputs, output_mask = outputs[:, :0], output_mask[:, :0]
        if self.hs_points is None:
            return outputs, output_mask, None
        labels = torch.zeros(outputs.shape, dtype=torch.float32, device=outputs.device)
        labels[:, :1] = 1.0
        return (torch.cat([outputs, self.hs_points[targets]], dim=1),
                torch.cat([output_mask, self.hs_mask[targets]], dim=1),
                torch.cat([labels, self.hs_labels[targets]], dim=1))

    def negatives(self, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Draw outputs ``(B, 1 + negative)`` (target first) and the mask of negatives that differ from it."""
        draw = torch.randint(0, self.cum_max, (targets.shape[0], self.negative),
                             generator=self.generator, device=targets.device)
        negs = torch.searchsorted(self.cum_table, draw)  # bisect_left, as gensim
        outputs = torch.cat([targets[:, None], negs], dim=1)  # (B, K)
        mask = outputs != targets[:, None]
        mask[:, 0] = True
        return outputs, mask

    def pvdm_batch(self, corpus: DeviceCorpus, positions: Tensor) -> Batch:
        """PV-DM examples predicting the tokens at ``positions`` from their shrunk windows."""
        docs = corpus.docs[positions]  # (B,)
        start, end = corpus.offsets[docs], corpus.offsets[docs + 1]
        idx = positions[:, None] + self.rel[None, :]  # (B, S)
        reach = self.reach(positions.shape[0], positions.device)
        mask = (idx >= start[:, None]) & (idx < end[:, None]) & (self.rel.abs()[None, :] <= reach)
        if self.context_dropout:
            mask &= torch.rand(mask.shape, generator=self.generator, device=mask.device) >= self.context_dropout
        words = torch.where(mask, corpus.tokens[idx.clamp(0, len(corpus) - 1)].long(), 0)
        if self.null_word is not None:  # dm_concat: every slot filled, past the document with the null word
            words = torch.where(mask, words, self.null_word)
            mask = torch.ones_like(mask)
        outputs, output_mask, labels = self.output_rows(corpus.tokens[positions].long())
        slots = torch.arange(self.rel.shape[0], device=positions.device).expand_as(idx)
        pool_words, pool_mask, pool_index = self.pool_draws(corpus, positions, docs)
        return Batch(doc_slots=corpus.tags[docs], words=words, positions=slots, word_mask=mask,
                     outputs=outputs, output_mask=output_mask, pool_words=pool_words, pool_mask=pool_mask,
                     pool_index=pool_index, output_labels=labels)

    def pool_draws(self, corpus: DeviceCorpus, positions: Tensor, docs: Tensor
                   ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The words drawn from the examples' documents (designs that pool them): ``pool_words``, ``pool_mask``
        and ``pool_index`` of :class:`~attn_doc2vec.model.Batch` (all None without ``pool_sample``)."""
        if not self.pool_sample:
            return None, None, None
        pool_index = None
        if self.pool_group > 1:  # one sample per document of the batch, shared by its examples (target not excluded)
            docs, pool_index = torch.unique(docs, return_inverse=True)
        start = corpus.offsets[docs][:, None]
        length = corpus.offsets[docs + 1][:, None] - start
        draw = torch.rand((docs.shape[0], self.pool_sample), generator=self.generator, device=positions.device)
        pool = start + torch.minimum((draw * length).long(), length - 1)  # (R, P)
        pool_words = corpus.tokens[pool].long()
        if pool_index is not None:
            return pool_words, torch.ones_like(pool_words, dtype=torch.bool), pool_index
        # Doc2VecC's corruption, one sample per example: words drawn uniformly from the document, the target excluded
        # (its token, or with pool_exclude="word" every copy of its word)
        if self.pool_exclude == "word":
            return pool_words, pool_words != corpus.tokens[positions].long()[:, None], None
        return pool_words, pool != positions[:, None], None

    def dbow_batch(self, corpus: DeviceCorpus, positions: Tensor, tag_slot: Tensor | None = None,
                   pairs: Tensor | None = None) -> Batch:
        """PV-DBOW examples: a document vector (one of its tags) predicting the token at each position; then,
        with ``pairs`` (``dbow_words=1``, codes of :meth:`skipgram_pairs`), a context word's vector predicting
        the word at the window's centre (document slot ``-1``, one word slot)."""
        docs = corpus.docs[positions]
        tags = corpus.tags[docs, 0 if tag_slot is None else tag_slot][:, None]  # (B, 1)
        targets = corpus.tokens[positions].long()  # (B,)
        n, device = positions.shape[0], positions.device
        words = torch.zeros((n, 0 if pairs is None else 1), dtype=torch.int64, device=device)
        word_mask = words.bool()
        if pairs is not None:  # skip-gram examples after the document ones
            centre = pairs // self.rel.shape[0]  # (P,)
            inputs = corpus.tokens[centre + self.rel[pairs % self.rel.shape[0]]].long()
            tags = torch.cat([tags, tags.new_full((pairs.shape[0], 1), -1)])  # (B + P, 1)
            words = torch.cat([words, inputs[:, None]])  # (B + P, 1)
            word_mask = torch.cat([word_mask, torch.ones_like(inputs[:, None], dtype=torch.bool)])
            targets = torch.cat([targets, corpus.tokens[centre].long()])
        outputs, output_mask, labels = self.output_rows(targets)
        return Batch(doc_slots=tags, words=words, positions=torch.zeros_like(words), word_mask=word_mask,
                     outputs=outputs, output_mask=output_mask, output_labels=labels)

    def skipgram_pairs(self, corpus: DeviceCorpus, chunk: int = 1 << 22) -> Tensor:
        """An epoch's skip-gram pairs of gensim's ``dbow_words=1``: the word at each position is predicted by
        every other word of its window, shrunk by one draw of :meth:`reach` per position, within its document.

        Parameters
        ----------
        corpus : DeviceCorpus
            The epoch's (downsampled) corpus.
        chunk : int
            Positions whose pairs are listed at once (bounds the temporaries; the result does not depend on it).

        Returns
        -------
        Tensor
            ``(P,)`` codes ``position * S + slot`` in position order: the input word is at
            ``position + rel[slot]`` (``S = 2 window``, :attr:`rel` the relative offsets). int32 when the codes
            fit (about ``window + 1`` pairs a word: this is the epoch's largest array), else int64.
        """
        n, device, width = len(corpus), corpus.tokens.device, self.rel.shape[0]
        reach = self.reach(n, device)[:, 0]  # (N,) one draw per position, all at once: the same for any chunk
        dtype = torch.int32 if n * width < 2**31 else torch.int64
        parts = []
        for first in range(0, n, chunk):
            pos = torch.arange(first, min(first + chunk, n), device=device)
            docs = corpus.docs[pos]
            before = torch.minimum(pos - corpus.offsets[docs], reach[pos])[:, None]  # (C, 1) words usable left
            after = torch.minimum(corpus.offsets[docs + 1] - 1 - pos, reach[pos])[:, None]  # and right
            valid = (self.rel[None, :] >= -before) & (self.rel[None, :] <= after)  # (C, S)
            parts.append((valid.reshape(-1).nonzero().squeeze(1) + first * width).to(dtype))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype, device=device)


def dbow_examples(corpus: DeviceCorpus) -> tuple[Tensor, Tensor | None]:
    """Token positions and tag slots of every PV-DBOW example (each tag of a document predicts each word)."""
    if corpus.tags.shape[1] == 1:
        return torch.arange(len(corpus), device=corpus.tokens.device), None
    valid = corpus.tags[corpus.docs] >= 0  # (N, T)
    positions, slots = valid.nonzero(as_tuple=True)
    return positions, slots
