"""Attention extraction: the weights are the forward pass's own, sum to 1, and importance means what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attn_doc2vec import Doc2Vec, TaggedDocument
from attn_doc2vec.attention import extract, full_window_batch, normalized_entropy, word_importance
from attn_doc2vec.batching import DeviceCorpus, Sampler
from attn_doc2vec.corpus import encode
from attn_doc2vec.training import make_generator


@pytest.fixture(params=["wordpos", "attention"])
def scored_model(request, topic_docs) -> Doc2Vec:
    """A small attentive model (each design) whose attention scores are random: far from uniform."""
    model = Doc2Vec(topic_docs[:20], context=request.param, vector_size=8, epochs=2, min_count=1, device="cpu",
                    seed=3)
    gen = torch.Generator().manual_seed(7)
    tables = [model.module.word_scores, model.module.position_scores] if request.param == "wordpos" else \
        list(model.module.layer.parameters())
    for table in tables:
        table.data.copy_(torch.randn(table.shape, generator=gen))
    return model


def docs_with_edge_cases(topic_docs) -> list[TaggedDocument]:
    """Long documents, a one-token one, a two-token one and one with out-of-vocabulary words."""
    return [*topic_docs[:3], TaggedDocument(["fruit1"], ["one"]), TaggedDocument(["the1", "fruit2"], ["two"]),
            TaggedDocument(["nosuchword", "fruit3", "zzz", "the2", "fruit4"], ["oov"])]


def test_weights_sum_to_one_per_target(scored_model, topic_docs):
    atts = scored_model.attention_weights_many([d.words for d in docs_with_edge_cases(topic_docs)])
    for att in atts:
        valid = att.context_positions >= 0
        has_context = valid.any(axis=1)
        np.testing.assert_allclose(att.attention.sum(axis=1)[has_context], 1.0, atol=1e-6)
        np.testing.assert_allclose(att.doc_weight + att.word_weights.sum(axis=1) + att.pool_weight, 1.0, atol=1e-6)
        if att.document_attention is not None:
            assert att.document_attention.sum() == pytest.approx(1.0, abs=1e-5)
        assert (att.attention[~valid] == 0).all() and (att.word_weights[~valid] == 0).all()
    one = atts[3]
    assert len(one) == 1 and one.attention.sum() == 0
    assert one.doc_weight[0] + one.pool_weight[0] == pytest.approx(1.0)
    assert atts[5].tokens == ["fruit3", "the2", "fruit4"]  # out-of-vocabulary words dropped, as in training


def test_extraction_equals_forward_pass(scored_model, topic_docs):
    """The extracted numbers are the ones forward() uses on full windows, bit for bit."""
    model = scored_model
    encoded = encode(topic_docs[:4], model.vocab)
    atts = extract(model.module, model.vocab, encoded, chunk_size=50)  # several chunks
    corpus = DeviceCorpus.from_encoded(encoded, model.device)
    batch = full_window_batch(corpus, torch.arange(len(corpus)), model.window)
    _, a = model.module.forward(batch)  # (N, T+S)
    assert torch.equal(torch.from_numpy(np.concatenate([x.word_weights for x in atts])), a[:, 1:])
    assert torch.equal(torch.from_numpy(np.concatenate([x.doc_weight for x in atts])), a[:, 0])
    assert torch.equal(torch.from_numpy(np.concatenate([x.attention for x in atts])), model.module.attention(batch))
    # and by hand: p = softmax(u[w, slot] + b[slot]) (wordpos) or softmax(c[w]) (attention)
    att, t = atts[1], 17
    slots = np.arange(2 * model.window)
    pos = t + att.offsets
    if model.context == "wordpos":
        u, b = model.module.word_scores.numpy(), model.module.position_scores.numpy()
        e = u[att.token_ids[pos], slots] + b[slots]
    else:
        e = model.module.layer.row_context.numpy()[att.token_ids[pos]]  # default context_scores="word"
    np.testing.assert_allclose(att.attention[t], np.exp(e) / np.exp(e).sum(), rtol=1e-5)


def test_training_batches_use_the_same_weights(scored_model, topic_docs):
    """A training example with a full-size window has exactly the extracted weights; a shrunk window
    has the full-window attention renormalized over the words it kept."""
    model = scored_model
    encoded = encode(topic_docs[:4], model.vocab)
    corpus = DeviceCorpus.from_encoded(encoded, model.device)
    sampler = Sampler.from_vocab(model.vocab, model.config, make_generator(0, model.device))
    positions = torch.arange(len(corpus))
    batch = sampler.pvdm_batch(corpus, positions)  # no downsampling: positions are the extracted ones
    trained = model.module.attention(batch).numpy()
    full = np.concatenate([a.attention for a in extract(model.module, model.vocab, encoded)])
    same_window = (batch.word_mask.numpy() == (full > 0)).all(axis=1)
    shrunk = ~same_window & batch.word_mask.numpy().any(axis=1)
    assert same_window.sum() > 20 and shrunk.sum() > 20
    np.testing.assert_array_equal(trained[same_window], full[same_window])
    kept = np.where(batch.word_mask.numpy(), full, 0.0)
    np.testing.assert_allclose(trained[shrunk], (kept / kept.sum(axis=1, keepdims=True))[shrunk], rtol=1e-5)


def test_importance_is_mean_attention_relative_to_uniform(scored_model, topic_docs):
    att = scored_model.attention_weights(topic_docs[0].words[:25])
    pos = att.context_positions
    m = (pos >= 0).sum(axis=1)
    for j in (0, 1, 12, 24):  # brute force over every window that holds token j
        received = [(att.attention[t, s] * m[t], att.attention[t, s]) for t in range(len(att))
                    for s in range(pos.shape[1]) if pos[t, s] == j]
        assert att.windows[j] == len(received)
        assert att.importance[j] == pytest.approx(np.mean([r for r, _ in received]), rel=1e-5)
        assert att.mean_attention[j] == pytest.approx(np.mean([p for _, p in received]), rel=1e-5)


def test_many_documents_equal_one_at_a_time(scored_model, topic_docs):
    docs = [d.words for d in docs_with_edge_cases(topic_docs)]
    together = scored_model.attention_weights_many(docs, chunk_size=13)
    for words, att in zip(docs, together, strict=True):
        alone = scored_model.attention_weights(words)
        assert alone.tokens == att.tokens
        np.testing.assert_array_equal(alone.attention, att.attention)
        np.testing.assert_array_equal(alone.importance, att.importance)


def test_training_tag_and_its_tokens_give_the_same_attention(scored_model, topic_docs):
    by_tag = scored_model.attention_weights(topic_docs[2].tags[0])
    by_words = scored_model.attention_weights(topic_docs[2].words)
    assert by_tag.tag == topic_docs[2].tags[0] and by_tag.label == "2"
    np.testing.assert_array_equal(by_tag.attention, by_words.attention)
    with pytest.raises(KeyError, match="not a document tag.*simple_preprocess"):
        scored_model.attention_weights("a whole sentence given as a string")


def test_tables_are_tidy(scored_model, topic_docs):
    att = scored_model.attention_weights(topic_docs[0].words[:12])
    frame = att.to_frame()
    pooled = len(att) if (att.pool_weight > 0).any() else 0
    assert len(frame) == int((att.context_positions >= 0).sum()) + len(att) + pooled
    np.testing.assert_allclose(frame.groupby("target_pos")["weight"].sum(), 1.0, atol=1e-6)
    assert set(frame.loc[frame.context == "<doc>", "context_pos"]) == {-1}
    imp = att.importance_frame()
    assert list(imp.columns) == ["doc", "position", "token", "importance", "mean_attention", "windows",
                                 "document_attention"]
    assert list(imp.token) == att.tokens


def test_dense_matrix_is_the_window_band(scored_model, topic_docs):
    att = scored_model.attention_weights(topic_docs[0].words)
    w = scored_model.window
    values, rows, cols = att.matrix(10, 20)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (10, 20, 10 - w, 20 + w)
    for r, t in enumerate(rows):
        inside = [c - cols.start for c in range(t - w, t + w + 1) if c != t]
        np.testing.assert_allclose(np.nansum(values[r]), 1.0, atol=1e-6)
        assert np.isfinite(values[r, inside]).all() and np.isnan(values[r]).sum() == values.shape[1] - 2 * w


def test_mean_and_sum_context_are_uniform_and_dbow_refuses(topic_docs):
    docs = topic_docs[:6]
    for context in ("mean", "sum"):
        model = Doc2Vec(docs, vector_size=8, epochs=1, min_count=1, context=context, device="cpu")
        att = model.attention_weights(docs[0].tags[0])
        np.testing.assert_allclose(att.importance, 1.0, rtol=1e-6)
        np.testing.assert_allclose(normalized_entropy(att.attention), 1.0, rtol=1e-6)
        if context == "sum":
            assert (att.word_weights[att.context_positions >= 0] == 1).all() and (att.doc_weight == 1).all()
    dbow = Doc2Vec(docs, vector_size=8, epochs=1, min_count=1, dm=0, device="cpu")
    with pytest.raises(ValueError, match="PV-DBOW.*dm=1"):
        dbow.attention_weights(docs[0].tags[0])


def test_untrained_attention_is_uniform(topic_docs):
    model = Doc2Vec(vector_size=8, min_count=1, device="cpu")
    model.build_vocab(topic_docs[:4])
    att = model.attention_weights(topic_docs[0].words)
    np.testing.assert_allclose(att.entropy(), 1.0, rtol=1e-6)


def test_lee_model_attention_is_far_from_uniform(lee_model, lee_docs):
    """Trained on a real corpus, the attention is clearly peaked (a uniform model scores exactly 1)."""
    atts = lee_model.attention_weights_many(list(range(len(lee_docs))))
    entropy = np.concatenate([a.entropy() for a in atts])
    # measured: mean 0.89, 5th percentile 0.61 (LEE_SETTINGS, 40 epochs); an untrained model gives exactly 1
    assert np.nanmean(entropy) < 0.95, f"mean normalized entropy {np.nanmean(entropy):.3f}"
    assert np.nanpercentile(entropy, 5) < 0.8
    words = lee_model.word_attention()
    # importance is relative to uniform, so its window-weighted mean over the corpus is exactly 1
    assert np.average(words.importance, weights=words.windows) == pytest.approx(1.0, abs=1e-6)
    assert words.importance.max() > 1.5 and words.importance.min() < 0.8  # measured 2.0 and 0.67
    again = word_importance(lee_model.module, lee_model.vocab, encode(lee_docs, lee_model.vocab), chunk_size=5000)
    np.testing.assert_allclose(again.set_index("word").loc[words.word, "importance"], words.importance, rtol=1e-9)
