"""The Numba backend against the PyTorch reference: one step, and whole training runs."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

pytest.importorskip("numba")

from attn_doc2vec.fused import FusedStep  # noqa: E402
from attn_doc2vec.model import Batch, Doc2VecModule  # noqa: E402
from attn_doc2vec.training import apply_update  # noqa: E402

MODES = [(1, "wordpos"), (1, "mean"), (1, "sum"), (0, "mean")]  # (dm, context); dm=0 is PV-DBOW
TABLES = ["doc_vectors", "word_vectors", "output_vectors", "word_scores", "position_scores"]


def random_module(dm: int, context: str, n_words: int = 7, n_docs: int = 3, dim: int = 16,
                  window: int = 3, doc_share: float | None = None) -> Doc2VecModule:
    """A module whose every table is random, so that every gradient is non-trivial."""
    share = {} if doc_share is None else {"doc_share": doc_share}
    module = Doc2VecModule(n_words, n_docs, dim, window, context, dm, **share)
    gen = torch.Generator().manual_seed(0)
    for table in module.parameters():
        table.data.copy_(torch.randn(table.shape, generator=gen) * 0.5)
    return module


def random_batch(module: Doc2VecModule, n_batch: int, seed: int, n_tags: int = 2) -> Batch:
    """Examples drawn from tiny tables, so rows repeat many times; some padding everywhere."""
    gen = torch.Generator().manual_seed(seed)
    n_words, n_docs = module.word_vectors.shape[0], module.doc_vectors.shape[0]
    n_ctx = 2 * module.window if module.dm else 0
    n_tags = n_tags if module.dm else 1
    doc_slots = torch.randint(0, n_docs, (n_batch, n_tags), generator=gen)
    if n_tags > 1:
        doc_slots[:, 1:][torch.rand(n_batch, n_tags - 1, generator=gen) < 0.5] = -1
    words = torch.randint(0, n_words, (n_batch, n_ctx), generator=gen)
    word_mask = torch.rand(n_batch, n_ctx, generator=gen) < 0.7
    if n_ctx:
        word_mask[0] = False  # a window with no context word at all
    words[~word_mask] = 0
    outputs = torch.randint(0, n_words, (n_batch, 6), generator=gen)
    output_mask = outputs != outputs[:, :1]
    output_mask[:, 0] = True
    positions = torch.arange(n_ctx).expand(n_batch, n_ctx)
    return Batch(doc_slots=doc_slots, words=words, positions=positions, word_mask=word_mask,
                 outputs=outputs, output_mask=output_mask)


def reference_step(module: Doc2VecModule, batch: Batch, alpha: float, docs: torch.Tensor,
                   update_shared: bool, attention_alpha: float = 1.0, cap: int = 8) -> float:
    grads = module.gradients(batch, docs)
    apply_update(module, batch, grads, alpha, docs, update_shared, attention_alpha, cap)
    return float(grads.loss)


def assert_tables_close(a: Doc2VecModule, b: Doc2VecModule, atol: float = 2e-5) -> None:
    for name in TABLES:
        if hasattr(a, name):
            torch.testing.assert_close(getattr(a, name).data, getattr(b, name).data, rtol=1e-4, atol=atol,
                                       msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("dm,context,doc_share", [(*mode, None) for mode in MODES] + [
    pytest.param(1, context, 0.3, marks=pytest.mark.skipif(
        "doc_share" not in inspect.signature(Doc2VecModule).parameters, reason="no doc_share"))
    for context in ("wordpos", "mean")])
def test_step_equals_reference(dm: int, context: str, doc_share: float | None) -> None:
    ref = random_module(dm, context, doc_share=doc_share)
    fused = copy.deepcopy(ref)
    start = copy.deepcopy(ref)
    batch = random_batch(ref, 64, seed=1)
    loss_ref = reference_step(ref, batch, 0.05, ref.doc_vectors.data, True, 2.0)
    loss = FusedStep(fused, fused.doc_vectors.data, True, attention_alpha=2.0, cap=8)(batch, 0.05)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert_tables_close(ref, fused)
    for name in TABLES:  # the step really moved every table it trains
        if hasattr(ref, name) and not (dm == 0 and name == "word_vectors"):
            assert not torch.equal(getattr(start, name).data, getattr(fused, name).data), name


@pytest.mark.parametrize("dm,context", MODES)
def test_step_with_labelled_outputs_equals_reference(dm: int, context: str) -> None:
    """Hierarchical softmax gives every output a label (1 - code): the kernel follows the labels."""
    ref = random_module(dm, context)
    fused = copy.deepcopy(ref)
    batch = random_batch(ref, 64, seed=4)
    gen = torch.Generator().manual_seed(9)
    batch.output_labels = (torch.rand(batch.outputs.shape, generator=gen) < 0.4).to(torch.float32)
    loss_ref = reference_step(ref, batch, 0.05, ref.doc_vectors.data, True, 2.0)
    loss = FusedStep(fused, fused.doc_vectors.data, True, attention_alpha=2.0, cap=8)(batch, 0.05)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert_tables_close(ref, fused)


def test_dbow_step_with_skipgram_examples_equals_reference() -> None:
    """dbow_words=1: documents predicting words and, in the same batch, words predicting words (no document)."""
    ref = random_module(0, "mean")
    batch = random_batch(ref, 64, seed=6)
    gen = torch.Generator().manual_seed(8)
    n_docs = 40  # examples 40.. are skip-gram pairs: no document slot, one word slot
    batch.doc_slots[n_docs:] = -1
    batch.words = torch.randint(0, ref.word_vectors.shape[0], (64, 1), generator=gen)
    batch.word_mask = torch.arange(64)[:, None] >= n_docs
    batch.words[~batch.word_mask] = 0
    batch.positions = torch.zeros_like(batch.words)
    fused, start = copy.deepcopy(ref), copy.deepcopy(ref)
    loss_ref = reference_step(ref, batch, 0.05, ref.doc_vectors.data, True)
    loss = FusedStep(fused, fused.doc_vectors.data, True, cap=8)(batch, 0.05)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert_tables_close(ref, fused)
    moved = (fused.word_vectors.data != start.word_vectors.data).any(dim=1)
    assert torch.equal(moved, torch.bincount(batch.words[n_docs:, 0], minlength=moved.shape[0]) > 0)


@pytest.mark.parametrize("dm,context", MODES)
def test_inference_step_updates_only_the_given_documents(dm: int, context: str) -> None:
    ref = random_module(dm, context)
    fused = copy.deepcopy(ref)
    new_ref = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
    new_fused = new_ref.clone()
    batch = random_batch(ref, 32, seed=2, n_tags=1)
    reference_step(ref, batch, 0.1, new_ref, False, 1.0)
    FusedStep(fused, new_fused, False, cap=8)(batch, 0.1)
    torch.testing.assert_close(new_fused, new_ref, rtol=1e-4, atol=2e-5)
    assert_tables_close(ref, fused, atol=0.0)  # shared tables untouched
    assert torch.equal(ref.doc_vectors, random_module(dm, context).doc_vectors)


@pytest.mark.parametrize("cap", [8, 100_000])
@pytest.mark.parametrize("dm,context", [(1, "wordpos"), (0, "mean")])
def test_one_row_repeated_across_the_batch(dm: int, context: str, cap: int) -> None:
    """Hundreds of copies of one word and one document: capped (or, with a huge cap, summed) as the reference."""
    ref = random_module(dm, context)
    batch = random_batch(ref, 512, seed=3, n_tags=1)
    for field in (batch.doc_slots, batch.words):
        field.fill_(1)
    batch.outputs[:, 0] = 2  # every example predicts word 2
    batch.output_mask.copy_(batch.outputs != 2)
    batch.output_mask[:, 0] = True
    fused = copy.deepcopy(ref)
    reference_step(ref, batch, 0.01, ref.doc_vectors.data, True, cap=cap)
    FusedStep(fused, fused.doc_vectors.data, True, cap=cap)(batch, 0.01)
    assert_tables_close(ref, fused, atol=1e-4)


def test_thread_count_does_not_change_the_result() -> None:
    import numba

    modules = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        module = random_module(1, "wordpos", n_words=50, n_docs=20)
        step = FusedStep(module, module.doc_vectors.data, True, cap=8, threads=threads)
        for seed in range(3):
            step(random_batch(module, 200, seed=seed), 0.05)
        modules.append(module)
    for name in TABLES:
        assert torch.equal(getattr(modules[0], name), getattr(modules[1], name)), name


def test_refuses_tables_it_cannot_share() -> None:
    module = random_module(1, "mean")
    with pytest.raises(ValueError, match="backend='torch'"):
        FusedStep(module, module.doc_vectors.data.double(), True)


@pytest.mark.parametrize("dm,context,extra", [(*mode, {}) for mode in MODES] + [
    (0, "mean", dict(hs=1, negative=0)), (1, "mean", dict(hs=1, negative=0)), (1, "wordpos", dict(hs=1, negative=3)),
    (0, "mean", dict(dbow_words=1)), (0, "mean", dict(dbow_words=1, hs=1, negative=2))])
def test_training_and_inference_match_the_torch_backend(make_topic_corpus, dm: int, context: str,
                                                        extra: dict) -> None:
    """Both backends consume the same random draws, so whole runs agree up to float32 rounding."""
    from attn_doc2vec import Doc2Vec

    docs = make_topic_corpus(n_docs=40, length=50)
    settings = dict(vector_size=16, window=3, min_count=1, sample=0.05, epochs=3, batch_size=64, dm=dm,
                    context=context, device="cpu", seed=7, row_update_cap=4, **extra)
    models = {backend: Doc2Vec(docs, backend=backend, **settings) for backend in ("torch", "numba")}
    assert_tables_close(models["torch"].module, models["numba"].module, atol=1e-6)
    np_inferred = {b: m.infer_vectors([d.words for d in docs[:10]], epochs=5) for b, m in models.items()}
    torch.testing.assert_close(torch.from_numpy(np_inferred["numba"]), torch.from_numpy(np_inferred["torch"]),
                               rtol=1e-4, atol=1e-5)
    assert models["torch"].loss_history == pytest.approx(models["numba"].loss_history, rel=1e-5)


def test_pool_exclude_reaches_both_backends(make_topic_corpus) -> None:
    """pool_exclude='word' trains the same on both backends, and differently from 'position' (the corpus repeats
    its words, so leaving out every copy of the target changes the samples)."""
    from attn_doc2vec import Doc2Vec

    docs = make_topic_corpus(n_docs=30, length=50)
    settings = dict(vector_size=16, window=3, min_count=1, sample=0, epochs=2, batch_size=64, device="cpu", seed=7,
                    pool_group=1)
    word = {backend: Doc2Vec(docs, backend=backend, pool_exclude="word", **settings) for backend in ("torch", "numba")}
    assert_tables_close(word["torch"].module, word["numba"].module, atol=1e-6)
    position = Doc2Vec(docs, backend="numba", pool_exclude="position", **settings)
    changed = torch.from_numpy(word["numba"].dv.vectors) - torch.from_numpy(position.dv.vectors)
    assert changed.abs().max() > 1e-3


@pytest.mark.parametrize("pool_group", [8, 1])
def test_own_pool_values_reach_both_backends(make_topic_corpus, pool_group: int) -> None:
    """pool_values='own' trains every table (the pooling's own vectors and Adagrad state included) the same on
    both backends; the pooled words then learn in a table of their own, so the run differs from 'shared'."""
    from attn_doc2vec import Doc2Vec

    docs = make_topic_corpus(n_docs=30, length=50)
    settings = dict(vector_size=16, window=3, min_count=1, sample=0, epochs=2, batch_size=64, device="cpu", seed=7,
                    pool_group=pool_group)
    own = {backend: Doc2Vec(docs, backend=backend, pool_values="own", **settings) for backend in ("torch", "numba")}
    states = [own[backend].module.state_dict() for backend in ("torch", "numba")]
    assert "pool_vectors" in states[0] and "adagrad_pool" in states[0]
    for name, tensor in states[0].items():
        torch.testing.assert_close(tensor, states[1][name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    module = own["numba"].module
    assert (module.adagrad_pool > 0).any() and not torch.equal(module.pool_vectors, module.word_vectors)
    shared = Doc2Vec(docs, backend="numba", pool_values="shared", **settings)
    assert not hasattr(shared.module, "pool_vectors")
    changed = torch.from_numpy(own["numba"].dv.vectors) - torch.from_numpy(shared.dv.vectors)
    assert changed.abs().max() > 1e-3


def test_backend_is_validated_and_resolved() -> None:
    from attn_doc2vec.config import Doc2VecConfig
    from attn_doc2vec.training import resolve_backend

    with pytest.raises(ValueError, match=r"'backend' parameter must be one of 'auto', 'torch', 'numba'.*'jax'"):
        Doc2VecConfig(backend="jax").validate()
    assert resolve_backend("auto", torch.device("cpu")) == "numba"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="backend='numba' runs on the CPU only"):
        resolve_backend("numba", torch.device("cuda"))


@pytest.mark.parametrize("dm, extra", [(1, {}), (0, {}), (1, dict(pool_sample=6, pool_group=1)), (1, dict(hs=1)),
                                       (0, dict(hs=1, negative=0)),
                                       (1, dict(pool_sample=6, pool_group=4, context_dropout=0.3)),
                                       (0, dict(dbow_words=1)), (0, dict(dbow_words=1, hs=1, negative=0))])
def test_fused_sampler_cuts_the_same_batches(make_topic_corpus, dm: int, extra: dict) -> None:
    """Same generator state, same draws, same batches as the torch sampler; the generator ends in the same state."""
    from attn_doc2vec.batching import DeviceCorpus, Sampler, dbow_examples
    from attn_doc2vec.config import Doc2VecConfig
    from attn_doc2vec.corpus import build_vocabulary, encode
    from attn_doc2vec.fused_batching import FusedSampler
    from attn_doc2vec.training import make_generator

    docs = make_topic_corpus(n_docs=30, length=40)
    docs = [type(d)(d.words, [d.tags[0], "shared"] if i % 3 == 0 else d.tags) for i, d in enumerate(docs)]
    extra = dict(extra)
    settings = {k: extra.pop(k) for k in ("hs", "negative", "dbow_words") if k in extra}
    cfg = Doc2VecConfig(min_count=1, window=4, **({"negative": 7} | settings), sample=1e-3, dm=dm,
                        context="mean").validate()
    vocab = build_vocabulary(docs, cfg)
    corpus = DeviceCorpus.from_encoded(encode(docs, vocab), torch.device("cpu"))
    samplers = [Sampler.from_vocab(vocab, cfg, make_generator(3, torch.device("cpu")))]
    samplers.append(FusedSampler.from_sampler(Sampler.from_vocab(vocab, cfg, make_generator(3, torch.device("cpu")))))
    for sampler in samplers:  # the draws of the designs that pool document words or drop context words
        for name, value in extra.items():
            setattr(sampler, name, value)
    batches, kept_corpora = [], []
    for sampler in samplers:
        kept = sampler.downsample(corpus)
        kept_corpora.append(kept)
        positions, slots = (torch.arange(len(kept)), None) if dm else dbow_examples(kept)
        pick = torch.randperm(positions.shape[0], generator=sampler.generator)[:200]
        if dm:
            batches.append(sampler.pvdm_batch(kept, positions[pick]))
        else:
            pairs = None
            if settings.get("dbow_words"):  # the epoch's skip-gram pairs (a reach drawn per position), some of them
                pairs = sampler.skipgram_pairs(kept)
                pairs = pairs[torch.randperm(len(pairs), generator=sampler.generator)[:300]]
            batches.append(sampler.dbow_batch(kept, positions[pick], None if slots is None else slots[pick], pairs))
    for field in ("tokens", "docs", "offsets", "tags"):
        assert torch.equal(getattr(kept_corpora[0], field), getattr(kept_corpora[1], field)), field
    assert len(kept_corpora[0]) < len(corpus)  # something was dropped
    for field in ("doc_slots", "words", "positions", "word_mask", "outputs", "output_mask", "pool_words", "pool_mask",
                  "pool_index", "output_labels"):
        a, b = getattr(batches[0], field), getattr(batches[1], field)
        assert (a is None and b is None) or torch.equal(a, b), field
    assert (batches[0].pool_words is not None) == ("pool_sample" in extra)
    assert torch.equal(samplers[0].generator.get_state(), samplers[1].generator.get_state())


THREADS_SCRIPT = r"""
import sys, threading
from gensim.test.utils import datapath
from gensim.models.doc2vec import TaggedLineDocument
from attn_doc2vec import Doc2Vec

docs = list(TaggedLineDocument(datapath("lee_background.cor")))[:150]
settings = dict(vector_size=16, epochs=2, min_count=2, seed=0, workers=2, device="cpu", backend="numba",
                context=sys.argv[1])
model = Doc2Vec(**settings)
model.build_vocab(docs)
model.train(docs, total_examples=model.corpus_count, epochs=2, progress=False)
errors = []

def infer():
    try:
        for _ in range(3):
            model.infer_vectors([d.words for d in docs[:60]])
    except Exception as err:
        errors.append(err)

def train():
    try:
        other = Doc2Vec(**settings)
        other.build_vocab(docs)
        other.train(docs, total_examples=other.corpus_count, epochs=2, progress=False)
    except Exception as err:
        errors.append(err)

threads = [threading.Thread(target=infer) for _ in range(4)] + [threading.Thread(target=train)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors:", errors)
sys.exit(1 if errors else 0)
"""


@pytest.mark.parametrize("context", ["mean", "attention"])
def test_parallel_kernels_survive_python_threads(context, tmp_path) -> None:
    """Four threads inferring while a fifth trains another model: Numba's workqueue layer aborts the
    process (SIGABRT) if two threads enter a parallel region at once, so run it in a subprocess."""
    import subprocess
    import sys

    script = tmp_path / "threads.py"
    script.write_text(THREADS_SCRIPT)
    done = subprocess.run([sys.executable, str(script), context], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "NUMBA_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "errors: []" in done.stdout


def test_a_slow_first_kernel_call_is_announced_once_and_timed(monkeypatch, caplog):
    """A first call that is still running after COMPILE_NOTICE_AFTER (Numba compiling) warns once per process;
    every kernel's first call is timed, later calls are not."""
    import logging
    import threading
    import time

    from attn_doc2vec import fused

    monkeypatch.setattr(fused, "COMPILE_NOTICE_AFTER", 0.05)
    monkeypatch.setattr(fused, "_called", set())
    monkeypatch.setattr(fused, "_announced", threading.Event())

    def slow(x):
        time.sleep(0.3)
        return x + 1

    def also_slow(x):
        time.sleep(0.3)
        return x

    before = fused.first_call_seconds()
    with caplog.at_level(logging.WARNING, logger="attn_doc2vec.fused"):
        assert fused.call_kernel(slow, 1) == 2
        assert fused.call_kernel(slow, 2) == 3
        assert fused.call_kernel(also_slow, 7) == 7
    notices = [r.getMessage() for r in caplog.records if "compiling" in r.getMessage()]
    assert len(notices) == 1 and "once per install" in notices[0]
    assert 0.6 <= fused.first_call_seconds() - before < 0.9  # two first calls, not the second call of slow


def test_a_fast_first_kernel_call_says_nothing(monkeypatch, caplog):
    import logging
    import threading

    from attn_doc2vec import fused

    monkeypatch.setattr(fused, "_called", set())
    monkeypatch.setattr(fused, "_announced", threading.Event())
    with caplog.at_level(logging.WARNING, logger="attn_doc2vec.fused"):
        assert fused.call_kernel(abs, -3) == 3
    assert not [r for r in caplog.records if "compiling" in r.getMessage()]
