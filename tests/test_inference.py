"""Inference: inferred vectors find their own document, land near their topic, and leave the model alone."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from gensim.models.keyedvectors import pseudorandom_weak_vector

from attn_doc2vec import Doc2Vec, TaggedDocument
from attn_doc2vec.inference import infer, initial_vectors

TOPIC_SETTINGS = dict(vector_size=16, min_count=1, sample=0.0, batch_size=256, device="cpu", seed=1)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


def test_starting_vectors_are_gensims_with_a_stable_hash() -> None:
    words = [["a", "b"], ["b", "a"], [], ["a", "b"]]
    start = initial_vectors(words, 12)
    for row, w in zip(start[:2], words[:2], strict=True):
        expected = pseudorandom_weak_vector(12, seed_string=" ".join(w), hashfxn=lambda s: zlib.crc32(s.encode()))
        np.testing.assert_array_equal(row, expected)
    assert not np.array_equal(start[0], start[1])
    np.testing.assert_array_equal(start[0], start[3])
    np.testing.assert_array_equal(start[2], initial_vectors([[]], 12)[0])  # empty documents too
    assert np.all(np.abs(start) <= 0.5 / 12) and np.isfinite(start).all()


# ------------------------------------------------------------------------------------------------
# Quality: a training document's inferred vector finds the document


def test_lee_inferred_vectors_find_their_document(lee_model, lee_inferred, self_rank) -> None:
    tags, vectors = lee_inferred
    assert vectors.shape == (100, 32)
    assert self_rank(lee_model, vectors, tags, topn=3) >= 0.9


@pytest.fixture(scope="module")
def lee_single(lee_model, lee_docs) -> tuple[list[int], np.ndarray]:
    """20 Lee training documents inferred one ``infer_vector`` call each (tags among ``lee_inferred``'s)."""
    picked = list(range(0, len(lee_docs), 15))
    return picked, np.stack([lee_model.infer_vector(lee_docs[i].words) for i in picked])


def test_lee_infer_vector_finds_its_document(lee_model, lee_single, self_rank) -> None:
    picked, vectors = lee_single
    assert self_rank(lee_model, vectors, picked, topn=3) >= 0.9


def test_topic_inferred_vectors_find_their_document(topic_model, topic_docs, self_rank) -> None:
    vectors = topic_model.infer_vectors([d.words for d in topic_docs])
    assert self_rank(topic_model, vectors, list(range(len(topic_docs))), topn=3) >= 0.9


def test_topic_infer_vector_finds_its_document(topic_model, topic_docs, self_rank) -> None:
    picked = list(range(0, len(topic_docs), 3))
    single = np.stack([topic_model.infer_vector(topic_docs[i].words) for i in picked])
    assert self_rank(topic_model, single, picked, topn=3) >= 0.9


def test_same_topic_documents_are_closer(topic_model, topic_docs, topic_label) -> None:
    labels = np.array([topic_label(d.tags[0]) for d in topic_docs])
    sims = cosine(topic_model.dv.vectors, topic_model.dv.vectors)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    cross = labels[:, None] != labels[None, :]
    assert sims[same].mean() > sims[cross].mean() + 0.2
    # nearest neighbours share the topic
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1)[:, :5]
    assert (labels[nearest] == labels[:, None]).mean() >= 0.9


def test_new_documents_land_on_their_topic(topic_model, topic_docs, make_topic_corpus, topic_label) -> None:
    labels = np.array([topic_label(d.tags[0]) for d in topic_docs])
    centroids = np.stack([topic_model.dv.vectors[labels == t].mean(axis=0) for t in (0, 1)])
    unseen = make_topic_corpus(n_docs=20, seed=123)
    vectors = topic_model.infer_vectors([d.words for d in unseen])
    predicted = cosine(vectors, centroids).argmax(axis=1)
    assert (predicted == np.array([topic_label(d.tags[0]) for d in unseen])).mean() >= 0.9


def test_batch_inference_ranks_like_one_at_a_time(lee_model, lee_inferred, lee_single) -> None:
    tags, vectors = lee_inferred
    picked, single = lee_single
    batch = vectors[[tags.index(i) for i in picked]]
    assert single.shape == batch.shape == (len(picked), lee_model.vector_size)
    assert np.diag(cosine(single, batch)).mean() > 0.8
    # the two rank the training documents alike: Spearman correlation of their similarity orders
    by_single = np.argsort(np.argsort(-cosine(single, lee_model.dv.vectors), axis=1), axis=1)
    by_batch = np.argsort(np.argsort(-cosine(batch, lee_model.dv.vectors), axis=1), axis=1)
    n = by_single.shape[1]
    spearman = 1 - 6 * ((by_single - by_batch) ** 2).sum(axis=1) / (n * (n**2 - 1))
    assert spearman.mean() > 0.8


# ------------------------------------------------------------------------------------------------
# Behaviour


def test_inference_leaves_the_model_unchanged(topic_model, topic_docs) -> None:
    before = {k: v.clone() for k, v in topic_model.module.state_dict().items()}
    generator_state = topic_model.generator.get_state()
    topic_model.infer_vectors([d.words for d in topic_docs[:5]])
    after = topic_model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(topic_model.generator.get_state(), generator_state)


def test_inference_is_deterministic(topic_model, topic_docs) -> None:
    words = [d.words for d in topic_docs[:4]]
    first = topic_model.infer_vectors(words)
    np.testing.assert_array_equal(first, topic_model.infer_vectors(words))
    np.testing.assert_array_equal(topic_model.infer_vector(words[0]), topic_model.infer_vector(words[0]))


def test_documents_without_known_words_get_their_starting_vector(topic_model, topic_docs) -> None:
    unknown = ["zzz", "qqq"]
    alone = topic_model.infer_vector(unknown)
    assert np.isfinite(alone).all()
    np.testing.assert_array_equal(alone, initial_vectors([unknown], topic_model.vector_size)[0])
    mixed = topic_model.infer_vectors([topic_docs[0].words, unknown, []])
    assert np.isfinite(mixed).all()
    np.testing.assert_array_equal(mixed[1], alone)
    np.testing.assert_array_equal(mixed[2], initial_vectors([[]], topic_model.vector_size)[0])
    assert not np.array_equal(mixed[0], initial_vectors([topic_docs[0].words], topic_model.vector_size)[0])


@pytest.mark.parametrize("extra", [dict(context="mean"), dict(context="attention", doc_share=0.3)])
def test_schedule_arguments_are_used(topic_docs, extra) -> None:
    model = Doc2Vec(topic_docs, **{**TOPIC_SETTINGS, "epochs": 5, **extra})
    words = topic_docs[0].words
    default = model.infer_vector(words)
    np.testing.assert_array_equal(default, model.infer_vector(words, epochs=model.epochs, alpha=model.alpha))
    assert not np.allclose(default, model.infer_vector(words, epochs=2))
    assert not np.allclose(default, model.infer_vector(words, alpha=model.alpha / 4))


def test_default_attention_infers_by_a_forward_pass(topic_model, topic_docs) -> None:
    """With no free document vector (attention's default), a document's vector is its attention-pooled words:
    inferring a training document gives exactly its trained vector, whatever the schedule."""
    assert topic_model.module.layer.document_shares()[0] == 0
    inferred = topic_model.infer_vectors([d.words for d in topic_docs[:5]], epochs=1, alpha=0.5)
    np.testing.assert_allclose(inferred, topic_model.dv.vectors[:5], rtol=1e-5, atol=1e-6)


def test_infer_function_returns_a_tensor_on_the_module_device(topic_model, topic_docs) -> None:
    out = infer(topic_model.module, topic_model.vocab, topic_model.config, [topic_docs[1].words],
                epochs=3, alpha=topic_model.alpha, min_alpha=0.001, progress=False)
    assert isinstance(out, torch.Tensor) and out.device == topic_model.device
    tensor = topic_model.infer_vectors([topic_docs[1]], return_tensor=True, epochs=3, min_alpha=0.001)
    torch.testing.assert_close(tensor, out)  # a TaggedDocument's words are used


# ------------------------------------------------------------------------------------------------
# Errors


def test_a_string_instead_of_tokens_is_refused(topic_model) -> None:
    with pytest.raises(TypeError, match=r"must be a list of tokens \(not str 'fruit1 fruit2'\); split it first"):
        topic_model.infer_vector("fruit1 fruit2")
    with pytest.raises(TypeError, match=r"infer_vectors expects a list of token lists, not a string"):
        topic_model.infer_vectors("fruit1 fruit2")
    with pytest.raises(TypeError, match=r"Document #1 to infer must be a list of tokens"):
        topic_model.infer_vectors([["fruit1"], "fruit2 the1"])
    with pytest.raises(TypeError, match=r"Document #0 to infer must be a list of tokens"):
        topic_model.infer_vectors([TaggedDocument("fruit1 fruit2", [0])])


def test_inference_before_build_vocab_names_the_fix() -> None:
    with pytest.raises(RuntimeError, match=r"Cannot infer_vectors before the vocabulary is built: call "
                                           r"model.build_vocab\(documents\) first"):
        Doc2Vec(vector_size=8).infer_vector(["a"])


@pytest.mark.slow
@pytest.mark.parametrize("settings", [dict(backend="torch"), dict(dm=0), dict(context="mean"), dict(context="sum")],
                         ids=["torch-backend", "dbow", "mean", "sum"])
def test_lee_inferred_vectors_find_their_document_in_every_mode(lee_docs, lee_settings, self_rank, settings) -> None:
    model = Doc2Vec(lee_docs, **(lee_settings | settings))
    tags = list(range(0, len(lee_docs), 3))
    vectors = model.infer_vectors([lee_docs[i].words for i in tags])
    assert self_rank(model, vectors, tags, topn=3) >= 0.9
