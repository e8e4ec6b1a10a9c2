"""Corpus stores: the encoded corpus on disk, written in one pass, trained from by memory map."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attn_doc2vec import Doc2Vec, TaggedDocument
from attn_doc2vec.corpus import encode
from attn_doc2vec.store import open_corpus_store, write_corpus_store

SETTINGS = dict(vector_size=12, window=2, min_count=2, epochs=2, seed=5, device="cpu", workers=1)


@pytest.fixture
def built(topic_docs) -> Doc2Vec:
    model = Doc2Vec(**SETTINGS)
    model.build_vocab(topic_docs)
    return model


def test_a_store_holds_the_encoded_corpus_as_plain_numpy_files(built, topic_docs, tmp_path) -> None:
    docs = [*topic_docs[:30], TaggedDocument(["no-such-word"], [30])]  # a document with no known word too
    path = built.write_corpus_store(tmp_path / "store", docs)
    expected = encode(docs, built.vocab)
    np.testing.assert_array_equal(np.load(path / "tokens.npy"), expected.tokens)  # readable by any numpy
    np.testing.assert_array_equal(np.load(path / "offsets.npy"), expected.offsets)
    np.testing.assert_array_equal(np.load(path / "tags.npy"), expected.tags)
    header = json.loads((path / "store.json").read_text())
    assert (header["documents"], header["tokens"], header["raw_words"]) == (31, len(expected.tokens),
                                                                           expected.raw_words)
    mapped = open_corpus_store(path, built.vocab)
    assert isinstance(mapped.tokens, np.memmap) and mapped.raw_words == expected.raw_words
    np.testing.assert_array_equal(mapped.tokens, expected.tokens)
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no partial directory left behind


@pytest.mark.parametrize("backend, epoch_block", [("numba", 0), ("torch", 0), ("numba", 700)])
def test_training_from_a_store_equals_training_from_the_documents(topic_docs, tmp_path, backend, epoch_block,
                                                                   monkeypatch) -> None:
    """Bit for bit, whole epochs or in blocks; in blocks the store's mapped pages are let go after each block
    is gathered (and the tokens read again from the file are the same)."""
    from attn_doc2vec import training

    released = []
    original = training.page_releaser

    def counting(array):
        release = original(array)
        if release is None:
            return None
        return lambda: (released.append(1), release())

    monkeypatch.setattr(training, "page_releaser", counting)
    settings = {**SETTINGS, "epoch_block": epoch_block}
    direct = Doc2Vec(**settings, backend=backend)
    direct.build_vocab(topic_docs)
    direct.train(topic_docs, total_examples=direct.corpus_count, epochs=2)
    assert not released  # tokens in memory: nothing to let go
    stored = Doc2Vec(**settings, backend=backend)
    stored.build_vocab(topic_docs)
    stored.write_corpus_store(tmp_path / "store", topic_docs)
    stored.train(corpus_store=tmp_path / "store", total_examples=stored.corpus_count, epochs=2)
    # 60 documents of 60 words: 5 blocks of 12 an epoch, each gathered to be counted and to be trained, then pooled
    assert len(released) == (0 if not epoch_block else 2 * (2 * 5 + 1))
    np.testing.assert_array_equal(stored.dv.vectors, direct.dv.vectors)
    np.testing.assert_array_equal(stored.wv.vectors, direct.wv.vectors)
    assert stored.loss_history == direct.loss_history


def test_a_store_after_load_and_its_refusals(built, topic_docs, tmp_path) -> None:
    path = built.write_corpus_store(tmp_path / "store", topic_docs)
    built.save(tmp_path / "model")
    loaded = Doc2Vec.load(tmp_path / "model")
    loaded.train(corpus_store=path, total_examples=len(topic_docs), epochs=1)  # another process, the same rows
    assert loaded.epochs_trained == 1
    with pytest.raises(TypeError, match="not both"):
        loaded.train(topic_docs, corpus_store=path, total_examples=len(topic_docs), epochs=1)
    other = Doc2Vec(**SETTINGS)
    other.build_vocab(topic_docs[:40])  # 40 tags, not 60: the rows mean other keys
    with pytest.raises(ValueError, match="written with another vocabulary.*write it again"):
        other.train(corpus_store=path, total_examples=len(topic_docs), epochs=1)
    with pytest.raises(FileExistsError, match="exists"):
        built.write_corpus_store(path, topic_docs)  # never overwritten
    with pytest.raises(FileNotFoundError, match="not a corpus store"):
        open_corpus_store(tmp_path / "model")
    header = json.loads((path / "store.json").read_text())
    (path / "store.json").write_text(json.dumps(header | {"tokens": header["tokens"] + 1}))
    with pytest.raises(ValueError, match="damaged"):
        open_corpus_store(path)


def test_an_interrupted_write_leaves_nothing_at_the_path(built, topic_docs, tmp_path) -> None:
    def documents():
        yield from topic_docs[:10]
        raise KeyboardInterrupt  # Ctrl-C in the middle of the corpus

    with pytest.raises(KeyboardInterrupt):
        write_corpus_store(documents(), built.vocab, tmp_path / "store")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyError, match="not in the model's vocabulary"):
        built.write_corpus_store(tmp_path / "store", [TaggedDocument(["apple"], ["unknown-tag"])])
    assert list(tmp_path.iterdir()) == []
