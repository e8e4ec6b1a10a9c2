"""Corpus inputs, the vocabulary (identical to gensim's) and encoding into flat arrays."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models.doc2vec import Doc2Vec as GensimDoc2Vec

from attn_doc2vec import Doc2Vec, TaggedDocument, TaggedLineDocument
from attn_doc2vec.config import Doc2VecConfig
from attn_doc2vec.corpus import LineCorpus, build_vocabulary, check_document, encode, encode_words, resolve_corpus

VOCAB_SETTINGS = [
    dict(),  # gensim's defaults: min_count=5, sample=1e-3, ns_exponent=0.75
    dict(min_count=2, max_vocab_size=3000),  # pruned while scanning
    dict(min_count=1, max_final_vocab=500),  # effective min_count raised
    dict(min_count=2, sample=0.0),
    dict(min_count=2, sample=1e-5, ns_exponent=0.5),
    dict(min_count=3, ns_exponent=-0.5, negative=10),
    dict(min_count=2, sorted_vocab=0),  # words in first-seen order
]


@pytest.mark.parametrize("settings", VOCAB_SETTINGS,
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "defaults")
def test_vocabulary_equals_gensims(lee_docs, settings) -> None:
    model = Doc2Vec(vector_size=8, device="cpu", **settings)
    model.build_vocab(lee_docs)
    reference = GensimDoc2Vec(vector_size=8, **settings)
    reference.build_vocab(lee_docs)
    assert 0 < len(model.wv) < 10000
    assert model.wv.index_to_key == reference.wv.index_to_key  # words and order
    assert [model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key] == \
        [reference.wv.get_vecattr(w, "count") for w in reference.wv.index_to_key]
    np.testing.assert_array_equal(model.wv.expandos["sample_int"], reference.wv.expandos["sample_int"])
    np.testing.assert_array_equal(model.vocab.cum_table, reference.cum_table)
    assert model.dv.index_to_key == reference.dv.index_to_key
    assert (model.corpus_count, model.corpus_total_words) == (reference.corpus_count, reference.corpus_total_words)


def test_vocabulary_settings_take_effect(lee_docs) -> None:
    """The settings above really change the vocabulary (so the parity test covers each rule)."""
    sizes = {}
    for name, settings in [("base", dict(min_count=2)), ("max_vocab", dict(min_count=2, max_vocab_size=3000)),
                           ("final", dict(min_count=1, max_final_vocab=500))]:
        sizes[name] = len(build_vocabulary(lee_docs, Doc2VecConfig(**settings)).wv)
    assert sizes["max_vocab"] < sizes["base"]
    assert sizes["final"] <= 500
    no_sample = build_vocabulary(lee_docs, Doc2VecConfig(min_count=2, sample=0.0))
    assert np.all(no_sample.sample_int == 2**32 - 1)  # every word always kept
    sampled = build_vocabulary(lee_docs, Doc2VecConfig(min_count=2))
    assert sampled.sample_int[0] < 2**31  # "the" is downsampled
    flat = build_vocabulary(lee_docs, Doc2VecConfig(min_count=2, ns_exponent=0.0))
    np.testing.assert_allclose(np.diff(flat.cum_table.astype(np.int64)), flat.cum_table[0], rtol=1e-3)
    assert np.all(np.diff(sampled.counts) <= 0)  # sorted_vocab=1 (default): by descending frequency
    unsorted = build_vocabulary(lee_docs, Doc2VecConfig(min_count=2, sorted_vocab=0))
    first_seen = list(dict.fromkeys(w for d in lee_docs for w in d.words if w in sampled.wv.key_to_index))
    assert unsorted.wv.index_to_key == first_seen != sampled.wv.index_to_key


def test_vocabulary_with_string_and_several_tags_equals_gensims(topic_docs) -> None:
    docs = [TaggedDocument(d.words, [f"doc{i}", "fruit" if i % 2 == 0 else "engine"]) for i, d in enumerate(topic_docs)]
    model = Doc2Vec(vector_size=8, min_count=1, device="cpu")
    model.build_vocab(docs)
    reference = GensimDoc2Vec(vector_size=8, min_count=1)
    reference.build_vocab(docs)
    assert model.dv.index_to_key == reference.dv.index_to_key
    assert len(model.dv) == len(docs) + 2
    assert model.wv.index_to_key == reference.wv.index_to_key


def test_counts_are_the_corpus_frequencies(topic_docs) -> None:
    vocab = build_vocabulary(topic_docs, Doc2VecConfig(min_count=1))
    counted = {}
    for doc in topic_docs:
        for word in doc.words:
            counted[word] = counted.get(word, 0) + 1
    assert {w: vocab.wv.get_vecattr(w, "count") for w in vocab.wv.index_to_key} == counted
    assert list(vocab.counts) == sorted(vocab.counts, reverse=True)


# ------------------------------------------------------------------------------------------------
# Corpus inputs


def test_tagged_line_document_and_corpus_file_give_the_same_vocabulary(tmp_path, topic_docs) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(d.words) for d in topic_docs) + "\n", encoding="utf-8")
    from_list = build_vocabulary(topic_docs, Doc2VecConfig(min_count=2))
    from_file = build_vocabulary(resolve_corpus(None, path), Doc2VecConfig(min_count=2))
    from_lines = build_vocabulary(TaggedLineDocument(str(path)), Doc2VecConfig(min_count=2))
    for vocab in (from_file, from_lines):
        assert vocab.wv.index_to_key == from_list.wv.index_to_key
        np.testing.assert_array_equal(vocab.counts, from_list.counts)
        assert vocab.dv.index_to_key == list(range(len(topic_docs)))
    encoded = encode(resolve_corpus(None, path), from_file)
    np.testing.assert_array_equal(encoded.tokens, encode(topic_docs, from_list).tokens)


def test_int_str_and_several_tags_are_encoded_as_rows() -> None:
    docs = [TaggedDocument(["a", "b"], [0]), TaggedDocument(["b", "c"], [1, "x"]), TaggedDocument(["c"], ["x"]),
            TaggedDocument(["a", "c"], ["y", 2, "x"])]
    vocab = build_vocabulary(docs, Doc2VecConfig(min_count=1))
    assert vocab.dv.index_to_key == [0, 1, 2, "x", "y"]  # gensim: plain ints first, then strings
    encoded = encode(docs, vocab)
    assert encoded.tags.tolist() == [[0, -1, -1], [1, 3, -1], [3, -1, -1], [4, 2, 3]]


def test_encoding_is_flat_with_offsets_and_drops_unknown_words() -> None:
    train = [TaggedDocument(["a", "b", "a", "c"], [0]), TaggedDocument(["b", "b", "c"], [1])]
    vocab = build_vocabulary(train, Doc2VecConfig(min_count=1))
    row = vocab.wv.key_to_index
    docs = [TaggedDocument(["a", "zzz", "b"], [1]), TaggedDocument(["qqq"], [0]), TaggedDocument(["c", "a"], [0])]
    encoded = encode(docs, vocab)
    assert encoded.tokens.tolist() == [row["a"], row["b"], row["c"], row["a"]]
    assert encoded.offsets.tolist() == [0, 2, 2, 4]
    assert encoded.lengths().tolist() == [2, 0, 2]
    assert encoded.n_docs == 3
    assert encoded.raw_words == 6  # unknown words still count for progress, as in gensim
    assert encoded.tags[:, 0].tolist() == [1, 0, 0]


def test_long_documents_are_encoded_in_full() -> None:
    """gensim's Cython path silently truncates documents at 10,000 tokens; we must not."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in rng.integers(0, 50, size=25_000)]
    docs = [TaggedDocument(words, [0]), TaggedDocument(words[:7], [1])]
    vocab = build_vocabulary(docs, Doc2VecConfig(min_count=1))
    encoded = encode(docs, vocab)
    assert encoded.lengths().tolist() == [25_000, 7]
    assert [vocab.wv.index_to_key[i] for i in encoded.tokens[:25_000]] == words


def test_a_corpus_larger_than_the_vocabularys_is_encoded_whole() -> None:
    """The token buffer starts at the vocabulary's corpus size and grows: a larger corpus loses nothing."""
    vocab = build_vocabulary([TaggedDocument(["a", "b"], [0]), TaggedDocument(["c"], [1])], Doc2VecConfig(min_count=1))
    rng = np.random.default_rng(1)
    docs = [TaggedDocument(list(rng.choice(["a", "b", "c", "zzz"], size=int(n))), [int(i) % 2])
            for i, n in enumerate(rng.integers(0, 400, size=30))]
    encoded = encode(docs, vocab)
    expected = [vocab.wv.key_to_index[w] for d in docs for w in d.words if w != "zzz"]
    assert len(expected) > 2048 and encoded.tokens.tolist() == expected
    assert encoded.lengths().tolist() == [sum(w != "zzz" for w in d.words) for d in docs]
    assert encoded.tags[:, 0].tolist() == [i % 2 for i in range(30)]


def test_encode_words_tags_each_list_by_position() -> None:
    vocab = build_vocabulary([TaggedDocument(["a", "b"], ["t"])], Doc2VecConfig(min_count=1))
    encoded = encode_words([["a"], ["nope"], ["b", "a"]], vocab)
    assert encoded.tags.tolist() == [[0], [1], [2]]
    assert encoded.lengths().tolist() == [1, 0, 2]


# ------------------------------------------------------------------------------------------------
# Errors


def test_words_given_as_a_string_are_refused() -> None:
    with pytest.raises(TypeError, match=r"Document #1: 'words' must be a list of tokens \(not a single string.*split"):
        build_vocabulary([TaggedDocument(["ok"], [0]), TaggedDocument("a whole sentence", [1])],
                         Doc2VecConfig(min_count=1))


def test_documents_that_are_not_tagged_are_refused() -> None:
    with pytest.raises(TypeError, match=r"Document #0 is a list, not a TaggedDocument: wrap it"):
        check_document(["a", "b"], 0)
    with pytest.raises(TypeError, match=r"'tags' must be a list of tags.*tags=\['doc'\]"):
        check_document(TaggedDocument(["a"], "doc"), 3)
    with pytest.raises(TypeError, match=r"'tags' must be a list of tags.*tags=\[7\]"):
        check_document(TaggedDocument(["a"], 7), 3)


def test_resolve_corpus_errors(tmp_path) -> None:
    docs = [TaggedDocument(["a"], [0])]
    with pytest.raises(TypeError, match="exactly one of 'documents'.*'corpus_file'"):
        resolve_corpus(docs, tmp_path / "x.txt")
    with pytest.raises(TypeError, match="exactly one"):
        resolve_corpus(None, None)
    with pytest.raises(FileNotFoundError, match="corpus_file .*missing.txt.* does not exist"):
        resolve_corpus(None, tmp_path / "missing.txt")
    with pytest.raises(TypeError, match="'corpus_file' must be a path .* not int"):  # gensim raises TypeError too
        resolve_corpus(None, 11111)
    with pytest.raises(TypeError, match="'corpus_file' must be a path .* not list"):
        resolve_corpus(None, docs)
    with pytest.raises(TypeError, match="iterable of TaggedDocument, not int"):
        resolve_corpus(11111, None)
    with pytest.raises(TypeError, match="not a string; to read a file pass corpus_file"):
        resolve_corpus("some text here", None)
    with pytest.raises(TypeError, match="wrap a single document in a list"):
        resolve_corpus(docs[0], None)


def test_one_shot_generator_is_refused_only_when_read_twice() -> None:
    docs = [TaggedDocument(["a"], [0])]
    with pytest.raises(TypeError, match=r"one-shot iterator .* read 2 times.*pass a list"):
        resolve_corpus((d for d in docs), None, passes=2)
    gen = (d for d in docs)
    assert resolve_corpus(gen, None, passes=1) is gen


def test_empty_corpus_and_empty_vocabulary() -> None:
    with pytest.raises(ValueError, match="corpus is empty"):
        build_vocabulary([], Doc2VecConfig())
    with pytest.raises(ValueError, match="2 documents but not a single word"):
        build_vocabulary([TaggedDocument([], [0]), TaggedDocument([], [1])], Doc2VecConfig())
    with pytest.raises(RuntimeError, match="corpus is empty"):  # what gensim raises, so gensim code catches it
        build_vocabulary([], Doc2VecConfig())


def test_a_vocabulary_left_empty_by_min_count_is_built_with_a_warning(caplog) -> None:
    """As gensim: build_vocab warns, and training it raises (tests/test_doc2vec.py)."""
    with caplog.at_level("WARNING", logger="attn_doc2vec.corpus"):
        vocab = build_vocabulary([TaggedDocument(["a", "b", "a"], [0])], Doc2VecConfig(min_count=5))
    assert len(vocab.wv) == 0 and len(vocab.dv) == 1
    assert "vocabulary is empty: no word occurs at least min_count=5 times in 1 documents; lower min_count" \
        in caplog.text
    vocab = build_vocabulary([TaggedDocument(["a"], [0])], Doc2VecConfig(min_count=1))
    with pytest.raises(ValueError, match="corpus is empty"):
        encode([], vocab)


def test_unknown_tag_names_the_fix() -> None:
    vocab = build_vocabulary([TaggedDocument(["a", "b"], ["known"])], Doc2VecConfig(min_count=1))
    with pytest.raises(KeyError, match="Document #1 has tag 'other'.*call build_vocab on this corpus"):
        encode([TaggedDocument(["a"], ["known"]), TaggedDocument(["b"], ["other"])], vocab)


def test_line_corpus_reads_text_and_json_lines(tmp_path) -> None:
    import gzip
    import json

    text = tmp_path / "docs.txt"
    text.write_text("Hello, World!\nsecond line here\n", encoding="utf-8")
    assert list(LineCorpus(text)) == [TaggedDocument(["hello", "world"], [0]),
                                      TaggedDocument(["second", "line", "here"], [1])]
    assert [d.words for d in LineCorpus(text, tokenizer="regex")][0] == ["hello", ",", "world", "!"]
    records = [{"text": "a b", "tags": ["x", 3]}, {"text": "c"}, {"text": "d", "tags": "solo"}]
    packed = tmp_path / "docs.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in records) + "\n")
    corpus = LineCorpus(packed, tokenizer="whitespace")
    assert [d.tags for d in corpus] == [["x", 3], [1], ["solo"]]
    assert [d.words for d in corpus] == [["a", "b"], ["c"], ["d"]]  # re-iterable


def test_line_corpus_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LineCorpus(tmp_path / "none.txt")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl, line 2: expected a JSON object with a 'text' field"):
        list(LineCorpus(bad))
    with pytest.raises(ValueError, match="Unknown tokenizer 'nltk'.*choose one of"):
        LineCorpus(bad, tokenizer="nltk")


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's malloc_trim: Linux")
def test_release_free_heap_gives_freed_heap_memory_back() -> None:
    """Memory freed in the middle of the C heap (a live allocation after it) goes back to the system."""
    from attn_doc2vec.corpus import release_free_heap

    def anonymous_mb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("RssAnon"))

    arrays = [np.ones(1000) for _ in range(40_000)]  # 8 KB each, from the C heap: about 320 MB
    keep = np.ones(1000)  # above them: the heap's top cannot shrink by itself
    before = anonymous_mb()
    del arrays
    release_free_heap()
    assert anonymous_mb() < before - 200
    assert keep.sum() == 1000
