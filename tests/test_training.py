"""Trainer and SGD updates: gensim's update rules, the learning-rate schedule, full coverage, failures."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from attn_doc2vec import TaggedDocument
from attn_doc2vec.batching import Sampler
from attn_doc2vec.config import Doc2VecConfig
from attn_doc2vec.corpus import build_vocabulary, encode
from attn_doc2vec.model import Batch, Doc2VecModule
from attn_doc2vec.training import (
    Trainer,
    apply_update,
    input_scale,
    make_generator,
    resolve_backend,
    resolve_device,
    training_mode,
)

CPU = torch.device("cpu")
BACKENDS = ["torch", pytest.param("numba", marks=pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                                                   reason="Numba is not installed"))]


def make_trainer(docs, **settings) -> tuple[Trainer, object]:
    cfg = Doc2VecConfig(**({"vector_size": 8, "min_count": 1, "sample": 0.0, "device": "cpu"} | settings)).validate()
    vocab = build_vocabulary(docs, cfg)
    module = Doc2VecModule.from_config(cfg, len(vocab.wv), len(vocab.dv))
    module.reset_parameters(make_generator(cfg.seed, CPU))
    sampler = Sampler.from_vocab(vocab, cfg, make_generator(cfg.seed, CPU))
    return Trainer(module, sampler, cfg), encode(docs, vocab)


def tables(module: Doc2VecModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def long_docs():
    """A document of 25,000 tokens (gensim's Cython path would cut it at 10,000) and two short ones."""
    rng = np.random.default_rng(0)
    long = [f"w{i}" for i in rng.integers(0, 300, 25_000)]
    return [TaggedDocument(long, [0, "long"]), TaggedDocument(["w1", "w2", "w3"], [1]), TaggedDocument(["w4"], [2])]


# ------------------------------------------------------------------------------------------------
# What an epoch covers


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("epoch_block", [0, 4000], ids=["whole", "blocks"])
def test_every_token_is_a_target_once_per_epoch(long_docs, monkeypatch, backend: str, epoch_block: int) -> None:
    """Every position once per epoch, whether the epoch shuffles the whole corpus or deals it in blocks (the
    long document is then a block of its own: documents are never cut)."""
    trainer, encoded = make_trainer(long_docs, batch_size=4096, backend=backend, epoch_block=epoch_block)
    assert encoded.lengths().tolist() == [25_000, 3, 1]
    seen: list[list[torch.Tensor]] = []  # per epoch
    sampler_class = type(trainer.sampler)  # the numba backend cuts batches with its own FusedSampler
    original = sampler_class.pvdm_batch

    def record(self, corpus, positions):
        # (document row, token) of each target: a block numbers its positions from 0, its tags say whose
        docs = corpus.tags[corpus.docs[positions].long(), 0]
        seen[-1].append(docs * 1000 + corpus.tokens[positions].long())
        return original(self, corpus, positions)

    monkeypatch.setattr(sampler_class, "pvdm_batch", record)
    stats = trainer.run(encoded, 2, 0.025, 0.0001, progress=False, on_epoch_begin=lambda _: seen.append([]))
    expected = (torch.repeat_interleave(torch.arange(3), torch.as_tensor(encoded.lengths())) * 1000
                + torch.as_tensor(encoded.tokens).long()).sort().values
    for batches in seen:
        assert torch.equal(torch.cat(batches).sort().values, expected)
        # whole: ceil(25,004 / 4096) batches; blocks: one more when the short documents make a block of their own
        assert len(batches) == 7 if not epoch_block else len(batches) in (7, 8)
    assert [s.examples for s in stats] == [25_004, 25_004]
    assert all(s.raw_words == 25_004 for s in stats)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dbow_pairs_every_tag_with_every_token_once_per_epoch(long_docs, monkeypatch, backend: str) -> None:
    trainer, encoded = make_trainer(long_docs, dm=0, batch_size=8192, backend=backend)
    seen = []
    sampler_class = type(trainer.sampler)
    original = sampler_class.dbow_batch

    def record(self, corpus, positions, slots=None):
        seen.append(torch.stack([positions, slots], dim=1))
        return original(self, corpus, positions, slots)

    monkeypatch.setattr(sampler_class, "dbow_batch", record)
    stats = trainer.run(encoded, 1, 0.025, 0.0001, progress=False)
    pairs = torch.cat(seen)
    assert stats[0].examples == len(pairs) == 2 * 25_000 + 3 + 1
    assert len(torch.unique(pairs, dim=0)) == len(pairs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dbow_words_adds_every_skipgram_pair_once_per_epoch_and_none_in_inference(long_docs, monkeypatch,
                                                                                    backend: str) -> None:
    """dbow_words=1 with full windows (shrink_windows=False): every (centre, context) pair of a document is an
    example once per epoch, beside the (tag, word) ones; inference, which freezes the words, makes none."""
    trainer, encoded = make_trainer(long_docs, dm=0, dbow_words=1, window=2, shrink_windows=False,
                                    batch_size=8192, backend=backend)
    seen = []
    sampler_class = type(trainer.sampler)
    original = sampler_class.dbow_batch

    def record(self, corpus, positions, slots=None, pairs=None):
        seen.append(pairs)
        return original(self, corpus, positions, slots, pairs)

    monkeypatch.setattr(sampler_class, "dbow_batch", record)
    words = trainer.module.word_vectors.clone()
    stats = trainer.run(encoded, 1, 0.025, 0.0001, progress=False)
    pairs = torch.cat(seen)
    # 25,000 words with 4 neighbours each but 2 x (1 + 2) missing at the ends, then 3 words with 2 each
    assert len(pairs) == len(torch.unique(pairs)) == 25_000 * 4 - 6 + 3 * 2
    assert stats[0].examples == len(pairs) + 2 * 25_000 + 3 + 1
    assert not torch.equal(words, trainer.module.word_vectors)
    seen.clear()
    words = trainer.module.word_vectors.clone()
    trainer.run(encoded, 1, 0.025, 0.0001, doc_vectors=torch.zeros(4, 8), progress=False)
    assert seen and all(p is None for p in seen)
    assert torch.equal(words, trainer.module.word_vectors)


def record_steps(monkeypatch, record) -> None:
    """Call ``record(batch, alpha)`` before every SGD step, whichever backend runs it."""
    original = Trainer._step

    def wrapped(self, docs, update_shared):
        step = original(self, docs, update_shared)

        def recorded(batch, alpha):
            record(batch, alpha)
            return step(batch, alpha)

        return recorded

    monkeypatch.setattr(Trainer, "_step", wrapped)


@pytest.mark.parametrize("epoch_block, batches", [(0, 8), (1000, 3 * 3 + 2)], ids=["whole", "blocks"])
def test_learning_rate_decays_linearly_over_all_epochs(topic_docs, monkeypatch, epoch_block, batches) -> None:
    """One straight line over every batch of every epoch; in blocks (60 documents of 60 words: three blocks of
    17 documents, 3 batches each, then 9 documents in 2), over the blocks' batches together."""
    trainer, encoded = make_trainer(topic_docs, batch_size=500, epoch_block=epoch_block)
    alphas = []
    record_steps(monkeypatch, lambda batch, alpha: alphas.append(alpha))
    stats = trainer.run(encoded, 3, 0.05, 0.01, progress=False)
    assert len(alphas) == 3 * batches
    steps = np.diff(alphas)
    assert alphas[0] == 0.05
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)  # one straight line across epoch boundaries
    np.testing.assert_allclose(alphas[-1] - (alphas[0] - alphas[1]), 0.01, rtol=1e-9)  # one step short of the end
    assert stats[-1].alpha == alphas[-1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("context, drop", [("mean", 0.8), ("attention", 0.85)])  # SGD and row-wise Adagrad
def test_loss_decreases_over_epochs(topic_docs, backend: str, context: str, drop: float) -> None:
    trainer, encoded = make_trainer(topic_docs, batch_size=256, backend=backend, context=context)
    stats = trainer.run(encoded, 8, trainer.config.alpha, 0.0001, progress=False)
    losses = [s.mean_loss for s in stats]
    assert losses[-1] < drop * losses[0]
    assert sum(b < a for a, b in zip(losses, losses[1:], strict=False)) >= 6
    assert all(s.seconds > 0 and s.words_per_second > 0 for s in stats)


def test_hooks_see_every_epoch(topic_docs) -> None:
    trainer, encoded = make_trainer(topic_docs)
    begun, ended = [], []
    trainer.run(encoded, 3, 0.025, 0.0001, on_epoch_begin=begun.append, on_epoch_end=ended.append, progress=False)
    assert begun == [0, 1, 2]
    assert [s.epoch for s in ended] == [0, 1, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_non_finite_loss_raises_naming_the_learning_rate(topic_docs, backend: str) -> None:
    trainer, encoded = make_trainer(topic_docs, backend=backend)
    trainer.module.output_vectors.data[:] = float("nan")
    ended = []
    with pytest.raises(FloatingPointError, match=r"loss diverged in epoch 1: nan per prediction.*"
                                                 r"the learning rate \(alpha=0.025\).*"
                                                 r"lower alpha"):
        trainer.run(encoded, 3, 0.025, 0.0001, on_epoch_end=ended.append, progress=False)
    assert ended == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("epoch_block", [0, 500], ids=["whole", "blocks"])
def test_same_seed_gives_identical_tables(topic_docs, backend: str, epoch_block: int) -> None:
    results = []
    for seed in (4, 4, 5):
        trainer, encoded = make_trainer(topic_docs, seed=seed, sample=1e-2, backend=backend, epoch_block=epoch_block)
        trainer.run(encoded, 2, 0.025, 0.0001, progress=False)
        results.append(tables(trainer.module))
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    assert not torch.allclose(results[0]["doc_vectors"], results[2]["doc_vectors"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dm, context", [(1, "wordpos"), (1, "mean"), (0, "wordpos")])
def test_inference_trains_only_the_given_document_matrix(topic_docs, dm: int, context: str, backend: str) -> None:
    trainer, encoded = make_trainer(topic_docs, dm=dm, context=context, backend=backend)
    trainer.run(encoded, 1, 0.025, 0.0001, progress=False)
    before = tables(trainer.module)
    docs = torch.zeros_like(trainer.module.doc_vectors)
    trainer.run(encoded, 2, 0.025, 0.0001, doc_vectors=docs, progress=False)
    after = tables(trainer.module)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.all(docs.abs().sum(dim=1) > 0)


# ------------------------------------------------------------------------------------------------
# One SGD step: gensim's rules


def one_example(dm: int, context: str, n_words: int = 2) -> tuple[Doc2VecModule, Batch]:
    """One example with distinct rows everywhere, and random tables."""
    module = Doc2VecModule(10, 3, 4, 2, context, dm).double()
    gen = torch.Generator().manual_seed(0)
    for p in module.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    if module.uses_attention:
        module.word_scores.data.zero_()
        module.position_scores.data.zero_()
    s = 4 if dm else 0
    mask = torch.tensor([[True] * n_words + [False] * (s - n_words)]) if dm else torch.zeros((1, 0), dtype=torch.bool)
    batch = Batch(doc_slots=torch.tensor([[1]]), words=torch.tensor([[2, 3, 4, 5][:s]]),
                  positions=torch.arange(s)[None], word_mask=mask,
                  outputs=torch.tensor([[6, 7, 8]]), output_mask=torch.tensor([[True, True, True]]))
    return module, batch


def gensim_error(module: Doc2VecModule, inputs: list[torch.Tensor], mean: bool, alpha: float):
    """gensim's neu1e for one example: sum_k (label_k - sigmoid(h.v_k)) * alpha * v_k, and the output steps."""
    h = torch.stack(inputs).mean(0) if mean else torch.stack(inputs).sum(0)
    neu1e = torch.zeros_like(h)
    out_steps = []
    for k, row in enumerate([6, 7, 8]):
        v = module.output_vectors.data[row]
        g = ((1.0 if k == 0 else 0.0) - torch.sigmoid(h @ v)) * alpha
        neu1e += g * v
        out_steps.append(g * h)
    return neu1e, out_steps


@pytest.mark.parametrize("dm, context", [(1, "mean"), (1, "sum"), (1, "wordpos"), (0, "mean")])
def test_update_is_gensims(dm: int, context: str) -> None:
    module, batch = one_example(dm, context)
    before = tables(module)
    inputs = [before["doc_vectors"][1]] + ([before["word_vectors"][2], before["word_vectors"][3]] if dm else [])
    alpha = 0.1
    neu1e, out_steps = gensim_error(module, inputs, mean=context != "sum", alpha=alpha)
    if context == "sum":
        neu1e = neu1e / len(inputs)  # gensim divides the error over summed inputs (dm_mean=0)
    docs = module.doc_vectors.data
    apply_update(module, batch, module.gradients(batch), alpha, docs, update_shared=True)
    torch.testing.assert_close(docs[1] - before["doc_vectors"][1], neu1e)
    for row, step in zip([6, 7, 8], out_steps, strict=True):
        torch.testing.assert_close(module.output_vectors.data[row] - before["output_vectors"][row], step)
    changed_words = (module.word_vectors.data != before["word_vectors"]).any(dim=1).nonzero().flatten().tolist()
    assert changed_words == ([2, 3] if dm else [])
    for row in changed_words:
        torch.testing.assert_close(module.word_vectors.data[row] - before["word_vectors"][row], neu1e)
    assert torch.equal(docs[[0, 2]], before["doc_vectors"][[0, 2]])


def test_input_scale_turns_exact_gradients_into_gensims_rule() -> None:
    for dm, context, expected in [(1, "mean", 3.0), (1, "wordpos", 3.0), (1, "sum", 1 / 3), (0, "mean", 1.0)]:
        module, batch = one_example(dm, context)
        assert input_scale(module, batch).item() == pytest.approx(expected)


def test_attention_scores_move_only_where_words_were_seen() -> None:
    module, batch = one_example(1, "wordpos")
    module.word_scores.data[2, 0] = 1.0  # non-uniform, so the scores get a gradient
    grads = module.gradients(batch)
    before = tables(module)
    apply_update(module, batch, grads, 0.5, module.doc_vectors.data, update_shared=True, attention_alpha=2.0)
    delta = module.word_scores.data - before["word_scores"]
    assert set(map(tuple, delta.nonzero().tolist())) == {(2, 0), (3, 1)}
    torch.testing.assert_close(delta[[2, 3], [0, 1]], -1.0 * grads.scores[0, :2])
    torch.testing.assert_close(module.position_scores.data - before["position_scores"],
                               torch.cat([-1.0 * grads.scores[0, :2], torch.zeros(2, dtype=torch.float64)]))
    frozen, batch = one_example(1, "wordpos")
    frozen.word_scores.data[2, 0] = 1.0
    scores = frozen.word_scores.data.clone()
    apply_update(frozen, batch, frozen.gradients(batch), 0.5, frozen.doc_vectors.data, True, attention_alpha=0.0)
    assert torch.equal(frozen.word_scores.data, scores)


def test_untrained_attention_updates_like_mean() -> None:
    attention, batch = one_example(1, "wordpos")
    mean, _ = one_example(1, "mean")
    for module in (attention, mean):
        apply_update(module, batch, module.gradients(batch), 0.1, module.doc_vectors.data, update_shared=True)
    for name in ("doc_vectors", "word_vectors", "output_vectors"):
        torch.testing.assert_close(getattr(attention, name).data, getattr(mean, name).data)


def test_a_row_repeated_beyond_the_cap_moves_by_the_capped_mean() -> None:
    module, batch = one_example(0, "mean")
    many = Batch(doc_slots=batch.doc_slots.repeat(20, 1), words=batch.words.repeat(20, 1),
                 positions=batch.positions.repeat(20, 1), word_mask=batch.word_mask.repeat(20, 1),
                 outputs=batch.outputs.repeat(20, 1), output_mask=batch.output_mask.repeat(20, 1))
    before = module.doc_vectors.data[1].clone()
    single = module.gradients(batch).slots[0, 0]
    apply_update(module, many, module.gradients(many), 0.1, module.doc_vectors.data, update_shared=True, cap=8)
    torch.testing.assert_close(module.doc_vectors.data[1] - before, -0.1 * 8 * single)


# ------------------------------------------------------------------------------------------------
# Device and threads


def test_resolve_backend() -> None:
    has_numba = importlib.util.find_spec("numba") is not None
    assert resolve_backend("auto", CPU) == ("numba" if has_numba else "torch")
    assert resolve_backend("torch", CPU) == "torch"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match=r"backend='numba' runs on the CPU only.*use backend='torch'"):
        resolve_backend("numba", torch.device("cuda"))


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"'device' parameter must name a torch device.*Got 'gpu0' instead"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda' was requested but CUDA is not available.*device='cpu'"):
            resolve_device("cuda")


@pytest.mark.parametrize("backend", BACKENDS)
def test_workers_set_threads_only_while_training(topic_docs, monkeypatch, backend: str) -> None:
    trainer, encoded = make_trainer(topic_docs[:10], workers=2, backend=backend)
    during = []
    record_steps(monkeypatch, lambda batch, alpha: during.append(torch.get_num_threads()))
    threads = torch.get_num_threads()
    trainer.run(encoded, 1, 0.025, 0.0001, progress=False)
    if backend == "torch":  # (Numba's kernels set their own thread count, which may move PyTorch's)
        assert set(during) == {2}
    assert torch.get_num_threads() == threads
    with pytest.raises(RuntimeError), training_mode(CPU, 3):
        raise RuntimeError("interrupted")
    assert torch.get_num_threads() == threads


def test_cpu_training_leaves_the_deterministic_flag_and_torch_inductor_alone() -> None:
    # setting the flag imports torch._inductor (~70 MB, measured at the end of a 100,000-review run)
    code = ("import sys, torch\n"
            "from attn_doc2vec.training import training_mode\n"
            "with training_mode(torch.device('cpu'), 1):\n"
            "    pass\n"
            "print('torch._inductor' in sys.modules, torch.are_deterministic_algorithms_enabled())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_words_per_second_leaves_out_kernel_compilation():
    from attn_doc2vec.training import EpochStats

    stats = EpochStats(epoch=0, loss=1.0, examples=10, raw_words=1000, seconds=10.0, alpha=0.01, compile_seconds=8.0)
    assert stats.words_per_second == pytest.approx(500.0)
    assert EpochStats(0, 1.0, 10, 1000, 10.0, 0.01).words_per_second == pytest.approx(100.0)
