#!/usr/bin/env python
"""How sharp should the document's attention be when ``model.dv`` is read out? (a cheap probe)

Trains the default design once on the first ``--subset`` shuffled documents of a benchmark corpus (as
``scripts/explore_design.py`` does), then pools every document's words again from the trained word vectors and
learned scores ``r[w]`` in several ways and classifies each (same classifier and split as
``scripts/compare_gensim.py``, transductive):

- ``softmax/T``: ``softmax(r[w] / T)`` over all the document's words, for each ``--temperatures`` ``T``
  (``T = 1`` is ``model.dv``, checked; ``inf`` is the plain mean of the words, the uniform twin's readout);
- ``sampled``: the mean of ``--draws`` pools of ``pool_sample`` words drawn with replacement from the document,
  each ``softmax(r)`` over its own draw: what training pools (a train-time sample is at most ``pool_sample``
  words), where ``model.dv`` pools the whole document at once.

Training is the same for every row; only the readout differs. The labels are read only for the scores.

    python scripts/probe_pooling.py --dataset imdb --subset 5000 --epochs 20 --seed 0 --set workers=1 window=10 \\
        --out probe-pooling-imdb-5000-s0.json
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec.benchmark import classify  # noqa: E402
from attn_doc2vec.cli.probe import (  # noqa: E402
    parse_probe_args,
    pool_scores,
    probe_parser,
    train_probe_model,
    write_probe_result,
)
from attn_doc2vec.datasets import load_dataset  # noqa: E402

CHUNK = 500  # documents pooled at a time (the sampled readout gathers draws x pool_sample rows per document)


def pool_full(tokens: list[np.ndarray], scores: np.ndarray, vectors: np.ndarray, temperature: float) -> np.ndarray:
    """Each document's ``softmax(scores / temperature)``-weighted mean of its words' vectors (``inf``: plain mean)."""
    out = np.zeros((len(tokens), vectors.shape[1]), np.float64)
    for i, ids in enumerate(tokens):
        if len(ids) == 0:
            continue
        if math.isinf(temperature):
            weights = np.full(len(ids), 1.0 / len(ids))
        else:
            e = scores[ids] / temperature
            weights = np.exp(e - e.max())
            weights /= weights.sum()
        out[i] = weights @ vectors[ids]
    return out


def pool_sampled(tokens: list[np.ndarray], scores: np.ndarray, vectors: np.ndarray, size: int, draws: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The mean over ``draws`` samples of ``size`` words (with replacement) of each sample's softmax pool."""
    out = np.zeros((len(tokens), vectors.shape[1]), np.float64)
    for lo in range(0, len(tokens), CHUNK):
        part = tokens[lo:lo + CHUNK]
        lengths = np.array([len(ids) for ids in part])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        flat = np.concatenate(part) if lengths.sum() else np.zeros(0, np.int64)
        pick = (rng.random((len(part), draws, size)) * np.maximum(lengths, 1)[:, None, None]).astype(np.int64)
        words = flat[np.minimum(starts[:, None, None] + pick, max(len(flat) - 1, 0))]  # (docs, draws, size)
        e = scores[words]
        weights = np.exp(e - e.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        pooled = np.einsum("nks,nksd->nd", weights, vectors[words]) / draws
        pooled[lengths == 0] = 0.0
        out[lo:lo + CHUNK] = pooled
    return out


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__)
    parser.add_argument("--temperatures", nargs="*", type=float, default=[0.5, 1.0, 2.0, 4.0, math.inf])
    parser.add_argument("--draws", type=int, default=32, help="samples averaged by the sampled readout")
    args, started = parse_probe_args(parser, argv)
    docs = load_dataset(args.dataset, args.data_dir, subset=args.subset, seed=args.seed)
    model, seconds = train_probe_model(args, docs)
    if model.config.doc_share:
        raise SystemExit("This probe re-reads the pooled document words: use the default context, no doc_share.")
    scores = pool_scores(model).astype(np.float64)
    vectors = model.module.pool_table.detach().cpu().numpy().astype(np.float64)  # what the pooling averages
    if scores.ndim > 1:
        if scores.shape[1] > 1:
            raise SystemExit("This probe reads one head: use pool_heads=1.")
        scores = scores[:, 0]
    index = model.wv.key_to_index
    labelled = [d for d in docs if d.label is not None and d.split in ("train", "test")]
    tokens = [np.array([index[w] for w in d.words if w in index], np.int64) for d in labelled]
    is_train = np.array([d.split == "train" for d in labelled])
    labels = np.array([d.label for d in labelled])

    def score(table: np.ndarray) -> float:
        return classify(table[is_train], labels[is_train], table[~is_train], labels[~is_train])

    dv = np.stack([model.dv[d.tags[0]] for d in labelled])
    readouts = {"model.dv": dv}
    for temperature in args.temperatures:
        readouts[f"softmax/{temperature:g}"] = pool_full(tokens, scores, vectors, temperature)
    if 1.0 in args.temperatures:  # the readout at T = 1 is model.dv's
        has_words = np.array([len(ids) > 0 for ids in tokens])  # a document with none was skipped in training
        gap = float(np.abs(readouts["softmax/1"] - dv)[has_words].max())
        if gap > 1e-3 * max(float(np.abs(dv).max()), 1.0):
            raise SystemExit(f"softmax/1 differs from model.dv by {gap:.3g}: the probe does not pool as the model")
    rng = np.random.default_rng(args.seed)
    readouts["sampled"] = pool_sampled(tokens, scores, vectors, model.config.pool_sample, args.draws, rng)
    accuracy = {}
    for name, table in readouts.items():
        accuracy[name] = score(table)
        print(f"{name}: accuracy {100 * accuracy[name]:.2f}%", flush=True)
    print(f"train {seconds:.0f}s")
    write_probe_result(args, started, model, accuracy=accuracy, train_seconds=seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
