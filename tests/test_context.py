"""The context designs of attn_doc2vec.context: interface, uniform start, gradients, fast path, pooling."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_doc2vec import Doc2Vec, Doc2VecConfig
from attn_doc2vec.attention import extract
from attn_doc2vec.batching import DeviceCorpus, Sampler
from attn_doc2vec.context import LAYERS, build_layer, masked_softmax, pooled_documents
from attn_doc2vec.corpus import encode
from attn_doc2vec.fused_layers import LayerFusedStep
from attn_doc2vec.model import Batch
from attn_doc2vec.training import AutogradStep

DESIGNS = sorted(LAYERS)
SMALL = dict(vector_size=8, window=2, min_count=1, epochs=3, seed=3, device="cpu")


def trained(topic_docs, context: str, **extra) -> Doc2Vec:
    model = Doc2Vec(context=context, **(SMALL | dict(backend="torch") | extra))
    model.build_vocab(topic_docs[:12])
    model.train(topic_docs[:12], total_examples=len(topic_docs[:12]), epochs=3, progress=False)
    return model


def batch_of(model: Doc2Vec, docs, n: int = 24, seed: int = 0) -> Batch:
    corpus = DeviceCorpus.from_encoded(encode(docs, model.vocab), torch.device("cpu"))
    sampler = Sampler.from_vocab(model.vocab, model.config, torch.Generator().manual_seed(seed))
    sampler.pool_sample, sampler.pool_group = model.module.layer.pool_sample, model.config.pool_group
    return sampler.pvdm_batch(corpus, torch.randperm(len(corpus), generator=torch.Generator().manual_seed(seed))[:n])


def example(batch: Batch, i: int) -> Batch:
    """Example ``i`` of ``batch`` as a batch of one (with its own document sample)."""
    pool = ("pool_words", "pool_mask", "pool_index")
    fields = {k: None if v is None else v[i:i + 1] for k, v in batch.__dict__.items() if k not in pool}
    if batch.pool_words is not None:
        r = i if batch.pool_index is None else int(batch.pool_index[i])
        fields |= dict(pool_words=batch.pool_words[r:r + 1], pool_mask=batch.pool_mask[r:r + 1])
    return Batch(**fields)


@pytest.mark.parametrize("context, extra", [(c, {}) for c in DESIGNS] + [("attention", dict(doc_share=0.3)),
    ("attention", dict(attention_parts="document")), ("attention", dict(attention_parts="context")),
    ("attention", dict(context_scores="word")), ("attention", dict(context_scores="shared")),
    ("attention", dict(pool_group=1)), ("attention", dict(pool_loss=0.7, pool_group=1))])
def test_fused_kernel_equals_the_autograd_reference(topic_docs, context, extra):
    """update_rule="example": the hand-written Numba gradients and Adagrad steps equal autograd's, example by
    example."""
    model = trained(topic_docs, context, **extra)
    batch = batch_of(model, topic_docs[:12])
    ref, fast = copy.deepcopy(model.module), copy.deepcopy(model.module)
    step = AutogradStep(ref, ref.doc_vectors.data, True, attention_alpha=2.0)
    loss_ref = sum(float(step(example(batch, i), 0.05)) for i in range(batch.outputs.shape[0]))
    fused = LayerFusedStep(fast, fast.doc_vectors.data, True, attention_alpha=2.0, update_rule="example")
    loss_fast = fused(batch, 0.05)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-5)
    moved = 0.0
    for (name, a), b in zip(ref.state_dict().items(), fast.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
        moved += float((a - model.module.state_dict()[name]).abs().sum())
    assert moved > 0  # the step did something


@pytest.mark.parametrize("context", DESIGNS)
def test_fused_inference_step_updates_only_the_documents(topic_docs, context):
    model = trained(topic_docs, context, doc_share=0.3)  # attention's default has no free document vector
    batch = batch_of(model, topic_docs[:12])
    before = copy.deepcopy(model.module.state_dict())
    docs = model.module.doc_vectors.data.clone()
    LayerFusedStep(model.module, docs, update_shared=False)(batch, 0.05)
    for name, value in model.module.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(docs, model.module.doc_vectors.data)


@pytest.mark.parametrize("context", DESIGNS)
def test_untrained_layer_gives_uniform_attention(topic_docs, context):
    model = Doc2Vec(context=context, **SMALL)
    model.build_vocab(topic_docs[:12])
    batch = batch_of(model, topic_docs[:12])
    p = model.module.attention(batch)
    valid = batch.word_mask.float()
    torch.testing.assert_close(p, valid / valid.sum(1, keepdim=True).clamp(min=1))


@pytest.mark.parametrize("context", DESIGNS)
def test_learned_attention_moves_and_uniform_twin_stays(topic_docs, context):
    learned = trained(topic_docs, context)
    twin = trained(topic_docs, context, uniform_attention=True)
    assert learned.module.layer.learned and not twin.module.layer.learned
    layer = learned.module.layer
    for name, p in layer.named_parameters():  # what learns moves; what the settings freeze stays at zero
        assert (float(p.abs().max()) > 1e-3) == (name in layer.learnable()), name
    if context == "attention":  # attention_parts: the other part stays uniform
        for parts, frozen in (("document", ("row_context", "position_bias")),
                              ("context", ("row_salience", "position_bias"))):
            model = trained(topic_docs, context, attention_parts=parts)
            for name, p in model.module.layer.named_parameters():
                assert (float(p.abs().max()) == 0.0) == (name in frozen), (parts, name)
    assert all(float(p.abs().max()) == 0.0 for p in twin.module.layer.parameters())
    batch = batch_of(learned, topic_docs[:12])
    p = learned.module.attention(batch)
    valid = batch.word_mask.float()
    assert not torch.allclose(p, valid / valid.sum(1, keepdim=True).clamp(min=1), atol=1e-3)


def test_weights_sum_to_one_and_document_share(topic_docs):
    """attention: the document, context and pooled words share h as configured."""
    model = trained(topic_docs, "attention", doc_share=0.2, pool_share=0.3)
    batch = batch_of(model, topic_docs[:12])
    a = model.module.weights(batch)
    full = batch.word_mask.any(1)
    torch.testing.assert_close(a[full, 0], torch.full((int(full.sum()),), 0.2))
    torch.testing.assert_close(a[full, 1:].sum(1), torch.full((int(full.sum()),), 0.5))


def test_pooled_documents_equals_a_per_document_softmax():
    torch.manual_seed(0)
    layer = build_layer(Doc2VecConfig(vector_size=4, window=2).validate(), n_words=30)
    layer.row_salience.data.normal_()
    words = torch.randn(30, 4)
    lengths = [5, 1, 0, 12, 3]
    tokens = torch.randint(0, 30, (sum(lengths),))
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]))
    got = pooled_documents(layer, words, tokens, offsets, chunk_tokens=6)  # several chunks
    for i, n in enumerate(lengths):
        rows = tokens[offsets[i]:offsets[i] + n]
        want = (torch.softmax(layer.row_salience.data[rows], 0)[:, None] * words[rows]).sum(0) if n else torch.zeros(4)
        torch.testing.assert_close(got[i], want)


def test_pooled_documents_with_heads_pools_each_slice_with_its_own_softmax():
    """pool_heads=2: head h's softmax over the document's words weighs slice h of their vectors; the Numba
    pooling agrees."""
    from attn_doc2vec.fused_layers import pooled_documents_cpu

    torch.manual_seed(0)
    layer = build_layer(Doc2VecConfig(vector_size=6, window=2, pool_heads=2).validate(), n_words=30)
    assert layer.row_salience.shape == (30, 2)
    layer.row_salience.data.normal_(std=2.0)
    words = torch.randn(30, 6)
    lengths = [5, 1, 0, 12, 3]
    tokens = torch.randint(0, 30, (sum(lengths),))
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]))
    got = pooled_documents(layer, words, tokens, offsets, chunk_tokens=6)
    for i, n in enumerate(lengths):
        rows = tokens[offsets[i]:offsets[i] + n]
        want = torch.zeros(6)
        for h, part in enumerate((slice(0, 3), slice(3, 6))):
            if n:
                want[part] = (torch.softmax(layer.row_salience.data[rows, h], 0)[:, None] * words[rows, part]).sum(0)
        torch.testing.assert_close(got[i], want)
    torch.testing.assert_close(pooled_documents_cpu(layer, words, tokens, offsets, threads=64), got)
    one_head = build_layer(Doc2VecConfig(vector_size=6, window=2).validate(), n_words=30)
    one_head.row_salience.data.copy_(layer.row_salience.data[:, 0])
    assert not torch.allclose(pooled_documents(one_head, words, tokens, offsets), got)  # the heads differ


def test_pool_heads_learn_their_own_scores(topic_docs, tmp_path):
    """Trained with pool_heads=2 (the Numba batch rule) the heads' scores move apart from their common zero
    start, the model saves and loads them, and its documents' vectors are the two slices' pooling."""
    model = trained(topic_docs, "attention", pool_heads=2, backend="numba", epochs=5)
    scores = model.module.layer.row_salience.data
    assert scores.shape == (len(model.wv), 2) and float(scores.abs().max()) > 0
    assert float((scores[:, 0] - scores[:, 1]).abs().max()) > 1e-3
    encoded = encode(topic_docs[:12], model.vocab)
    want = pooled_documents(model.module.layer, model.module.word_vectors.data, torch.from_numpy(encoded.tokens),
                            torch.from_numpy(encoded.offsets))
    np.testing.assert_allclose(model.dv.vectors, want.numpy(), rtol=1e-4, atol=1e-6)
    att = extract(model.module, model.vocab, encoded)[3]  # a document's attention over its words: heads averaged
    assert att.document_attention.sum() == pytest.approx(1.0, abs=1e-5)
    words = encoded.tokens[encoded.offsets[3]:encoded.offsets[4]].astype(np.int64)
    per_head = torch.softmax(scores[words], 0).mean(1).numpy()
    np.testing.assert_allclose(att.document_attention, per_head, rtol=1e-5, atol=1e-7)
    model.save(Path(tmp_path) / "m")
    again = Doc2Vec.load(Path(tmp_path) / "m", device="cpu")
    assert again.config.pool_heads == 2 and torch.equal(again.module.layer.row_salience, scores)


def test_bad_pool_heads_are_refused():
    with pytest.raises(ValueError, match="must divide vector_size"):
        Doc2VecConfig(vector_size=10, pool_heads=3).validate()
    with pytest.raises(ValueError, match="update_rule='batch'"):
        Doc2VecConfig(pool_heads=2, update_rule="example").validate()
    with pytest.raises(ValueError, match="context_scores='word'"):
        Doc2VecConfig(pool_heads=2, context_scores="shared").validate()


def test_masked_softmax_handles_empty_rows():
    p = masked_softmax(torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]), torch.tensor([[True, False, True],
                                                                                      [False, False, False]]))
    torch.testing.assert_close(p[0], torch.softmax(torch.tensor([1.0, 3.0]), 0)[[0, 0, 1]] * torch.tensor([1, 0, 1.]))
    assert torch.equal(p[1], torch.zeros(3))


def test_attention_document_vectors_mix_free_and_pooled(topic_docs):
    model = trained(topic_docs, "attention")
    module = model.module
    s_d, s_p = module.layer.document_shares()
    want = (s_d * module.doc_vectors.data + s_p * module.pooled_docs) / (s_d + s_p)
    np.testing.assert_allclose(model.dv.vectors, want.numpy(), rtol=1e-6)
    assert float(module.pooled_docs.abs().sum()) > 0


def test_default_design_separates_topics_and_infers_its_own_documents(topic_docs, self_rank, topic_label):
    """The default (attention, numba backend) on the two-topic corpus: inference finds its documents."""
    model = Doc2Vec(topic_docs, vector_size=16, epochs=20, min_count=1, sample=0.0, batch_size=256, seed=1,
                    device="cpu")
    assert model.config.context == "attention" and model.config.alpha == 0.1
    inferred = model.infer_vectors([d.words for d in topic_docs[:30]])
    assert self_rank(model, inferred, [d.tags[0] for d in topic_docs[:30]]) >= 0.8
    sims = model.dv.most_similar(0, topn=10)
    assert sum(topic_label(tag) == topic_label(0) for tag, _ in sims) >= 8


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_same_seed_same_result(topic_docs, backend):
    runs = [trained(topic_docs, "attention", backend=backend).module.state_dict() for _ in range(2)]
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name


def test_checkpoint_round_trip_of_a_layer_design(topic_docs, tmp_path):
    model = trained(topic_docs, "attention")
    model.save(tmp_path / "m")
    again = Doc2Vec.load(tmp_path / "m", device="cpu")
    assert again.config.context == "attention" and again.module.pools_documents
    for name, value in model.module.state_dict().items():
        assert torch.equal(value, again.module.state_dict()[name]), name
    np.testing.assert_array_equal(again.dv.vectors, model.dv.vectors)
    again.train(topic_docs[:12], total_examples=12, epochs=1, progress=False)  # and training continues


def test_bad_shares_are_refused():
    with pytest.raises(ValueError, match=r"doc_share \+ pool_share < 1"):
        Doc2VecConfig(doc_share=0.6, pool_share=0.5).validate()
    with pytest.raises(ValueError, match=r"'pool_sample' parameter must be an int >= 1"):
        Doc2VecConfig(pool_sample=0).validate()


@pytest.mark.parametrize("context, extra", [(c, {}) for c in DESIGNS] + [("attention", dict(doc_share=0.3)),
    ("attention", dict(attention_parts="document")), ("attention", dict(context_scores="word+position")),
    ("attention", dict(context_scores="shared")), ("attention", dict(pool_group=1)),
    ("attention", dict(pool_group=4, doc_share=0.3, context_scores="shared")),
    ("attention", dict(pool_loss=0.7)), ("attention", dict(pool_loss=0.7, pool_group=1)),
    ("attention", dict(pool_heads=4)), ("attention", dict(pool_heads=2, pool_group=1, doc_share=0.3))])
def test_fused_batch_rule_equals_the_autograd_reference_on_whole_batches(topic_docs, context, extra):
    """update_rule="batch": the Numba kernel sums the batch's gradients per row and steps once, as AutogradStep."""
    model = trained(topic_docs, context, **extra)
    ref, fast = copy.deepcopy(model.module), copy.deepcopy(model.module)
    step_ref = AutogradStep(ref, ref.doc_vectors.data, True, attention_alpha=2.0)
    step_fast = LayerFusedStep(fast, fast.doc_vectors.data, True, attention_alpha=2.0, update_rule="batch")
    for seed, n in ((0, 24), (1, 40), (2, 7)):  # several batches: the row maps must be reset between steps
        batch = batch_of(model, topic_docs[:12], n=n, seed=seed)
        if model.config.pool_group > 1 and model.module.pools_documents:  # a document's examples share one sample
            assert batch.pool_index is not None and batch.pool_words.shape[0] < n
        assert step_fast(batch, 0.05) == pytest.approx(float(step_ref(batch, 0.05)), rel=1e-5)
    moved = 0.0
    for (name, a), b in zip(ref.state_dict().items(), fast.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
        moved += float((a - model.module.state_dict()[name]).abs().sum())
    assert moved > 0


def test_cpu_pooling_kernel_equals_the_reference():
    """The Numba pooling (inference's forward pass, model.dv after each epoch) equals pooled_documents."""
    from attn_doc2vec.fused_layers import pooled_documents_cpu

    torch.manual_seed(1)
    layer = build_layer(Doc2VecConfig(vector_size=6, window=2).validate(), n_words=40)
    layer.row_salience.data.normal_(std=3.0)
    words = torch.randn(40, 6)
    lengths = [5, 1, 0, 30, 3, 0, 9]
    tokens = torch.randint(0, 40, (sum(lengths),))
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]))
    want = pooled_documents(layer, words, tokens, offsets)
    torch.testing.assert_close(pooled_documents_cpu(layer, words, tokens, offsets, threads=64), want)
    assert (want[[2, 5]] == 0).all() and (want.abs().sum(1)[[0, 1, 3, 4, 6]] > 0).all()


@pytest.mark.parametrize("context", ["attention", "docquery", "docloss"])
def test_batch_rule_gives_the_same_tables_on_any_thread_count(topic_docs, context):
    """The batch rule's examples run on all threads, their sums in batch order: 1 and 2 threads agree exactly."""
    one = trained(topic_docs, context, backend="numba", workers=1)
    two = trained(topic_docs, context, backend="numba", workers=2)
    for (name, a), b in zip(one.module.state_dict().items(), two.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_pool_loss_adds_the_pooled_words_own_prediction_loss(topic_docs):
    """pool_loss = w: the loss is the PV-DM loss plus w times the pooled vector alone predicting the target."""
    model = trained(topic_docs, "attention", pool_loss=0.7)
    batch = batch_of(model, topic_docs[:12])
    module = model.module
    rows = module.gather(batch)
    loss, out = module.layer_loss(batch, rows)
    v, keep = rows["outputs"], batch.output_mask.float()
    sign = torch.ones_like(keep)
    sign[:, 1:] = -1.0
    plain = (torch.nn.functional.softplus(-sign * torch.einsum("bd,bkd->bk", out.h, v)) * keep).sum()
    pooled = torch.einsum("rp,rpd->rd", masked_softmax(module.layer.row_salience[batch.pool_words], batch.pool_mask),
                          rows["pool"])[batch.pool_index]
    own = (torch.nn.functional.softplus(-sign * torch.einsum("bd,bkd->bk", pooled, v)) * keep).sum()
    assert float(own) > 0
    assert float(loss) == pytest.approx(float(plain + 0.7 * own), rel=1e-5)
    with pytest.raises(ValueError, match="pool_loss"):
        Doc2VecConfig(pool_loss=-1.0).validate()
