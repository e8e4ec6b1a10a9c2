#!/usr/bin/env python
"""Does the document attention look for what the labels need? (a cheap probe)

Trains the default design on the first ``--subset`` shuffled documents of a benchmark corpus (as
``scripts/explore_design.py`` does) and compares each word's learned pooling score ``r[w]`` (the salience the
document's attention uses) with how much the word tells about the label: the mutual information between "the
word occurs in the document" and the document's label, over the labelled training documents, and how far
the word's presence skews the label distribution (a KL divergence, whatever the word's frequency). A Spearman rank
correlation near 1 says the unsupervised attention ranks words as the classifier would want them; near 0,
that it looks for something else. Also reports the same correlation for the word's IDF, and the words the
attention ranks highest and lowest. The labels are read only for this report, never in training.

    python scripts/probe_salience.py --dataset imdb --subset 5000 --epochs 20 --seed 0 --set workers=1 window=10 \\
        --out probe-salience-imdb-5000-s0.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec.cli.probe import (  # noqa: E402
    parse_probe_args,
    pool_scores,
    probe_parser,
    train_probe_model,
    write_probe_result,
)
from attn_doc2vec.datasets import load_dataset  # noqa: E402


def label_information(presence: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between each column of the 0/1 ``presence`` matrix ``(docs, words)`` and
    ``labels`` ``(docs,)``."""
    classes = np.unique(labels)
    onehot = (labels[:, None] == classes[None, :]).astype(np.float64)  # (docs, classes)
    n = len(labels)
    with_word = presence.T.astype(np.float64) @ onehot  # (words, classes): documents of class c with the word
    without = onehot.sum(0)[None, :] - with_word
    p_class = onehot.sum(0) / n
    mi = np.zeros(presence.shape[1])
    for joint in (with_word, without):
        p_joint = joint / n
        p_word = p_joint.sum(1, keepdims=True)
        ratio = np.divide(p_joint, p_word * p_class[None, :], out=np.ones_like(p_joint), where=p_joint > 0)
        mi += (p_joint * np.log(ratio)).sum(1)
    return mi


def label_skew(presence: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """KL divergence (nats) of the label distribution of the documents containing each word from the label
    distribution of all documents: how far a word's presence moves the label, whatever its frequency."""
    classes = np.unique(labels)
    onehot = (labels[:, None] == classes[None, :]).astype(np.float64)
    with_word = presence.T.astype(np.float64) @ onehot
    p_given = with_word / with_word.sum(1, keepdims=True)
    p_class = onehot.mean(0)
    ratio = np.divide(p_given, p_class[None, :], out=np.ones_like(p_given), where=p_given > 0)
    return (p_given * np.log(ratio)).sum(1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation, tied values sharing their average rank (many words share an IDF)."""
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__)
    parser.add_argument("--min-docs", type=int, default=20, help="words in at least this many labelled "
                        "training documents are compared")
    args, started = parse_probe_args(parser, argv)
    docs = load_dataset(args.dataset, args.data_dir, subset=args.subset, seed=args.seed)
    model, seconds = train_probe_model(args, docs)
    salience = pool_scores(model)
    if salience.ndim > 1:
        salience = salience.mean(1)
    train = [d for d in docs if d.split == "train" and d.label is not None]
    index = model.wv.key_to_index
    presence = np.zeros((len(train), len(index)), dtype=bool)
    for row, d in enumerate(train):
        presence[row, [index[w] for w in set(d.words) if w in index]] = True
    doc_freq = presence.sum(0)
    keep = np.flatnonzero(doc_freq >= args.min_docs)
    labels = np.array([d.label for d in train])
    info = label_information(presence[:, keep], labels)
    skew = label_skew(presence[:, keep], labels)
    idf = np.log(len(train) / doc_freq[keep])
    r = salience[keep]
    words = [model.wv.index_to_key[i] for i in keep]
    order = np.argsort(-r)
    informative = np.argsort(-info)
    result = {
        "words_compared": len(keep),
        "spearman_salience_label_information": spearman(r, info),
        "spearman_salience_label_skew": spearman(r, skew),
        "spearman_salience_idf": spearman(r, idf),
        "spearman_idf_label_information": spearman(idf, info),
        "highest_salience": [words[i] for i in order[:25]],
        "lowest_salience": [words[i] for i in order[-25:]],
        "most_informative": [words[i] for i in informative[:25]],
        "most_skewed": [words[i] for i in np.argsort(-skew)[:25]],
        "salience_percentile_of_most_informative": float(np.mean(
            ((rankdata(r) - 1) / (len(r) - 1))[informative[:100]])),
    }
    for key, value in result.items():
        print(f"{key}: {value}", flush=True)
    write_probe_result(args, started, model, train_seconds=seconds, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
