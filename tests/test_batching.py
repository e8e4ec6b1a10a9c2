"""Sampler: windows, negatives and downsampling follow word2vec/gensim's rules, statistically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attn_doc2vec import TaggedDocument
from attn_doc2vec.batching import UINT32_RANGE, DeviceCorpus, Sampler, dbow_examples, epoch_blocks
from attn_doc2vec.config import Doc2VecConfig
from attn_doc2vec.corpus import build_vocabulary, encode
from attn_doc2vec.training import make_generator

CPU = torch.device("cpu")


def prepare(docs, seed: int = 0, **settings):
    cfg = Doc2VecConfig(**({"min_count": 1, "sample": 0.0} | settings))
    vocab = build_vocabulary(docs, cfg)
    corpus = DeviceCorpus.from_encoded(encode(docs, vocab), CPU)
    return vocab, corpus, Sampler.from_vocab(vocab, cfg, make_generator(seed, CPU))


def random_docs(lengths, n_words: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [TaggedDocument([f"w{j}" for j in rng.integers(0, n_words, n)], [i]) for i, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def lee_sampling(lee_docs):
    """Lee vocabulary with gensim's default downsampling, its encoded corpus and a sampler."""
    return prepare(lee_docs, min_count=2, sample=1e-3)


def test_device_corpus_knows_each_tokens_document() -> None:
    _, corpus, _ = prepare(random_docs([3, 1, 4]))
    assert corpus.docs.tolist() == [0, 0, 0, 1, 2, 2, 2, 2]
    assert corpus.offsets.tolist() == [0, 3, 4, 8]
    assert len(corpus) == 8


@pytest.mark.parametrize("block", [1, 10, 37, 1000])
def test_epoch_blocks_deal_every_document_once_in_blocks_of_about_block_tokens(block: int) -> None:
    """Whole documents in random order; a block closes with the first document that brings it to ``block``
    tokens, so every block but the last has at least ``block`` (and there are at most total / block + 1)."""
    lengths = torch.as_tensor(np.random.default_rng(1).integers(0, 30, 200))
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lengths, 0)])
    blocks = epoch_blocks(offsets, block, make_generator(3, CPU))
    assert torch.equal(torch.cat(blocks).sort().values, torch.arange(200))
    assert all(torch.equal(b, b.sort().values) for b in blocks)  # each block reads the corpus in order
    sizes = [int(lengths[b].sum()) for b in blocks]
    assert all(s >= block for s in sizes[:-1]) and len(blocks) <= sum(sizes) // block + 1
    again = epoch_blocks(offsets, block, make_generator(3, CPU))
    assert all(torch.equal(a, b) for a, b in zip(blocks, again, strict=True))
    if block == 37:  # the documents are dealt in a random order, not in the corpus's
        assert not torch.equal(torch.cat(blocks), torch.arange(200))


def test_a_selected_block_holds_its_documents_tokens_and_tags() -> None:
    docs = random_docs([3, 0, 5, 2, 4])
    _, corpus, _ = prepare(docs)
    block = corpus.select(torch.tensor([4, 1, 2]))
    assert block.offsets.tolist() == [0, 4, 4, 9]
    assert block.docs.tolist() == [0] * 4 + [2] * 5
    torch.testing.assert_close(block.tokens, torch.cat([corpus.tokens[10:14], corpus.tokens[3:8]]))
    assert block.tokens.dtype == torch.int32
    assert torch.equal(block.tags, corpus.tags[[4, 1, 2]])
    no_index = DeviceCorpus.from_encoded(encode(docs, prepare(docs)[0]), CPU, with_docs=False)
    assert no_index.docs is None
    assert no_index.select(torch.tensor([0, 3])).docs.tolist() == [0, 0, 0, 1, 1]


def test_device_corpus_is_int32_without_copying_the_tokens_and_batches_are_int64() -> None:
    """4 bytes a token for each per-token array (memory: issue 'Scale'); what scatters index stays int64."""
    docs = random_docs([30, 12, 25])
    cfg = Doc2VecConfig(min_count=1, sample=0.0, pool_sample=5)
    vocab = build_vocabulary(docs, cfg)
    encoded = encode(docs, vocab)
    corpus = DeviceCorpus.from_encoded(encoded, CPU)
    assert corpus.tokens.dtype == corpus.docs.dtype == torch.int32
    assert np.shares_memory(corpus.tokens.numpy(), encoded.tokens)  # the encoded array itself
    sampler = Sampler.from_vocab(vocab, cfg, make_generator(0, CPU))
    sampler.pool_sample = 5
    batch = sampler.pvdm_batch(corpus, torch.arange(len(corpus)))
    assert batch.words.dtype == batch.outputs.dtype == batch.pool_words.dtype == torch.int64
    np.testing.assert_array_equal(batch.outputs[:, 0].numpy(), encoded.tokens)
    dbow = sampler.dbow_batch(corpus, torch.arange(len(corpus)))
    assert dbow.outputs.dtype == torch.int64


def test_windows_respect_document_boundaries_and_the_shrunk_window() -> None:
    window = 4
    _, corpus, sampler = prepare(random_docs([1, 2, 7, 3, 30, 5]), window=window)
    positions = torch.arange(len(corpus))
    batch = sampler.pvdm_batch(corpus, positions)
    rel = sampler.rel
    assert rel.tolist() == [-4, -3, -2, -1, 1, 2, 3, 4]
    assert torch.equal(batch.positions, torch.arange(2 * window).expand(len(corpus), -1))
    idx = positions[:, None] + rel[None, :]
    doc = corpus.docs[positions]
    inside = (idx >= corpus.offsets[doc][:, None]) & (idx < corpus.offsets[doc + 1][:, None])
    assert not (batch.word_mask & ~inside).any()
    # each example uses one reach r in 1..window on both sides (word2vec's random window shrinking)
    fits = torch.stack([torch.all(batch.word_mask == (inside & (rel.abs() <= r)), dim=1)
                        for r in range(1, window + 1)], dim=1)
    assert fits.any(dim=1).all()
    assert torch.equal(batch.words[batch.word_mask], corpus.tokens[idx[batch.word_mask]])
    assert torch.equal(batch.outputs[:, 0], corpus.tokens)
    assert torch.equal(batch.doc_slots, corpus.tags[doc])
    assert not batch.word_mask[0].any()  # the one-token document has no context


def test_window_reach_is_uniform_over_one_to_window() -> None:
    window = 5
    _, corpus, sampler = prepare(random_docs([4000]), window=window)
    positions = torch.arange(window, len(corpus) - window)  # full windows only
    batch = sampler.pvdm_batch(corpus, positions)
    reach = (batch.word_mask * sampler.rel.abs()).max(dim=1).values
    counts = torch.bincount(reach, minlength=window + 1)[1:].double()
    expected = len(positions) / window
    assert torch.all((counts - expected).abs() < 5 * expected**0.5), counts
    # both sides always reach equally far
    assert torch.equal(batch.word_mask[:, :window].sum(1), batch.word_mask[:, window:].sum(1))


def test_negatives_follow_the_cum_table(lee_sampling) -> None:
    vocab, _, sampler = lee_sampling
    targets = torch.zeros(200_000, dtype=torch.int64)
    outputs, mask = sampler.negatives(targets)
    assert outputs.shape == (200_000, 1 + sampler.negative)
    assert torch.all(outputs[:, 0] == 0) and torch.all(mask[:, 0])
    assert torch.equal(mask[:, 1:], outputs[:, 1:] != 0)  # negatives that drew the target are skipped
    drawn = np.bincount(outputs[:, 1:].reshape(-1).numpy(), minlength=len(vocab.wv)) / outputs[:, 1:].numel()
    cum = vocab.cum_table.astype(np.float64)
    table_p = np.diff(cum, prepend=0.0) / cum[-1]
    gensim_p = vocab.counts**0.75 / (vocab.counts**0.75).sum()  # gensim's definition of the table
    np.testing.assert_allclose(table_p, gensim_p, atol=1e-6)
    sigma = np.sqrt(table_p * (1 - table_p) / outputs[:, 1:].numel())
    assert np.all(np.abs(drawn - table_p) < 5 * sigma + 1e-6)
    assert 0.5 * np.abs(drawn - table_p).sum() < 0.03  # total variation distance


def test_downsampling_keeps_words_with_gensims_probability(lee_sampling) -> None:
    vocab, corpus, sampler = lee_sampling
    counts = vocab.counts
    keep_p = np.minimum(vocab.sample_int / (UINT32_RANGE - 1), 1.0)
    # gensim's formula, independently: p = (sqrt(f / t) + 1) * t / f with t = sample * total words
    threshold = 1e-3 * counts.sum()
    formula = np.minimum((np.sqrt(counts / threshold) + 1) * threshold / counts, 1.0)
    np.testing.assert_allclose(keep_p, formula, rtol=1e-6)
    assert keep_p[0] < 0.5 and keep_p[-1] == 1.0
    trials = 10
    kept = np.zeros(len(counts))
    for _ in range(trials):
        epoch = sampler.downsample(corpus)
        kept += np.bincount(epoch.tokens.numpy(), minlength=len(counts))
    rate = kept / (trials * counts)
    sigma = np.sqrt(keep_p * (1 - keep_p) / (trials * counts))
    assert np.all(np.abs(rate - keep_p) < 5 * sigma + 1e-9)
    assert np.all(rate[keep_p == 1.0] == 1.0)


def test_downsampling_keeps_order_and_document_boundaries(lee_sampling) -> None:
    _, corpus, sampler = lee_sampling
    epoch = sampler.downsample(corpus)
    assert 0.3 * len(corpus) < len(epoch) < 0.9 * len(corpus)
    lengths = epoch.offsets[1:] - epoch.offsets[:-1]
    assert torch.equal(lengths, torch.bincount(epoch.docs, minlength=len(lengths)))
    assert torch.all(epoch.docs[1:] >= epoch.docs[:-1])
    for d in (0, 57, 299):  # a document's kept words are an ordered subsequence of its words
        full = corpus.tokens[corpus.offsets[d]:corpus.offsets[d + 1]].tolist()
        kept = iter(full)
        assert all(any(w == x for x in kept) for w in epoch.tokens[epoch.offsets[d]:epoch.offsets[d + 1]].tolist())
    assert epoch.tags is corpus.tags


def test_no_downsampling_when_sample_is_zero(lee_docs) -> None:
    _, corpus, sampler = prepare(lee_docs[:50], sample=0.0)
    assert not sampler.downsamples
    assert sampler.downsample(corpus) is corpus


def test_dbow_examples_pair_every_tag_with_every_word() -> None:
    docs = [TaggedDocument(["a", "b", "c"], [0, "x"]), TaggedDocument(["b"], [1]), TaggedDocument(["c", "a"], ["x"])]
    vocab, corpus, sampler = prepare(docs)
    positions, slots = dbow_examples(corpus)
    pairs = list(zip(positions.tolist(), slots.tolist(), strict=True))
    assert sorted(pairs) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (4, 0), (5, 0)]
    batch = sampler.dbow_batch(corpus, positions, slots)
    expected = [corpus.tags[corpus.docs[p], s].item() for p, s in pairs]
    assert batch.doc_slots[:, 0].tolist() == expected
    assert vocab.dv.get_index("x") in expected and batch.words.shape == (len(positions), 0)
    assert torch.equal(batch.outputs[:, 0], corpus.tokens[positions])
    single, none = dbow_examples(prepare(random_docs([3, 2]))[1])
    assert single.tolist() == [0, 1, 2, 3, 4] and none is None


def test_same_seed_same_draws_different_seed_different_draws() -> None:
    docs = random_docs([50, 40])
    samplers = [prepare(docs, seed=s, sample=1e-2)[2] for s in (7, 7, 8)]
    _, corpus, _ = prepare(docs)
    draws = [(s.downsample(corpus).tokens, s.pvdm_batch(corpus, torch.arange(90))) for s in samplers]
    assert torch.equal(draws[0][0], draws[1][0])
    assert torch.equal(draws[0][1].word_mask, draws[1][1].word_mask)
    assert torch.equal(draws[0][1].outputs, draws[1][1].outputs)
    assert not torch.equal(draws[0][1].outputs, draws[2][1].outputs)


def test_pool_group_orders_runs_of_one_document_and_shares_its_sample() -> None:
    lengths = [1, 2, 7, 3, 30, 5, 12]
    _, corpus, sampler = prepare(random_docs(lengths, n_words=200), seed=3)
    sampler.pool_sample, sampler.pool_group = 6, 4
    order = sampler.epoch_order(corpus)
    assert sorted(order.tolist()) == list(range(len(corpus)))  # every position once
    docs = corpus.docs[order].tolist()
    runs = [len(list(group)) for _, group in __import__("itertools").groupby(docs)]
    # each document's positions come in runs of up to 4 (two runs of one document may meet by chance)
    assert sum(runs) == len(corpus) and len(runs) >= sum((n + 3) // 4 for n in lengths) - 3
    assert all(len([d for d in docs if d == i]) == n for i, n in enumerate(lengths))
    assert not torch.equal(order, sampler.epoch_order(corpus))  # a fresh order every epoch
    sampler.pool_group = 1
    assert sampler.epoch_order(corpus).shape == order.shape  # the plain permutation
    sampler.pool_group = 4
    batch = sampler.pvdm_batch(corpus, order[:20])
    doc = corpus.docs[order[:20]]
    # one sample per document of the batch, every example pointing at its own document's sample
    assert batch.pool_words.shape == (len(set(doc.tolist())), 6)
    assert torch.equal(batch.pool_index.unique(), torch.arange(batch.pool_words.shape[0]))
    for b in range(20):
        d = int(doc[b])
        own = set(corpus.tokens[corpus.offsets[d]:corpus.offsets[d + 1]].tolist())
        assert set(batch.pool_words[batch.pool_index[b]].tolist()) <= own
    assert batch.pool_mask.all()


def test_own_samples_leave_out_the_target_token_or_every_copy_of_its_word() -> None:
    """pool_group=1: "position" masks only the draws of the target's own token (copies of its word stay in the
    pool); "word" masks every draw of the target's word and nothing else."""
    _, corpus, sampler = prepare(random_docs([40, 60, 25], n_words=4), seed=5)  # 4 words: many copies
    sampler.pool_sample, sampler.pool_group = 50, 1
    positions = torch.arange(len(corpus))
    sampler.pool_exclude = "position"
    by_position = sampler.pvdm_batch(corpus, positions)
    target = corpus.tokens[positions].long()[:, None]
    assert by_position.pool_index is None
    copies = (by_position.pool_words == target) & by_position.pool_mask
    assert copies.any()  # the target's word is still drawn from its other tokens
    assert (~by_position.pool_mask).sum() < (by_position.pool_words == target).sum()
    sampler.pool_exclude = "word"
    by_word = sampler.pvdm_batch(corpus, positions)
    assert torch.equal(by_word.pool_mask, by_word.pool_words != target)
    assert by_word.pool_mask.any(1).all()  # every example keeps other words to pool


@pytest.mark.parametrize("negative", [0, 3])
def test_hierarchical_softmax_outputs_follow_gensims_huffman_paths(make_topic_corpus, negative: int) -> None:
    """hs=1: after negative sampling's rows (none with negative=0), each target's inner nodes (row V + point)
    with label 1 - code, gensim's `code`/`point` of the same vocabulary; padding masked."""
    from gensim.models.doc2vec import Doc2Vec as GensimDoc2Vec

    docs = make_topic_corpus(n_docs=20, length=30)
    cfg = Doc2VecConfig(min_count=1, window=2, sample=0, hs=1, negative=negative, dm=0).validate()
    vocab = build_vocabulary(docs, cfg)
    theirs = GensimDoc2Vec(min_count=1, hs=1, negative=negative, dm=0)
    theirs.build_vocab(docs)
    sampler = Sampler.from_vocab(vocab, cfg, make_generator(0, torch.device("cpu")))
    corpus = DeviceCorpus.from_encoded(encode(docs, vocab), torch.device("cpu"))
    positions, slots = dbow_examples(corpus)
    batch = sampler.dbow_batch(corpus, positions[:50], slots[:50] if slots is not None else None)
    n_ns = 1 + negative if negative else 0
    V = len(vocab.wv)
    for b in range(50):
        word = vocab.wv.index_to_key[int(corpus.tokens[positions[b]])]
        code = theirs.wv.get_vecattr(word, "code")
        point = theirs.wv.get_vecattr(word, "point")
        n = len(code)
        assert batch.output_mask[b, n_ns:n_ns + n].all() and not batch.output_mask[b, n_ns + n:].any()
        assert batch.outputs[b, n_ns:n_ns + n].tolist() == [V + int(p) for p in point]
        assert batch.output_labels[b, n_ns:n_ns + n].tolist() == [1.0 - c for c in code]
        if negative:
            assert batch.output_labels[b, 0] == 1.0 and not batch.output_labels[b, 1:n_ns].any()


@pytest.mark.parametrize("shrink", [False, True])
def test_skipgram_pairs_are_gensims_window_pairs_within_each_document(shrink: bool) -> None:
    """dbow_words=1: the word at each position is predicted by every other word of its window (one reach in
    1..window per position, as gensim's reduced_windows), never across a document boundary."""
    window = 3
    _, corpus, sampler = prepare(random_docs([1, 2, 7, 30]), window=window, shrink_windows=shrink)
    pairs = sampler.skipgram_pairs(corpus)
    S = 2 * window
    got: dict[int, set[int]] = {}
    for code in pairs.tolist():
        got.setdefault(code // S, set()).add(int(sampler.rel[code % S]))
    assert torch.equal(pairs, pairs.sort().values)  # position order
    for p in range(len(corpus)):
        d = int(corpus.docs[p])
        lo, hi = int(corpus.offsets[d]) - p, int(corpus.offsets[d + 1]) - 1 - p  # furthest offsets inside
        full = [{r for r in range(max(lo, -reach), min(hi, reach) + 1) if r} for reach in range(1, window + 1)]
        if shrink:
            assert got.get(p, set()) in full, p
        else:
            assert got.get(p, set()) == full[-1], p
    assert 0 not in got  # the one-word document has no pair
    if shrink:  # the reaches vary: some position of the long document is cut short
        assert any(got[p] != {r for r in (-3, -2, -1, 1, 2, 3)} for p in range(13, 37))
    again = prepare(random_docs([1, 2, 7, 30]), window=window, shrink_windows=shrink)[2]
    assert torch.equal(again.skipgram_pairs(corpus, chunk=7), pairs)  # listed in chunks: the same pairs
    assert pairs.dtype == torch.int32


def test_dbow_batch_with_skipgram_pairs_appends_word_examples() -> None:
    """The document examples first (a tag, no word), then one per pair: the context word's row as the input,
    the centre word as the target, no document."""
    _, corpus, sampler = prepare(random_docs([6, 9]), window=2)
    pairs = sampler.skipgram_pairs(corpus)[:7]
    positions = torch.tensor([0, 4, 10])
    batch = sampler.dbow_batch(corpus, positions, None, pairs)
    centre, context = pairs // 4, pairs // 4 + sampler.rel[pairs % 4]
    assert batch.doc_slots[:3, 0].tolist() == corpus.tags[corpus.docs[positions], 0].tolist()
    assert (batch.doc_slots[3:] == -1).all() and not batch.word_mask[:3].any() and batch.word_mask[3:].all()
    assert torch.equal(batch.words[3:, 0], corpus.tokens[context])
    assert torch.equal(batch.outputs[:, 0], torch.cat([corpus.tokens[positions], corpus.tokens[centre]]))
    assert batch.outputs.shape == (10, 1 + sampler.negative)
