"""The PyTorch path on a CUDA device: the same step as on the CPU, reproducible, portable checkpoints.

Skipped where no CUDA device is present (CI has none); ``scripts/device_check.sh`` runs them on a lent GPU.
"""

from __future__ import annotations

import copy

import matplotlib
import numpy as np
import pytest
import torch

from attn_doc2vec import Doc2Vec, TaggedDocument
from attn_doc2vec.batching import DeviceCorpus, Sampler
from attn_doc2vec.corpus import encode
from attn_doc2vec.model import Batch
from attn_doc2vec.training import AutogradStep

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL = dict(vector_size=16, window=2, min_count=1, sample=0.0, batch_size=256, epochs=5, seed=3)


def trained(docs, **extra) -> Doc2Vec:
    model = Doc2Vec(**(SMALL | extra))
    model.build_vocab(docs)
    model.train(docs, total_examples=model.corpus_count, epochs=model.epochs, progress=False)
    return model


def to(batch: Batch, device: str) -> Batch:
    return Batch(**{k: None if v is None else v.to(device) for k, v in batch.__dict__.items()})


@pytest.mark.parametrize("context, extra", [("attention", {}), ("attention", dict(doc_share=0.3)),
                                            ("docquery", {}), ("docloss", {})])
def test_cuda_step_equals_the_cpu_step(topic_docs, context, extra):
    """One autograd step on the GPU moves every table as the same step on the CPU (float rounding aside)."""
    model = trained(topic_docs[:20], context=context, device="cpu", backend="torch", **extra)
    corpus = DeviceCorpus.from_encoded(encode(topic_docs[:20], model.vocab), torch.device("cpu"))
    sampler = Sampler.from_vocab(model.vocab, model.config, torch.Generator().manual_seed(0))
    sampler.pool_sample = model.module.layer.pool_sample
    batch = sampler.pvdm_batch(corpus, torch.randperm(len(corpus), generator=torch.Generator().manual_seed(0))[:200])
    cpu, gpu = copy.deepcopy(model.module), copy.deepcopy(model.module).to("cuda")
    loss_cpu = AutogradStep(cpu, cpu.doc_vectors.data, True, attention_alpha=1.0)(batch, 0.05)
    loss_gpu = AutogradStep(gpu, gpu.doc_vectors.data, True, attention_alpha=1.0)(to(batch, "cuda"), 0.05)
    assert float(loss_gpu) == pytest.approx(float(loss_cpu), rel=1e-5)
    moved = 0.0
    for (name, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values(), strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5, msg=name)
        moved += float((a - model.module.state_dict()[name]).abs().sum())
    assert moved > 0


@pytest.mark.parametrize("params", [dict(), dict(context="mean"), dict(dm=0), dict(dm=0, dbow_words=1)])
def test_same_seed_same_result_on_cuda(topic_docs, params):
    a = trained(topic_docs, device="cuda", **params)
    b = trained(topic_docs, device="cuda", **params)
    assert a.device.type == "cuda"
    np.testing.assert_array_equal(a.dv.vectors, b.dv.vectors)
    np.testing.assert_array_equal(a.wv.vectors, b.wv.vectors)
    c = trained(topic_docs, device="cuda", **(params | dict(seed=4)))
    assert not np.array_equal(a.dv.vectors, c.dv.vectors)


def test_cuda_model_learns_the_topics(topic_docs):
    """The default design trained on the GPU puts a document nearest to documents of its own topic."""
    model = trained(topic_docs, device="cuda", epochs=40)
    vectors = model.dv.vectors / np.linalg.norm(model.dv.vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.argmax(1)
    topics = np.array([int(model.dv.index_to_key[i]) % 2 for i in range(len(vectors))])
    assert (topics[nearest] == topics).mean() >= 0.9


def test_cuda_checkpoint_loads_on_the_cpu_and_infers_the_same(topic_docs, tmp_path):
    model = trained(topic_docs, device="cuda")
    model.save(tmp_path / "m")
    on_cpu = Doc2Vec.load(tmp_path / "m", device="cpu")
    assert on_cpu.device.type == "cpu"
    np.testing.assert_allclose(on_cpu.dv.vectors, model.dv.vectors)
    words = topic_docs[3].words
    # the default design infers by a forward pass: the two devices agree up to float rounding
    np.testing.assert_allclose(on_cpu.infer_vector(words), model.infer_vector(words), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.infer_vector(words), model.dv[topic_docs[3].tags[0]], rtol=1e-4, atol=1e-5)


def test_readme_snippet_on_the_gpu(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    documents = [TaggedDocument(words=["I", "love", "Gensim"], tags=["1"]),
                 TaggedDocument(words=["Gensim", "is", "great"], tags=["2"])]
    model = Doc2Vec(window=2, min_count=1, epochs=100)
    model.build_vocab(documents)
    assert model.device.type == "cuda"  # device="auto" picks the GPU
    model.train(documents, total_examples=model.corpus_count, epochs=model.epochs,
                compute_loss=True, callbacks=[model.compute_weights])
    fig = model.visualize_attention(show=False)
    assert fig is not None and fig.axes
