"""Benchmark corpora (IMDB, 20 Newsgroups) read from JSON Lines files, and their tokenizer.

The files are never copied into the project: they are read from a data directory
(``../shared/data`` by default, see :data:`DEFAULT_DATA_DIR`) described in its README.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn_doc2vec.corpus import regex_tokenize

# ../shared/data beside the repository, unless ATTN_DOC2VEC_DATA says otherwise
DEFAULT_DATA_DIR = os.environ.get("ATTN_DOC2VEC_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
FILES = {"imdb": "imdb.jsonl.gz", "20news": "20news.jsonl.gz"}


@dataclass
class LabeledDocument:
    """A benchmark document: a ``TaggedDocument`` (``words``, ``tags``) plus its split and label."""

    words: list[str]
    tags: list[int]
    split: str
    label: Any


def strip_headers(post: str) -> str:
    """Drop a news post's header block (everything up to the first blank line), as scikit-learn does."""
    _, blank, body = post.partition("\n\n")
    return body if blank else post


def load_dataset(name: str, data_dir: str | os.PathLike = DEFAULT_DATA_DIR, subset: int | None = None,
                 seed: int = 0) -> list[LabeledDocument]:
    """Read, tokenize and shuffle (once, with ``seed``) a benchmark corpus.

    Parameters
    ----------
    name : {"imdb", "20news"}
        The corpus.
    data_dir : path
        Folder holding the ``*.jsonl.gz`` files.
    subset : int, optional
        Keep only the first ``subset`` documents after shuffling (for quick runs).
    seed : int
        Shuffling seed.

    Returns
    -------
    list of LabeledDocument
        Tagged by their position in the returned list.
    """
    if name not in FILES:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(FILES)}.")
    path = Path(data_dir) / FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass --data-dir pointing at the folder with {FILES[name]} "
                                "(or set ATTN_DOC2VEC_DATA).")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    random.Random(seed).shuffle(records)
    if subset is not None:
        records = records[:subset]
    docs = []
    for i, rec in enumerate(records):
        text = strip_headers(rec["text"]) if name == "20news" else rec["text"]
        docs.append(LabeledDocument(words=regex_tokenize(text), tags=[i], split=rec["split"], label=rec["label"]))
    return docs
