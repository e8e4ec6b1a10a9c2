"""Shared fixtures: corpora and small trained models, each built once per test session.

Session-scoped models are shared by many tests: a test must never train, modify or save
over them in place (copy with ``save``/``load`` or build its own small model instead).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from gensim.test.utils import datapath
from gensim.utils import simple_preprocess

from attn_doc2vec import Doc2Vec, TaggedDocument

# The test machine is small and shared: PyTorch's default of one thread per core spins
# against other processes and makes tiny batches up to 100x slower. One thread is also the
# most reproducible setting.
torch.set_num_threads(1)

LEE_SETTINGS = dict(vector_size=32, epochs=40, min_count=2, device="cpu", seed=1)
# A tiny corpus (3,600 tokens) needs small batches to get more than a handful of SGD steps per epoch.
TOPIC_SETTINGS = dict(vector_size=16, epochs=40, min_count=1, sample=0.0, batch_size=256, device="cpu", seed=1)


def two_topic_corpus(n_docs: int = 60, length: int = 60, seed: int = 0, start_tag: int = 0) -> list[TaggedDocument]:
    """A synthetic corpus: even documents are about fruit, odd ones about engines.

    Every document draws 30% of its tokens from three "focus" words of its own (so that each
    document can be told apart from the others on its topic), 45% from its topic's 40 words
    and 25% from 10 function words shared by both topics. Tags are ``start_tag + i``.
    """
    rng = random.Random(seed)
    topics = ([f"fruit{i}" for i in range(40)], [f"engine{i}" for i in range(40)])
    shared = [f"the{i}" for i in range(10)]
    docs = []
    for i in range(n_docs):
        pool = topics[i % 2]
        focus = rng.sample(pool, 3)
        words = []
        for _ in range(length):
            r = rng.random()
            words.append(rng.choice(focus) if r < 0.3 else rng.choice(pool) if r < 0.75 else rng.choice(shared))
        docs.append(TaggedDocument(words, [start_tag + i]))
    return docs


def topic_of(tag: int) -> int:
    """The topic (0: fruit, 1: engines) of document ``tag`` in :func:`two_topic_corpus`."""
    return tag % 2


@pytest.fixture(scope="session")
def make_topic_corpus():
    """The :func:`two_topic_corpus` factory, for tests that need fresh or differently sized corpora."""
    return two_topic_corpus


@pytest.fixture(scope="session")
def topic_docs() -> list[TaggedDocument]:
    """60 documents of 60 tokens on two topics (see :func:`two_topic_corpus`)."""
    return two_topic_corpus()


@pytest.fixture(scope="session")
def topic_model(topic_docs) -> Doc2Vec:
    """Attentive PV-DM trained on :func:`topic_docs` (under a second). Do not modify."""
    return Doc2Vec(topic_docs, **TOPIC_SETTINGS)


@pytest.fixture(scope="session")
def lee_docs() -> list[TaggedDocument]:
    """gensim's Lee background corpus (300 news stories), tokenized with simple_preprocess, tag = line number."""
    with open(datapath("lee_background.cor"), encoding="latin-1") as f:
        return [TaggedDocument(simple_preprocess(line), [i]) for i, line in enumerate(f)]


@pytest.fixture(scope="session")
def lee_settings() -> dict:
    """The settings of :func:`lee_model` (gensim's Lee tutorial, with smaller vectors)."""
    return dict(LEE_SETTINGS)


@pytest.fixture(scope="session")
def lee_model(lee_docs) -> Doc2Vec:
    """Attentive PV-DM trained on the Lee corpus (about 10 s on one core). Do not modify."""
    return Doc2Vec(lee_docs, **LEE_SETTINGS)


LEE_INFERRED = list(range(0, 300, 3))  # the Lee documents inferred by ``lee_inferred``


@pytest.fixture(scope="session")
def lee_inferred(lee_model, lee_docs) -> tuple[list[int], np.ndarray]:
    """Tags and ``infer_vectors`` (one batched call) of 100 Lee training documents, ``(100, 32)``."""
    return LEE_INFERRED, lee_model.infer_vectors([lee_docs[i].words for i in LEE_INFERRED])


@pytest.fixture
def small_model(topic_docs) -> Doc2Vec:
    """A fresh, briefly trained attentive PV-DM model that a test may train, save or modify."""
    return Doc2Vec(topic_docs[:20], vector_size=8, epochs=2, min_count=1, device="cpu", seed=3)


def self_rank_fraction(model: Doc2Vec, vectors: np.ndarray, tags: list, topn: int = 3) -> float:
    """Fraction of ``vectors[i]`` whose ``topn`` most similar document vectors include ``tags[i]``."""
    hits = 0
    for vector, tag in zip(vectors, tags, strict=True):
        hits += tag in [t for t, _ in model.dv.most_similar([vector], topn=topn)]
    return hits / len(tags)


@pytest.fixture(scope="session")
def self_rank():
    """:func:`self_rank_fraction`, as a fixture."""
    return self_rank_fraction


@pytest.fixture(scope="session")
def topic_label():
    """:func:`topic_of`, as a fixture."""
    return topic_of
