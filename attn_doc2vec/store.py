"""An encoded corpus on disk: written in one streaming pass, trained from by memory map.

A corpus store is a directory of plain numpy files that any numpy can read (``np.load``):

- ``tokens.npy``: ``(N,)`` int32 word rows of every in-vocabulary token, documents one after another;
- ``offsets.npy``: ``(n_docs + 1,)`` int64, document ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``;
- ``tags.npy``: ``(n_docs, T)`` int64 document-vector rows of each document's tags, ``-1`` padded;
- ``store.json``: the format version, the counts, and the fingerprint of the vocabulary the rows refer to.

:func:`write_corpus_store` encodes a corpus once (tokens are streamed to disk as they are encoded, never
held in memory together); :func:`open_corpus_store` maps it back as an
:class:`~attn_doc2vec.corpus.EncodedCorpus` without reading it, so that ``train(corpus_store=...)`` skips
the encoding pass and the corpus's token lists. A store refers to one vocabulary: opening it with another
is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from array import array
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from attn_doc2vec.corpus import EMPTY_CORPUS, EncodedCorpus, Vocabulary, encode_each, tag_matrix

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
_HEADER_BYTES = 128  # a .npy header reserved at the start of tokens.npy and filled in once N is known


def vocabulary_fingerprint(vocab: Vocabulary) -> str:
    """SHA-256 of the word and tag keys in row order: equal exactly when the rows mean the same keys."""
    digest = hashlib.sha256()
    for keys in (vocab.wv.index_to_key, vocab.dv.index_to_key):
        for key in keys:
            digest.update(repr(key).encode("utf-8", "surrogatepass") + b"\0")
        digest.update(b"\1")
    return digest.hexdigest()


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header of exactly :data:`_HEADER_BYTES` bytes (numpy pads with spaces, so do we)."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    body = text.ljust(_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin-1")


def write_corpus_store(documents: Iterable, vocab: Vocabulary, path: str | os.PathLike) -> Path:
    """Encode ``documents`` with ``vocab`` into a new corpus store at ``path``, in one streaming pass.

    Parameters
    ----------
    documents : iterable of TaggedDocument
        The corpus (any iterable, read once).
    vocab : Vocabulary
        The vocabulary the rows refer to (``model.vocab`` after ``build_vocab``).
    path : str or os.PathLike
        A directory that does not exist yet (an existing one is never overwritten).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists.
    KeyError
        If a document has a tag the vocabulary does not know.
    ValueError
        If the corpus is empty.

    Notes
    -----
    The store is written into a hidden sibling directory and renamed into place when complete: an
    interrupted write leaves no store at ``path`` (and removes its partial directory).
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{str(path)!r} exists: a corpus store is written to a new directory (choose another "
                              "path, or delete that one yourself if it is an old store).")
    partial = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    partial.mkdir(parents=True)
    try:
        lengths, tag_flat, tag_counts = array("q"), array("q"), array("q")  # flat: no object per document
        raw_words = 0
        with open(partial / "tokens.npy", "wb") as out:
            out.write(b"\0" * _HEADER_BYTES)
            for rows, tags, raw in encode_each(documents, vocab):
                out.write(rows.tobytes())
                lengths.append(len(rows))
                tag_flat.extend(tags)
                tag_counts.append(len(tags))
                raw_words += raw
            if not lengths:
                raise ValueError(EMPTY_CORPUS)
            n_tokens = int(sum(lengths))
            out.seek(0)
            out.write(_npy_header(np.int32, (n_tokens,)))
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(partial / "offsets.npy", offsets)
        np.save(partial / "tags.npy", tag_matrix(tag_flat, tag_counts))
        header = {"format": STORE_FORMAT, "documents": len(lengths), "tokens": n_tokens, "raw_words": raw_words,
                  "vocabulary": {"words": len(vocab.wv), "tags": len(vocab.dv),
                                 "sha256": vocabulary_fingerprint(vocab)}}
        (partial / "store.json").write_text(json.dumps(header, indent=1) + "\n")
        os.replace(partial, path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # ours alone: written above, never the user's
        raise
    logger.info("wrote corpus store %s: %d documents, %d tokens", path, len(lengths), n_tokens)
    return path


def open_corpus_store(path: str | os.PathLike, vocab: Vocabulary | None = None) -> EncodedCorpus:
    """Map a corpus store written by :func:`write_corpus_store` (nothing is read until it is used).

    Parameters
    ----------
    path : str or os.PathLike
        The store's directory.
    vocab : Vocabulary, optional
        When given, the store must have been written with this vocabulary (same keys in the same rows).

    Returns
    -------
    EncodedCorpus
        Its arrays are copy-on-write memory maps of the store's files (training never writes to them).

    Raises
    ------
    FileNotFoundError
        If ``path`` holds no store.
    ValueError
        If the store's format is unknown, its files disagree with its header, or it was written with
        another vocabulary.
    """
    path = Path(path)
    if not (path / "store.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a corpus store (no store.json): write one with "
                                "model.write_corpus_store(documents, path).")
    header = json.loads((path / "store.json").read_text())
    if header.get("format") != STORE_FORMAT:
        raise ValueError(f"{str(path)!r} is a corpus store of format {header.get('format')!r}; this version reads "
                         f"format {STORE_FORMAT}: write the store again with this version.")
    if vocab is not None and header["vocabulary"]["sha256"] != vocabulary_fingerprint(vocab):
        raise ValueError(f"The corpus store {str(path)!r} was written with another vocabulary "
                         f"({header['vocabulary']['words']} words, {header['vocabulary']['tags']} tags; this model: "
                         f"{len(vocab.wv)}, {len(vocab.dv)}), so its rows mean other words: write it again with "
                         "this model's write_corpus_store.")
    tokens = np.load(path / "tokens.npy", mmap_mode="c")
    offsets = np.load(path / "offsets.npy", mmap_mode="c")
    tags = np.load(path / "tags.npy", mmap_mode="c")
    if (tokens.dtype != np.int32 or tokens.shape != (header["tokens"],) or offsets.shape != (header["documents"] + 1,)
            or tags.shape[0] != header["documents"] or int(offsets[-1]) != header["tokens"]):
        raise ValueError(f"The corpus store {str(path)!r} is damaged: its files disagree with store.json. Write it "
                         "again.")
    return EncodedCorpus(tokens=tokens, offsets=offsets, tags=tags, raw_words=int(header["raw_words"]))
