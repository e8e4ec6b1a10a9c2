"""Corpus streaming, vocabulary and encoding, through gensim.

gensim builds the vocabulary (so word counts, order, downsampling and the
negative-sampling table are exactly gensim's), and every document is encoded
once into flat integer arrays (:class:`EncodedCorpus`) that training slices with
vectorized operations.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import itertools
import json
import logging
import os
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from gensim.models.doc2vec import Doc2Vec as GensimDoc2Vec
from gensim.models.doc2vec import TaggedDocument, TaggedLineDocument
from gensim.models.keyedvectors import KeyedVectors
from gensim.utils import simple_preprocess

from attn_doc2vec.config import Doc2VecConfig

logger = logging.getLogger(__name__)


HUFFMAN_ATTRIBUTES = ("code", "point")  # gensim's per-word Huffman attributes (hs=1)


@dataclass
class Vocabulary:
    """What gensim's ``build_vocab`` decided, as plain data.

    Attributes
    ----------
    wv : KeyedVectors
        Words in gensim's order with their ``count`` and ``sample_int`` attributes.
    dv : KeyedVectors
        Document tags in gensim's order.
    cum_table : numpy.ndarray
        gensim's cumulative negative-sampling table (uint32).
    corpus_count, corpus_total_words : int
        Documents and raw tokens seen while scanning.
    """

    wv: KeyedVectors
    dv: KeyedVectors
    cum_table: np.ndarray
    corpus_count: int
    corpus_total_words: int

    @property
    def sample_int(self) -> np.ndarray:
        """Per-word keep threshold: a word is kept when ``sample_int > uniform uint32`` (gensim's rule)."""
        return np.asarray(self.wv.expandos["sample_int"], dtype=np.int64)

    @property
    def counts(self) -> np.ndarray:
        """Per-word corpus counts."""
        return np.asarray(self.wv.expandos["count"], dtype=np.int64)

    def huffman_tree(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """gensim's Huffman coding of the words, for hierarchical softmax (``hs=1``), as padded arrays.

        gensim's ``code`` and ``point`` word attributes (built by its ``build_vocab`` with ``hs=1``, or here
        from the counts by gensim's own function, which is deterministic).

        Returns
        -------
        points : numpy.ndarray
            ``(V, L)`` int64 inner-node rows on each word's path from the root (0 on padding).
        codes : numpy.ndarray
            ``(V, L)`` uint8 branch taken at each node (gensim predicts ``1 - code``).
        lengths : numpy.ndarray
            ``(V,)`` int64 path lengths.
        """
        if "code" not in self.wv.expandos:
            from gensim.models.word2vec import _assign_binary_codes

            _assign_binary_codes(self.wv)
        codes, points = self.wv.expandos["code"], self.wv.expandos["point"]
        lengths = np.array([len(c) for c in codes], dtype=np.int64)
        width = max(1, int(lengths.max(initial=0)))
        out_points = np.zeros((len(codes), width), np.int64)
        out_codes = np.zeros((len(codes), width), np.uint8)
        for i, (code, point) in enumerate(zip(codes, points, strict=True)):  # once per vocabulary, not per token
            out_points[i, : len(point)] = point
            out_codes[i, : len(code)] = code
        return out_points, out_codes, lengths


@dataclass
class EncodedCorpus:
    """A corpus as flat arrays: plain data that could just as well be memory-mapped from disk.

    Attributes
    ----------
    tokens : numpy.ndarray
        ``(N,)`` int32 word rows of every in-vocabulary token, documents one after another.
    offsets : numpy.ndarray
        ``(n_docs + 1,)`` int64; document ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``.
    tags : numpy.ndarray
        ``(n_docs, T)`` int64 document-vector rows of each document's tags, ``-1`` padded.
    raw_words : int
        Raw tokens in the corpus (out-of-vocabulary ones included): the unit of words/s and progress.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    tags: np.ndarray
    raw_words: int

    @property
    def n_docs(self) -> int:
        """Number of documents."""
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        """In-vocabulary tokens per document."""
        return np.diff(self.offsets)


def check_document(doc: Any, index: int) -> None:
    """Raise a ``TypeError`` naming the fix when ``doc`` is not a usable ``TaggedDocument``."""
    if not hasattr(doc, "words") or not hasattr(doc, "tags"):
        raise TypeError(
            f"Document #{index} is a {type(doc).__name__}, not a TaggedDocument: wrap it as "
            "TaggedDocument(words=[...tokens...], tags=[...])."
        )
    if isinstance(doc.words, (str, bytes)):
        raise TypeError(
            f"Document #{index}: 'words' must be a list of tokens (not a single string {doc.words[:40]!r}); "
            "split it first, e.g. words=text.split() or gensim.utils.simple_preprocess(text)."
        )
    if isinstance(doc.tags, (str, bytes)) or not isinstance(doc.tags, Iterable):
        raise TypeError(
            f"Document #{index}: 'tags' must be a list of tags (not {doc.tags!r}); write tags=[{doc.tags!r}]."
        )
    for tag in doc.tags:
        if not _savable_key(tag):
            raise TypeError(
                f"Document #{index} has tag {tag!r} of type {type(tag).__name__}: tags must be str, int, float or "
                f"tuples of these, so that a saved model loads again; convert it, e.g. tags=[str(tag)]."
            )


def _savable_key(key: Any) -> bool:
    """Whether a tag survives a checkpoint's JSON unchanged (see :func:`attn_doc2vec.checkpoint.encode_key`)."""
    if isinstance(key, tuple):
        return all(_savable_key(k) for k in key)
    return isinstance(key, (str, int, float, np.integer)) and key == key  # NaN never equals itself


def resolve_corpus(documents: Iterable | None, corpus_file: str | os.PathLike | None,
                   passes: int = 1) -> Iterable:
    """Return a re-iterable corpus from exactly one of ``documents`` / ``corpus_file``.

    Parameters
    ----------
    documents : iterable of TaggedDocument, optional
        Any re-iterable of documents (a list, ``TaggedLineDocument``, ...).
    corpus_file : path, optional
        One document per line, tokens separated by spaces; tagged by line number (gensim's format).
    passes : int
        How many times the caller will iterate; a one-shot iterator is refused when it exceeds 1.
    """
    if (documents is None) == (corpus_file is None):  # TypeError, as gensim raises
        raise TypeError("Pass exactly one of 'documents' (corpus_iterable) or 'corpus_file'.")
    if corpus_file is not None:
        if not isinstance(corpus_file, (str, os.PathLike)):
            raise TypeError(f"'corpus_file' must be a path (str or os.PathLike), not {type(corpus_file).__name__}; "
                            "pass documents in memory as documents=... (corpus_iterable=...).")
        if not os.path.isfile(corpus_file):
            raise FileNotFoundError(f"corpus_file {str(corpus_file)!r} does not exist.")
        return TaggedLineDocument(corpus_file)
    if isinstance(documents, (str, bytes)):
        raise TypeError(
            "'documents' must be an iterable of TaggedDocument, not a string; to read a file pass corpus_file=path."
        )
    if not isinstance(documents, Iterable):
        raise TypeError(f"'documents' must be an iterable of TaggedDocument, not {type(documents).__name__}.")
    if isinstance(documents, TaggedDocument):
        raise TypeError("'documents' must be an iterable of TaggedDocument; wrap a single document in a list.")
    if passes > 1 and iter(documents) is documents:
        raise TypeError(
            f"'documents' is a one-shot iterator (e.g. a generator) but it must be read {passes} times "
            "(vocabulary scan and training): pass a list, a TaggedLineDocument, or a class whose __iter__ "
            "restarts the stream."
        )
    return documents


def checked(documents: Iterable) -> Iterator:
    """Yield the documents, validating each one."""
    for i, doc in enumerate(documents):
        check_document(doc, i)
        yield doc


_REGEX_TOKEN = re.compile(r"\w+|[^\w\s]")


def regex_tokenize(text: str) -> list[str]:
    """Lower-case, drop HTML ``<br />``, and keep words and punctuation marks as tokens."""
    return _REGEX_TOKEN.findall(text.replace("<br />", " ").lower())


TOKENIZERS = {"simple_preprocess": simple_preprocess, "whitespace": str.split, "regex": regex_tokenize}


class LineCorpus:
    """A re-iterable corpus read lazily from a file, one document per line.

    Plain text (each line a document, tagged by its line number) or JSON Lines
    (``.jsonl`` / ``.jsonl.gz``: a ``text`` field and optional ``tags`` list, tagged
    by line number when absent).

    Parameters
    ----------
    path : path
        The file.
    tokenizer : str or callable
        A name from :data:`TOKENIZERS` (default gensim's ``simple_preprocess``) or a function ``str -> list[str]``.
    """

    def __init__(self, path: str | os.PathLike, tokenizer: str | Callable[[str], list[str]] = "simple_preprocess"):
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"Corpus file {self.path!r} does not exist.")
        if isinstance(tokenizer, str):
            if tokenizer not in TOKENIZERS:
                raise ValueError(f"Unknown tokenizer {tokenizer!r}; choose one of {sorted(TOKENIZERS)} "
                                 "or pass a function.")
            tokenizer = TOKENIZERS[tokenizer]
        self.tokenizer = tokenizer
        self.jsonl = ".jsonl" in os.path.basename(self.path)

    def __iter__(self) -> Iterator[TaggedDocument]:
        opener = gzip.open if self.path.endswith(".gz") else open
        with opener(self.path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if not self.jsonl:
                    yield TaggedDocument(self.tokenizer(line), [i])
                    continue
                try:
                    record = json.loads(line)
                    text = record["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise ValueError(f"{self.path}, line {i + 1}: expected a JSON object with a 'text' "
                                     f"field ({err}).") from err
                tags = record.get("tags", [i])
                yield TaggedDocument(self.tokenizer(text), tags if isinstance(tags, list) else [tags])


def empty_vocabulary_message(min_count: int, corpus_count: int) -> str:
    """What to say when no word occurs ``min_count`` times."""
    return (f"The vocabulary is empty: no word occurs at least min_count={min_count} times in {corpus_count} "
            "documents; lower min_count.")


class EmptyVocabularyError(ValueError, RuntimeError):
    """No vocabulary can be built: the corpus is empty or no word survives ``min_count``.

    A ``ValueError`` (the input is the problem) that is also the ``RuntimeError`` gensim raises here, so code
    written for gensim catches it too.
    """


def build_vocabulary(documents: Iterable, cfg: Doc2VecConfig, trim_rule=None) -> Vocabulary:
    """Scan the corpus with gensim and apply gensim's vocabulary rules.

    Raises
    ------
    EmptyVocabularyError
        If the corpus is empty or has no word (a ``ValueError`` and a ``RuntimeError``). A vocabulary left
        empty by ``min_count`` is built with a warning, as gensim does; training it raises.
    """
    builder = GensimDoc2Vec(
        vector_size=cfg.vector_size, dm=cfg.dm, window=cfg.window, min_count=cfg.min_count,
        max_vocab_size=cfg.max_vocab_size, max_final_vocab=cfg.max_final_vocab, sample=cfg.sample,
        # negative >= 1 so that gensim builds the cum_table even for hs-only models (unused there)
        negative=max(cfg.negative, 1), ns_exponent=cfg.ns_exponent, seed=cfg.seed, hs=cfg.hs,
        dm_concat=int(cfg.dm == 1 and cfg.context == "concat"),  # adds gensim's null word '\0' for the padding
        sorted_vocab=cfg.sorted_vocab,
    )
    total_words, corpus_count = builder.scan_vocab(corpus_iterable=checked(documents), trim_rule=trim_rule)
    if corpus_count == 0:
        raise EmptyVocabularyError("The corpus is empty: build_vocab needs at least one document.")
    if total_words == 0:
        raise EmptyVocabularyError(f"The corpus has {corpus_count} documents but not a single word.")
    builder.corpus_count, builder.corpus_total_words = corpus_count, total_words
    builder.prepare_vocab(trim_rule=trim_rule)
    if len(builder.wv) == 0:  # gensim builds it and fails at train(); so do we, with the fix named both times
        logger.warning(empty_vocabulary_message(cfg.min_count, corpus_count))
    builder.wv.vector_size = cfg.vector_size
    builder.dv.vector_size = cfg.vector_size
    return Vocabulary(
        wv=builder.wv, dv=builder.dv, cum_table=np.asarray(builder.cum_table),
        corpus_count=corpus_count, corpus_total_words=total_words,
    )


def release_free_heap() -> None:
    """Give the C heap's free memory back to the operating system (glibc's ``malloc_trim``; nothing elsewhere).

    A corpus scan frees millions of small objects (the vocabulary's raw counts, the documents' token lists);
    glibc keeps the freed heap mapped, so the process's memory stays at the scan's peak while training adds
    its own on top (measured 52 MB given back after the vocabulary of the 100,000 IMDB reviews).
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        name = ctypes.util.find_library("c")
        try:
            _MALLOC_TRIM = getattr(ctypes.CDLL(name), "malloc_trim", False) if name else False
        except OSError:
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None  # glibc's malloc_trim, once looked up (False where there is none)


def encode_each(documents: Iterable, vocab: Vocabulary) -> Iterator[tuple[np.ndarray, list[int], int]]:
    """Encode documents one at a time: each one's in-vocabulary word rows (int32), tag rows and raw length.

    Raises
    ------
    KeyError
        If a document has a tag that the vocabulary does not know.
    """
    word_index = vocab.wv.key_to_index
    for i, doc in enumerate(checked(documents)):
        # One dict lookup per token is inherent to mapping strings to rows; it runs once per train().
        rows = np.fromiter(map(word_index.get, doc.words, itertools.repeat(-1)), dtype=np.int32,
                           count=len(doc.words))
        yield rows[rows >= 0], [_tag_row(vocab.dv, tag, i) for tag in doc.tags], len(doc.words)


def tag_matrix(flat: Iterable[int], counts: Iterable[int]) -> np.ndarray:
    """``(n_docs, T)`` int64 tag rows, ``-1`` padded (``T`` the most tags of a document, at least 1), from the
    documents' tag rows one after another (``flat``) and each document's number of them (``counts``)."""
    flat, counts = np.asarray(flat, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    tags = np.full((counts.shape[0], max(1, int(counts.max(initial=1)))), -1, dtype=np.int64)
    doc = np.repeat(np.arange(counts.shape[0]), counts)
    tags[doc, np.arange(flat.shape[0]) - (np.cumsum(counts) - counts)[doc]] = flat
    return tags


EMPTY_CORPUS = ("The corpus is empty: there is nothing to train on. (A generator yields its documents only once; "
                "if build_vocab already consumed it, pass a list or a re-iterable corpus.)")


def encode(documents: Iterable, vocab: Vocabulary) -> EncodedCorpus:
    """Encode documents into flat arrays, dropping out-of-vocabulary words (as gensim does).

    Raises
    ------
    KeyError
        If a document has a tag that the vocabulary does not know.
    ValueError
        If the corpus is empty.
    """
    # One growing buffer instead of a list of small per-document arrays: those would be freed into the heap
    # after the final concatenation and stay in the process's memory (measured +0.1 GB on 100,000 reviews).
    tokens = np.empty(max(1024, min(vocab.corpus_total_words, 1 << 31)), dtype=np.int32)
    lengths, tag_flat, tag_counts = array("q"), array("q"), array("q")
    n = raw_words = 0
    for rows, tags, raw in encode_each(documents, vocab):
        if n + rows.shape[0] > tokens.shape[0]:  # grow geometrically (a corpus larger than the vocabulary's)
            grown = np.empty(max(2 * tokens.shape[0], n + rows.shape[0]), dtype=np.int32)
            grown[:n] = tokens[:n]
            tokens = grown
        tokens[n:n + rows.shape[0]] = rows
        n += rows.shape[0]
        lengths.append(rows.shape[0])
        tag_flat.extend(tags)
        tag_counts.append(len(tags))
        raw_words += raw
    if not lengths:
        raise ValueError(EMPTY_CORPUS)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.frombuffer(lengths, dtype=np.int64), out=offsets[1:])
    # much unused room (out-of-vocabulary words, another corpus): a tight copy
    tokens = tokens[:n].copy() if n < 0.9 * tokens.shape[0] else tokens[:n]
    return EncodedCorpus(tokens=tokens, offsets=offsets, tags=tag_matrix(tag_flat, tag_counts), raw_words=raw_words)


def encode_words(word_lists: list[list[str]], vocab: Vocabulary) -> EncodedCorpus:
    """Encode untagged token lists (for inference); document ``i`` gets row ``i``."""
    encoded = encode([TaggedDocument(words, []) for words in word_lists], vocab)
    encoded.tags = np.arange(len(word_lists), dtype=np.int64)[:, None]
    return encoded


def _tag_row(dv: KeyedVectors, tag: Any, doc_index: int) -> int:
    row = dv.get_index(tag, -1)  # gensim raises its own KeyError when the default is None
    if row < 0:
        raise KeyError(
            f"Document #{doc_index} has tag {tag!r}, which is not in the model's vocabulary: train on the "
            "corpus given to build_vocab, or call build_vocab on this corpus first."
        )
    return row
