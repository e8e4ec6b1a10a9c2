"""The user-facing Doc2Vec: gensim's API, its errors, callbacks, KeyedVectors and reproducibility."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from gensim.models.callbacks import CallbackAny2Vec
from gensim.models.keyedvectors import KeyedVectors

from attn_doc2vec import AttnDoc2Vec, Doc2Vec, TaggedDocument, TaggedLineDocument
from attn_doc2vec.batching import DeviceCorpus, Sampler
from attn_doc2vec.corpus import encode
from attn_doc2vec.training import make_generator

FAST = dict(vector_size=8, epochs=2, min_count=1, device="cpu")


# ------------------------------------------------------------------------------------------------
# Parameters


def test_gensim_style_attributes(topic_model) -> None:
    assert AttnDoc2Vec is Doc2Vec
    assert (topic_model.vector_size, topic_model.window, topic_model.epochs) == (16, 5, 40)
    assert topic_model.corpus_count == 60 and topic_model.corpus_total_words == 3600
    assert repr(topic_model) == "Doc2Vec<PV-DM/attention, vector_size=16, window=5, 90 words, 60 docs>"
    with pytest.raises(AttributeError, match="has no attribute 'windw'"):
        topic_model.windw  # noqa: B018


def test_setting_a_gensim_attribute_changes_the_config(topic_docs) -> None:
    """``model.epochs = 3`` takes effect, as in gensim; bad values and settings fixed by the vocabulary say so."""
    model = Doc2Vec(**FAST)
    model.window = 3  # before build_vocab every setting can change
    model.build_vocab(topic_docs[:10])
    model.epochs = 3
    assert model.config.epochs == 3 and model.epochs == 3 and "epochs" not in model.__dict__
    model.train(topic_docs[:10], total_examples=model.corpus_count, epochs=model.epochs)  # the model's, now 3
    assert model.epochs_trained == 3 and model.config.window == 3
    with pytest.raises(ValueError, match=r"'epochs' parameter must be an int >= 1"):
        model.epochs = 0
    assert model.epochs == 3
    with pytest.raises(AttributeError, match=r"'vector_size' is fixed once the vocabulary is built.*Doc2Vec\(\.\.\., "
                                             r"vector_size=32\)"):
        model.vector_size = 32
    model.not_a_setting = 1  # other attributes are plain attributes
    assert model.not_a_setting == 1


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(window=0), r"'window' parameter must be an int >= 1\. Got 0 instead"),
        (dict(vector_size=-1), r"'vector_size' parameter must be an int >= 1\. Got -1 instead"),
        (dict(dm=2), r"'dm' parameter must be 1 \(PV-DM\) or 0 \(PV-DBOW\)\. Got 2 instead"),
        (dict(context="max"), r"'context' parameter must be one of 'attention', 'docquery', 'docloss', 'mean', 'sum', "
                    r"'wordpos', 'concat'\. Got 'max' "),
        (dict(alpha=0), r"'alpha' parameter must be a number > 0.*Got 0 instead"),
        (dict(negative=0), r"either 'hs' or 'negative' to be positive"),
        (dict(negative=-1), r"'negative' parameter must be an int >= 0.*Got -1 instead"),
        (dict(alpha=0.01, min_alpha=0.05), r"'min_alpha' parameter must not exceed 'alpha' \(0\.01\)\. Got 0\.05"),
        (dict(dm_mean=2), r"'dm_mean' parameter must be 0 \(sum\) or 1 \(mean\)\. Got 2 instead"),
        (dict(dm_mean=1, context="sum"), r"either 'context' or gensim's 'dm_mean', not both"),
    ],
)
def test_invalid_parameters_are_refused_before_any_work(params, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Doc2Vec(**params)


def test_unknown_parameter_name_lists_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['windw'\]; valid ones are \[.*'window'"):
        Doc2Vec(windw=3)


@pytest.mark.parametrize("dm_mean, context", [(1, "mean"), (0, "sum")])
def test_dm_mean_maps_to_context(topic_docs, dm_mean: int, context: str) -> None:
    model = Doc2Vec(topic_docs[:10], dm_mean=dm_mean, **FAST)
    assert model.config.context == context and model.module.context == context
    assert not model.module.uses_attention
    reference = Doc2Vec(topic_docs[:10], context=context, **FAST)
    np.testing.assert_array_equal(model.dv.vectors, reference.dv.vectors)


# ------------------------------------------------------------------------------------------------
# Corpus errors


def test_a_string_instead_of_token_lists_is_refused() -> None:
    with pytest.raises(TypeError, match=r"'words' must be a list of tokens \(not a single string 'the cat sat'\).*"
                                        r"split it first"):
        Doc2Vec([TaggedDocument("the cat sat", [0])], **FAST)
    with pytest.raises(TypeError, match=r"not a string; to read a file pass corpus_file=path"):
        Doc2Vec("the cat sat on the mat", **FAST)


def test_a_one_shot_generator_is_refused(topic_docs) -> None:
    with pytest.raises(TypeError, match=r"one-shot iterator \(e\.g\. a generator\) but it must be read 2 times.*"
                                        r"pass a list"):
        Doc2Vec(documents=(d for d in topic_docs), **FAST)
    # build_vocab and train each read the corpus once: a fresh generator for each is fine
    model = Doc2Vec(**FAST)
    model.build_vocab(d for d in topic_docs[:10])
    model.train((d for d in topic_docs[:10]), total_examples=10, epochs=model.epochs)
    assert model.epochs_trained == 2


def test_using_the_model_before_build_vocab_names_the_fix(topic_docs) -> None:
    model = Doc2Vec(**FAST)
    with pytest.raises(RuntimeError, match=r"Cannot train before the vocabulary is built: call "
                                           r"model.build_vocab\(documents\) first"):
        model.train(topic_docs)
    with pytest.raises(RuntimeError, match=r"Cannot infer_vectors before .*build_vocab"):
        model.infer_vector(["fruit1"])
    with pytest.raises(RuntimeError, match=r"no vocabulary yet: call build_vocab\(documents\) first"):
        model.dv  # noqa: B018


def test_empty_corpus_and_empty_vocabulary() -> None:
    with pytest.raises(ValueError, match="corpus is empty"):
        Doc2Vec([], **FAST)
    with pytest.raises(RuntimeError, match="corpus is empty"):  # gensim raises RuntimeError here
        Doc2Vec([], **FAST)
    docs = [TaggedDocument(["a", "b"], [0]), TaggedDocument(["c"], [1])]
    message = r"vocabulary is empty: no word occurs at least min_count=3 times in 2 documents; lower min_count"
    with pytest.raises(ValueError, match=message):
        Doc2Vec(docs, **(FAST | dict(min_count=3)))
    model = Doc2Vec(**(FAST | dict(min_count=3)))
    model.build_vocab(docs)  # as gensim: built (with a warning), refused at train()
    with pytest.raises(RuntimeError, match=message):
        model.train(docs, total_examples=2, epochs=model.epochs)


def test_other_corpus_mistakes(topic_docs) -> None:
    model = Doc2Vec(topic_docs[:10], **FAST)
    with pytest.raises(ValueError, match=r"build_vocab\(update=True\) is not supported"):
        model.build_vocab(topic_docs, update=True)
    with pytest.raises(ValueError, match="Every document needs at least one tag"):
        model.train([TaggedDocument(topic_docs[0].words, [0]), TaggedDocument(["fruit1"], [])], total_examples=2,
                    epochs=1)
    with pytest.raises(KeyError, match="has tag 'new'.*not in the model's vocabulary"):
        model.train([TaggedDocument(topic_docs[0].words, ["new"])], total_examples=1, epochs=1)
    with pytest.raises(ValueError, match=r"'epochs' parameter must be an int >= 1\. Got 0 instead"):
        model.train(topic_docs[:10], total_examples=len(topic_docs[:10]), epochs=0)
    with pytest.raises(ValueError, match="Pass the corpus once"):
        Doc2Vec(topic_docs, corpus_iterable=topic_docs, **FAST)


def test_a_diverging_loss_raises_naming_the_learning_rate(topic_docs) -> None:
    with pytest.raises(FloatingPointError, match=r"training loss diverged in epoch 1: .* per prediction.*"
                                                 r"the learning rate "
                                                 r"\(alpha=1000000\.0\) is probably too high.*lower alpha"):
        Doc2Vec(topic_docs, vector_size=16, min_count=1, alpha=1e6, device="cpu")


def test_a_diverging_loss_raises_even_in_a_short_run(topic_docs) -> None:
    with pytest.raises(FloatingPointError, match=r"learning rate \(alpha=1000000\.0\)"):
        Doc2Vec(topic_docs, vector_size=16, min_count=1, alpha=1e6, epochs=1, device="cpu")


def test_documents_without_known_words_are_skipped_with_a_count(topic_docs, caplog) -> None:
    docs = topic_docs[:10] + [TaggedDocument(["unique1"], [10]), TaggedDocument([], [11]),
                              TaggedDocument(["unique2", "unique3"], [12])]
    model = Doc2Vec(vector_size=8, epochs=2, min_count=2, device="cpu")
    model.build_vocab(docs)
    start = model.dv.vectors.copy()
    with caplog.at_level(logging.WARNING, logger="attn_doc2vec"):
        model.train(docs, total_examples=len(docs), epochs=model.epochs)
    assert "3 of 13 documents have no word in the vocabulary and are skipped in training" in caplog.text
    np.testing.assert_array_equal(model.dv.vectors[10:], start[10:])
    assert not np.allclose(model.dv.vectors[:10], start[:10])
    assert np.isfinite(model.infer_vector(["unique1"])).all()


# ------------------------------------------------------------------------------------------------
# Corpus inputs


def test_str_int_and_several_tags(topic_docs) -> None:
    docs = [TaggedDocument(d.words, [f"doc{i}", "fruit" if i % 2 == 0 else "engine", i])
            for i, d in enumerate(topic_docs[:12])]
    model = Doc2Vec(docs, **FAST)
    assert set(model.dv.index_to_key) == set(range(12)) | {f"doc{i}" for i in range(12)} | {"fruit", "engine"}
    for dm in (1, 0):  # every tag of a document is trained, in PV-DM and in PV-DBOW
        fresh = Doc2Vec(**(FAST | dict(dm=dm)))
        fresh.build_vocab(docs)
        start = fresh.dv.vectors.copy()
        fresh.train(docs, total_examples=len(docs), epochs=fresh.epochs)
        assert np.all(np.any(fresh.dv.vectors != start, axis=1))
    assert model.dv["fruit"].shape == (8,) and model.dv["doc3"].shape == (8,)


def test_tagged_line_document_and_corpus_file_train_the_same_model(tmp_path, topic_docs) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(d.words) for d in topic_docs[:10]) + "\n", encoding="utf-8")
    from_list = Doc2Vec(topic_docs[:10], **FAST)
    from_lines = Doc2Vec(TaggedLineDocument(str(path)), **FAST)
    from_file = Doc2Vec(corpus_file=str(path), **FAST)
    from_kwarg = Doc2Vec(corpus_iterable=topic_docs[:10], **FAST)
    for model in (from_lines, from_file, from_kwarg):
        assert model.dv.index_to_key == list(range(10))
        np.testing.assert_array_equal(model.dv.vectors, from_list.dv.vectors)


# ------------------------------------------------------------------------------------------------
# Reproducibility


def test_same_seed_same_vectors_different_seed_different(topic_docs) -> None:
    a, b, c = (Doc2Vec(topic_docs[:20], seed=seed, **FAST) for seed in (5, 5, 6))
    for name, tensor in a.module.state_dict().items():
        assert torch.equal(tensor, b.module.state_dict()[name]), name
    assert not np.allclose(a.dv.vectors, c.dv.vectors)
    assert not np.allclose(a.wv.vectors, c.wv.vectors)
    assert not torch.equal(a.module.layer.row_salience, c.module.layer.row_salience)


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="Numba is not installed")
# The autograd designs' Numba step runs examples in order (tests/test_context.py holds it equal to the
# reference example by example); the hand-written designs' kernels equal the batched reference.
@pytest.mark.parametrize("dm, context", [(1, "wordpos"), (1, "sum"), (0, "attention")])
def test_numba_and_torch_backends_train_the_same_model(topic_docs, dm: int, context: str) -> None:
    """The fused CPU kernels run the reference's steps: equal up to float32 rounding."""
    settings = FAST | dict(dm=dm, context=context, sample=1e-2, batch_size=128)
    torch_model = Doc2Vec(topic_docs[:20], backend="torch", **settings)
    numba_model = Doc2Vec(topic_docs[:20], backend="numba", **settings)
    for name, tensor in torch_model.module.state_dict().items():
        torch.testing.assert_close(numba_model.module.state_dict()[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    np.testing.assert_allclose(numba_model.loss_history, torch_model.loss_history, rtol=1e-5)
    words = topic_docs[0].words
    np.testing.assert_allclose(numba_model.infer_vector(words), torch_model.infer_vector(words), rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# KeyedVectors


def test_keyed_vectors_follow_the_tensors(small_model, topic_docs) -> None:
    module = small_model.module
    # model.dv holds each document's representation: for context="attention" its free vector mixed with its
    # pooled words (Doc2VecModule.document_vectors), for the other designs the free vector itself
    for kv, table in ((small_model.wv, module.word_vectors), (small_model.dv, module.document_vectors())):
        assert isinstance(kv, KeyedVectors)
        np.testing.assert_array_equal(kv.vectors, table.numpy())
    before = small_model.dv.most_similar(0, topn=3)
    small_model.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=3)
    np.testing.assert_array_equal(small_model.dv.vectors, small_model.module.document_vectors().numpy())
    np.testing.assert_array_equal(small_model.wv.vectors, small_model.module.word_vectors.numpy())
    assert small_model.dv.most_similar(0, topn=3) != before  # stale norms would keep the old answer


def test_most_similar_similarity_and_word2vec_format(topic_model, tmp_path) -> None:
    dv = topic_model.dv.vectors
    unit = dv / np.linalg.norm(dv, axis=1, keepdims=True)
    manual = np.argsort(-(unit @ unit[4]))[1:6]
    assert [tag for tag, _ in topic_model.dv.most_similar(4, topn=5)] == manual.tolist()
    assert topic_model.dv.similarity(4, 6) == pytest.approx(float(unit[4] @ unit[6]), abs=1e-5)
    word = topic_model.wv.index_to_key[0]
    assert topic_model.wv.similarity(word, word) == pytest.approx(1.0, abs=1e-5)
    assert len(topic_model.wv.most_similar(word, topn=4)) == 4
    path = tmp_path / "words.txt"
    topic_model.wv.save_word2vec_format(str(path))
    again = KeyedVectors.load_word2vec_format(str(path))
    assert again.index_to_key == topic_model.wv.index_to_key
    np.testing.assert_allclose(again.vectors, topic_model.wv.vectors, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Callbacks and losses


class Counter(CallbackAny2Vec):
    def __init__(self) -> None:
        self.events = []

    def on_train_begin(self, model) -> None:
        self.events.append("begin")

    def on_epoch_begin(self, model) -> None:
        self.events.append("epoch_begin")

    def on_epoch_end(self, model) -> None:
        self.events.append(("epoch_end", model.epochs_trained))

    def on_train_end(self, model) -> None:
        self.events.append("end")


def test_callbacks_are_called_the_right_number_of_times(topic_docs) -> None:
    counter, seen = Counter(), []
    model = Doc2Vec(topic_docs[:10], callbacks=[counter, lambda m: seen.append(m.epochs_trained)],
                    **(FAST | dict(epochs=3)))
    assert counter.events == ["begin"] + ["epoch_begin", ("epoch_end", 1), "epoch_begin", ("epoch_end", 2),
                                          "epoch_begin", ("epoch_end", 3)][:6] + ["end"]
    assert seen == [1, 2, 3]
    extra = Counter()
    model.train(topic_docs[:10], total_examples=len(topic_docs[:10]), epochs=2, callbacks=[extra])
    assert seen == [1, 2, 3, 4, 5]  # the model's own callbacks run again
    assert extra.events == ["begin", "epoch_begin", ("epoch_end", 4), "epoch_begin", ("epoch_end", 5), "end"]


def test_compute_loss_and_latest_training_loss(topic_docs) -> None:
    model = Doc2Vec(topic_docs[:10], **FAST)
    assert model.get_latest_training_loss() == 0.0
    history = model.train(topic_docs[:10], total_examples=len(topic_docs[:10]), epochs=3, compute_loss=True)
    assert model.get_latest_training_loss() == pytest.approx(sum(s.loss for s in history))
    assert model.get_latest_training_loss() > 0
    model.train(topic_docs[:10], total_examples=len(topic_docs[:10]), epochs=1, compute_loss=True)
    assert model.get_latest_training_loss() < sum(s.loss for s in history)  # reset at each train call
    model.train(topic_docs[:10], total_examples=len(topic_docs[:10]), epochs=1)
    assert model.get_latest_training_loss() == 0.0


def test_loss_history_decreases_over_epochs(topic_model) -> None:
    losses = topic_model.loss_history
    assert len(losses) == topic_model.epochs_trained == 40
    assert losses[-1] < 0.8 * losses[0]  # measured 0.77 (attention); this synthetic corpus has a high floor
    assert np.mean(losses[-5:]) < np.mean(losses[5:10]) < np.mean(losses[:5])


# ------------------------------------------------------------------------------------------------
# Attention after training


def test_attention_after_training_on_lee_is_not_uniform(lee_model, lee_docs) -> None:
    layer = lee_model.module.layer
    assert torch.equal(layer.position_bias, torch.zeros_like(layer.position_bias))  # context_scores="word"
    stop = [lee_model.wv.get_index(w) for w in ("the", "and", "of")]
    content = [lee_model.wv.get_index(w) for w in ("wales", "sydney", "gaza")]
    w = lee_model.window
    # the context attention learns to listen to topical words rather than function words (measured:
    # the 0.07x, wales 5x their uniform share), and the document attention learns scores too
    assert layer.row_context[content].min() > layer.row_context[stop].max()
    assert layer.row_salience.max() - layer.row_salience.min() > 0.5
    vocab, config = lee_model.vocab, lee_model.config.replace(sample=0.0)
    corpus = DeviceCorpus.from_encoded(encode(lee_docs[:5], vocab), torch.device("cpu"))
    sampler = Sampler.from_vocab(vocab, config, make_generator(0, torch.device("cpu")))
    batch = sampler.pvdm_batch(corpus, torch.arange(len(corpus)))
    p = lee_model.module.attention(batch)
    full = batch.word_mask.all(dim=1)
    uniform = 1.0 / (2 * w)
    assert (p[full] - uniform).abs().max() > 0.05


# ------------------------------------------------------------------------------------------------
# gensim's API surface: the methods and switches gensim's own test suite uses


def test_model_getitem_is_a_word_or_else_a_document(topic_docs) -> None:
    model = Doc2Vec([TaggedDocument(d.words, [f"doc{i}"]) for i, d in enumerate(topic_docs)], **FAST)
    word = model.wv.index_to_key[0]
    np.testing.assert_array_equal(model[word], model.wv[word])
    np.testing.assert_array_equal(model["doc3"], model.dv["doc3"])
    np.testing.assert_array_equal(model[2], model.wv[2])  # gensim's rule: an int the words can index is a word
    assert model[[word, "doc3"]].shape == (2, model.vector_size)
    with pytest.raises(KeyError):
        model["_*no such key"]


def test_similarity_unseen_docs_is_the_cosine_of_the_inferred_vectors(topic_model, topic_docs) -> None:
    a, b = topic_docs[0].words, topic_docs[-1].words
    va, vb = topic_model.infer_vectors([a, b])
    expected = float(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb))
    assert topic_model.similarity_unseen_docs(a, b) == pytest.approx(expected, rel=1e-5)
    assert topic_model.similarity_unseen_docs(a, a) == pytest.approx(1.0, abs=1e-5)


def test_save_word2vec_format_writes_gensim_readable_words_and_documents(topic_model, tmp_path) -> None:
    from gensim.models import KeyedVectors

    both = tmp_path / "both.bin"
    topic_model.save_word2vec_format(both, doctag_vec=True, word_vec=True, binary=True)
    kv = KeyedVectors.load_word2vec_format(both, binary=True)
    assert len(kv) == len(topic_model.wv) + len(topic_model.dv)  # one header counting both
    word, tag = topic_model.wv.index_to_key[5], topic_model.dv.index_to_key[7]
    np.testing.assert_allclose(kv[word], topic_model.wv[word])
    np.testing.assert_allclose(kv[f"*dt_{tag}"], topic_model.dv[tag])
    docs_only = tmp_path / "docs.txt"
    topic_model.save_word2vec_format(docs_only, doctag_vec=True, word_vec=False, prefix="doc_")
    kv = KeyedVectors.load_word2vec_format(docs_only)
    assert len(kv) == len(topic_model.dv) and f"doc_{tag}" in kv and word not in kv
    np.testing.assert_allclose(kv[f"doc_{tag}"], topic_model.dv[tag], atol=1e-5)


def test_load_is_called_on_the_class_not_on_a_model(topic_model, tmp_path) -> None:
    topic_model.save(tmp_path / "m", force=False)
    assert isinstance(Doc2Vec.load(tmp_path / "m"), Doc2Vec)
    with pytest.raises(AttributeError, match=r"called on the class.*Doc2Vec\.load\(path\)"):
        topic_model.load(tmp_path / "m")


def test_gensim_switches_hs_batch_words_and_shrink_windows(topic_docs) -> None:
    model = Doc2Vec(hs=0, batch_words=5000, shrink_windows=False, **FAST)
    assert model.hs == 0 and model.batch_words == 5000 and model.shrink_windows is False
    # batch_words changes nothing: same seed, same vectors
    a = Doc2Vec(topic_docs, **FAST)
    b = Doc2Vec(topic_docs, batch_words=50, **FAST)
    np.testing.assert_array_equal(a.dv.vectors, b.dv.vectors)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_shrink_windows_false_gives_every_target_its_full_window(backend) -> None:
    from attn_doc2vec.config import Doc2VecConfig
    from attn_doc2vec.corpus import build_vocabulary

    if backend == "numba":
        pytest.importorskip("numba")
        from attn_doc2vec.fused_batching import FusedSampler
    docs = [TaggedDocument([f"w{i}" for i in range(30)], [0])]
    for shrink in (True, False):
        config = Doc2VecConfig(window=4, min_count=1, sample=0, shrink_windows=shrink, device="cpu")
        vocab = build_vocabulary(docs, config)
        sampler = Sampler.from_vocab(vocab, config, make_generator(0, torch.device("cpu")))
        if backend == "numba":
            sampler = FusedSampler.from_sampler(sampler)
        corpus = DeviceCorpus.from_encoded(encode(docs, vocab), torch.device("cpu"))
        batch = sampler.pvdm_batch(corpus, torch.arange(4, 26))  # targets 4..25: full windows fit
        widths = batch.word_mask.sum(dim=1)
        if shrink:
            assert widths.min() < 8 and widths.max() <= 8  # some targets drew a shorter window
        else:
            assert bool((widths == 8).all())


def test_gensims_manual_learning_rate_loop_runs_and_warns_when_alpha_rises(topic_docs, caplog) -> None:
    """gensim's old tutorial idiom: lower alpha and min_alpha by hand between train() calls. The pair may be
    out of order for a moment; train() still refuses a schedule that is."""
    model = Doc2Vec(alpha=0.025, min_alpha=0.025, **(FAST | dict(epochs=1)))
    model.build_vocab(topic_docs)
    with caplog.at_level("WARNING", logger="attn_doc2vec.doc2vec"):
        for _ in range(2):
            model.train(topic_docs, total_examples=model.corpus_count, epochs=model.epochs)
            model.alpha -= 0.002
            assert model.alpha < model.min_alpha  # out of order, accepted
            model.min_alpha = model.alpha
        assert "Effective 'alpha' higher" not in caplog.text
        model.alpha += 0.05
        model.train(topic_docs, total_examples=model.corpus_count, epochs=model.epochs)
    assert "Effective 'alpha' higher than previous training cycles" in caplog.text
    model.alpha = 0.001  # below min_alpha: refused when it is used
    with pytest.raises(ValueError, match=r"'end_alpha' parameter must be in \[0, start_alpha=0.001\]"):
        model.train(topic_docs, total_examples=model.corpus_count, epochs=1)
    with pytest.raises(ValueError, match="'min_alpha' parameter must not exceed 'alpha'"):
        Doc2Vec(alpha=0.01, min_alpha=0.05)  # a constructor call is still checked at once


def test_syn1neg_is_a_copy_of_the_output_vectors(topic_model) -> None:
    out = topic_model.syn1neg
    np.testing.assert_array_equal(out, topic_model.module.output_vectors.detach().numpy())
    out[:] = 0
    assert topic_model.module.output_vectors.abs().sum() > 0


def test_load_with_mmap_maps_the_vectors_from_the_file(topic_model, topic_docs, tmp_path) -> None:
    topic_model.save(tmp_path / "m", sep_limit=0)  # gensim's option, without effect: arrays are always separate
    mapped = Doc2Vec.load(tmp_path / "m", mmap="r")
    np.testing.assert_array_equal(mapped.dv.vectors, topic_model.dv.vectors)
    np.testing.assert_array_equal(mapped.wv.vectors, topic_model.wv.vectors)
    tensors = next((tmp_path / "m").glob("model.*.safetensors"))
    ranges = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in open("/proc/self/maps")
              if line.rstrip().endswith(str(tensors))]
    if not ranges:
        pytest.skip("no /proc/self/maps entry for the file (not Linux?)")
    inside = lambda t: any(lo <= t.data_ptr() < hi for lo, hi in ranges)  # noqa: E731
    assert inside(mapped.module.word_vectors) and inside(mapped.module.output_vectors)
    assert not inside(Doc2Vec.load(tmp_path / "m").module.word_vectors)  # a plain load copies
    before = tensors.read_bytes()
    # training writes to private pages: the checkpoint stays as saved
    mapped.train(topic_docs, total_examples=len(topic_docs), epochs=1)
    assert not np.array_equal(mapped.wv.vectors, topic_model.wv.vectors)
    assert tensors.read_bytes() == before
    with pytest.raises(ValueError, match="mmap must be None or 'r'"):
        Doc2Vec.load(tmp_path / "m", mmap="w+")


def test_train_and_build_vocab_accept_gensims_arguments_and_refuse_unknown_ones(topic_docs) -> None:
    model = Doc2Vec(**FAST)
    model.build_vocab(corpus_iterable=topic_docs[:10], progress_per=5, keep_raw_vocab=False)
    model.train(corpus_iterable=topic_docs[:10], total_examples=10, epochs=1, word_count=0, queue_factor=2,
                report_delay=1.0)
    with pytest.raises(TypeError, match="epoch"):
        model.train(topic_docs[:10], epoch=1)  # a typo is not swallowed
    # gensim's required arguments, with gensim's messages
    with pytest.raises(ValueError, match=r"You must specify an explicit epochs count\. The usual value is "
                                         r"epochs=model\.epochs"):
        model.train(topic_docs[:10], total_examples=10)
    with pytest.raises(ValueError, match=r"You must specify either total_examples or total_words.*"
                                         r"total_examples=model\.corpus_count"):
        model.train(topic_docs[:10], epochs=1)
    before = model.epochs_trained
    model.train(topic_docs[:10], total_words=model.corpus_total_words, epochs=1)  # total_words alone will do
    assert model.epochs_trained == before + 1
    with pytest.raises(TypeError, match="min_count"):
        model.build_vocab(topic_docs[:10], min_count=1)


@pytest.mark.parametrize("dm, context", [(0, "mean"), (1, "mean")])
def test_hierarchical_softmax_learns_as_well_as_negative_sampling(lee_docs, dm: int, context: str) -> None:
    """hs=1 (gensim's Huffman tree, negative=0): documents find themselves by their inferred vectors as
    often as with negative sampling; the loss falls from its untrained value (log 2 per path node)."""
    settings = dict(dm=dm, context=context, vector_size=32, min_count=2, epochs=15, device="cpu", seed=3,
                    alpha=0.025 if dm == 0 else 0.05)

    def self_retrieval(model: Doc2Vec) -> int:
        inferred = model.infer_vectors([d.words for d in lee_docs[:40]])
        return sum(model.dv.most_similar([inferred[i]], topn=1)[0][0] == i for i in range(40))

    hs = Doc2Vec(lee_docs, hs=1, negative=0, **settings)
    ns = Doc2Vec(lee_docs, **settings)
    assert hs.syn1.shape == hs.syn1neg.shape == (len(hs.wv), 32)
    assert not hs.syn1neg.any() and hs.syn1.any()  # negative=0: only the tree's rows learn
    assert hs.loss_history[-1] < 0.9 * hs.loss_history[0]
    assert self_retrieval(hs) >= self_retrieval(ns) - 4
    assert self_retrieval(hs) >= 30
    with pytest.raises(AttributeError, match="hs=1"):
        ns.syn1  # noqa: B018


@pytest.mark.slow
def test_dm_concat_learns_as_well_as_mean_pv_dm(lee_docs) -> None:
    """dm_concat=1 (gensim's concatenation; PyTorch backend, ~10 s here): documents find themselves by their
    inferred vectors at least as often as with mean PV-DM (measured 40 vs 37 of 40) and the loss falls
    (measured 3.80 -> 1.19 per prediction)."""
    settings = dict(dm=1, vector_size=16, window=2, min_count=2, epochs=15, alpha=0.05, device="cpu", seed=3)

    def self_retrieval(model: Doc2Vec) -> int:
        inferred = model.infer_vectors([d.words for d in lee_docs[:40]])
        return sum(model.dv.most_similar([inferred[i]], topn=1)[0][0] == i for i in range(40))

    concat = Doc2Vec(lee_docs, dm_concat=1, **settings)
    mean = Doc2Vec(lee_docs, context="mean", **settings)
    assert concat.loss_history[-1] < 0.5 * concat.loss_history[0]
    assert self_retrieval(concat) >= max(self_retrieval(mean) - 4, 30)


def test_hierarchical_softmax_checkpoints_and_refusals(topic_docs, tmp_path) -> None:
    model = Doc2Vec(topic_docs, dm=0, hs=1, negative=2, **FAST)
    model.save(tmp_path / "hs")
    loaded = Doc2Vec.load(tmp_path / "hs")  # the Huffman tree is rebuilt from the saved counts
    np.testing.assert_array_equal(loaded.syn1, model.syn1)
    words = [d.words for d in topic_docs[:5]]
    np.testing.assert_array_equal(loaded.infer_vectors(words), model.infer_vectors(words))
    with pytest.raises(ValueError, match=r"hs=1 \(hierarchical softmax\) is implemented for PV-DBOW .* not for "
                                         r"context='attention'"):
        Doc2Vec(hs=1)
    with pytest.raises(ValueError, match="either 'hs' or 'negative' to be positive"):
        Doc2Vec(hs=0, negative=0)


def test_dm_concat_is_the_concat_design_and_checkpoints(topic_docs, tmp_path) -> None:
    model = Doc2Vec(topic_docs[:20], dm=1, dm_concat=1, window=2, **FAST)
    assert model.context == "concat" and model.dm_concat == 1 and model.dm_mean == 0
    assert "\0" in model.wv  # gensim's null word pads the windows
    assert model.syn1neg.shape == (len(model.wv), (1 + 2 * 2) * 8)  # gensim's layer1_size
    model.save(tmp_path / "c")
    loaded = Doc2Vec.load(tmp_path / "c")
    words = [d.words for d in topic_docs[:3]]
    np.testing.assert_array_equal(loaded.infer_vectors(words), model.infer_vectors(words))
    assert Doc2Vec(dm_mean=1).dm_concat == 0
    with pytest.raises(ValueError, match="dm_concat=1 means context='concat'"):
        Doc2Vec(dm_concat=1, context="mean")
    with pytest.raises(ValueError, match="runs on the PyTorch backend only"):
        Doc2Vec(dm_concat=1, backend="numba")


def test_dbow_words_trains_word_vectors_whose_neighbours_are_gensims() -> None:
    """dbow_words=1 on the Lee corpus: the 20 most frequent words of 4+ letters have 10 nearest neighbours that
    overlap gensim's Doc2Vec(dm=0, dbow_words=1) about as much as two gensim seeds do (measured: ours 0.42 to
    0.46, gensim seed 1 vs 2 0.455); with dbow_words=0 the word vectors stay random (measured overlap 0.0)."""
    from gensim.models.doc2vec import Doc2Vec as GensimDoc2Vec
    from gensim.test.utils import datapath

    docs = list(TaggedLineDocument(datapath("lee_background.cor")))
    settings = dict(dm=0, vector_size=32, min_count=2, epochs=10, window=5, seed=1)
    theirs = GensimDoc2Vec(docs, dbow_words=1, workers=1, **settings)
    ours = Doc2Vec(docs, dbow_words=1, device="cpu", **settings)
    untrained = Doc2Vec(docs, dbow_words=0, device="cpu", **settings)
    words = [w for w in theirs.wv.index_to_key if len(w) > 3][:20]

    def overlap(model) -> float:
        return float(np.mean([len({w for w, _ in theirs.wv.most_similar(x, topn=10)}
                                  & {w for w, _ in model.wv.most_similar(x, topn=10)}) / 10 for x in words]))

    assert overlap(ours) >= 0.3
    assert overlap(untrained) <= 0.05
    assert ours.loss_history[-1] < ours.loss_history[0]


def test_dbow_words_is_ignored_by_pv_dm_and_can_be_switched_between_train_calls(topic_docs) -> None:
    """gensim's PV-DM ignores dbow_words; PV-DBOW takes it up at the next train() (it shapes no table)."""
    a = Doc2Vec(topic_docs[:20], dm=1, context="mean", **FAST)
    b = Doc2Vec(topic_docs[:20], dm=1, context="mean", dbow_words=1, **FAST)
    np.testing.assert_array_equal(a.wv.vectors, b.wv.vectors)
    dbow = Doc2Vec(topic_docs[:20], dm=0, **FAST)
    words = dbow.wv.vectors.copy()
    dbow.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=1)
    np.testing.assert_array_equal(dbow.wv.vectors, words)  # dbow_words=0: words never move
    dbow.dbow_words = 1
    dbow.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=1)
    assert not np.array_equal(dbow.wv.vectors, words)


def test_comment_and_sorted_vocab_are_kept_in_the_checkpoint(topic_docs, tmp_path) -> None:
    model = Doc2Vec(topic_docs[:20], comment="fruit and engines", sorted_vocab=0, **FAST)
    assert model.comment == "fruit and engines"
    model.comment = "renamed"  # gensim's comment is a plain attribute
    model.save(tmp_path / "m")
    loaded = Doc2Vec.load(tmp_path / "m")
    assert (loaded.comment, loaded.sorted_vocab) == ("renamed", 0)
    assert loaded.wv.index_to_key == model.wv.index_to_key != Doc2Vec(topic_docs[:20], **FAST).wv.index_to_key
    with pytest.raises(AttributeError, match="'sorted_vocab' is fixed once the vocabulary is built"):
        model.sorted_vocab = 1


def test_estimate_memory_counts_every_table_the_model_holds(topic_model) -> None:
    report = topic_model.estimate_memory()
    held = sum(t.numel() * t.element_size() for t in [*topic_model.module.parameters(),
                                                        *topic_model.module.buffers()])
    assert report["total"] == held + report["vocab"]
    assert report["vectors"] == len(topic_model.wv) * topic_model.vector_size * 4
    assert report["doctag_syn0"] == len(topic_model.dv) * topic_model.vector_size * 4
    bigger = topic_model.estimate_memory(vocab_size=10 * len(topic_model.wv))
    assert bigger["vectors"] == 10 * report["vectors"] and bigger["total"] > report["total"]
    hs = Doc2Vec(dm=0, hs=1, negative=0, vector_size=8).estimate_memory(vocab_size=100)
    assert hs["syn1"] == hs["syn1neg"] == 100 * 8 * 4


def test_training_loads_neither_pandas_nor_torch_inductor():
    # memory a trainer does not need: pandas (~30 MB) only when an attention frame is asked for, torch._inductor
    # (~70 MB) never on the CPU
    code = ("import sys\n"
            "from gensim.test.utils import datapath\n"
            "from attn_doc2vec import Doc2Vec, TaggedLineDocument\n"
            "docs = list(TaggedLineDocument(datapath('lee_background.cor')))[:40]\n"
            "model = Doc2Vec(docs, vector_size=8, min_count=2, epochs=1, device='cpu', workers=1)\n"
            "print(*(name in sys.modules for name in ('pandas', 'matplotlib', 'torch._inductor')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]
