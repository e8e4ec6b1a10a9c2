#!/usr/bin/env python
"""Probe: does refining the pooled document vector with PV-DBOW's own objective close the inductive gap?

The default ``attention`` design represents a document by its attention-pooled words ``u = Σ q_i x_i``, a
forward pass, so an unseen document's vector cannot adapt to it the way PV-DBOW's inferred vector does. This
probe trains the model once per protocol (transductive: every document; inductive: the training split only),
then *refines* every document's vector (training and test documents alike, so that both protocols treat them
the same) by gradient descent on the pooled loss the model was trained with (``v`` predicts each of the
document's words through the frozen output vectors, negative sampling with the model's own table), started at
``u`` and held near it by ``mu ||v - u||²``; ``mu = inf`` is the model's own ``u``. It classifies each
representation as ``scripts/compare_gensim.py`` does and writes one JSON file with the command, commit and
versions.

    python scripts/probe_refine.py --subset 3000 --epochs 10 --seed 0 --mu inf 1 0.1 0 --out refine.json
    python scripts/probe_refine.py --dataset imdb --subset 5000 --epochs 20 --protocols transductive --set window=10 ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec import Doc2Vec  # noqa: E402
from attn_doc2vec.benchmark import SHARED, _split, classify  # noqa: E402
from attn_doc2vec.cli.compare import parse_overrides, provenance  # noqa: E402
from attn_doc2vec.corpus import encode_words  # noqa: E402
from attn_doc2vec.datasets import DEFAULT_DATA_DIR, load_dataset  # noqa: E402


def refine(model: Doc2Vec, word_lists: list[list[str]], start: np.ndarray, mu: float, steps: int, lr: float,
           seed: int) -> np.ndarray:
    """``v = argmin mean_t NS(v -> w_t) + mu ||v - u||²`` per document by full-batch gradient descent from ``u``.

    The positive terms run over each document's distinct words weighted by their counts; the negatives' term,
    ``negative`` draws per token from the model's noise table, is estimated each step from 256 shared draws
    (an unbiased estimate of its expectation).
    """
    if not np.isfinite(mu):
        return start
    encoded = encode_words(word_lists, model.vocab)
    tokens = torch.as_tensor(encoded.tokens, dtype=torch.int64)
    lengths = torch.as_tensor(np.diff(encoded.offsets), dtype=torch.int64)
    doc = torch.repeat_interleave(torch.arange(len(word_lists)), lengths)
    pairs, counts = torch.unique(doc * len(model.wv) + tokens, return_counts=True)
    pair_doc, pair_word = pairs // len(model.wv), pairs % len(model.wv)
    weight = (counts / lengths.clamp(min=1)[pair_doc]).to(torch.float32)[:, None]
    out = model.module.output_vectors.detach()[: len(model.wv)]
    cum = torch.as_tensor(model.vocab.cum_table.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    u = torch.as_tensor(start)
    v = u.clone()
    has_words = (lengths > 0).to(torch.float32)[:, None]
    for _ in range(steps):
        z = (v[pair_doc] * out[pair_word]).sum(dim=1, keepdim=True)
        grad = torch.zeros_like(v).index_add_(0, pair_doc, weight * (torch.sigmoid(z) - 1.0) * out[pair_word])
        negs = out[torch.searchsorted(cum, torch.randint(0, int(cum[-1]), (256,), generator=gen))]  # (M, D)
        grad += model.negative * (torch.sigmoid(v @ negs.T) @ negs) / 256 * has_words
        v = (v - lr * grad + 2 * lr * mu * u) / (1 + 2 * lr * mu)  # proximal step: stable for any mu
    return v.numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="20news", choices=["20news", "imdb"])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mu", type=float, nargs="+", default=[float("inf"), 1.0, 0.1, 0.0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--protocols", nargs="+", default=["transductive", "inductive"],
                        choices=["transductive", "inductive"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="Doc2Vec settings, e.g. window=10")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    args.seeds, args.device = [args.seed], "cpu"
    settings = SHARED | {"epochs": args.epochs, "workers": 1, "device": "cpu"} | parse_overrides(args.set)
    started = provenance(args)
    docs = load_dataset(args.dataset, args.data_dir, subset=args.subset, seed=args.seed)
    train, test, unsup = _split(docs)
    y_train, y_test = np.array([d.label for d in train]), np.array([d.label for d in test])
    results: dict[str, dict[str, float]] = {}
    for protocol in args.protocols:
        t0 = time.perf_counter()
        corpus = docs if protocol == "transductive" else [type(d)(d.words, [i], d.split, d.label)
                                                          for i, d in enumerate(train + unsup)]
        model = Doc2Vec(seed=args.seed, **settings)
        model.build_vocab(corpus)
        model.train(corpus, total_examples=model.corpus_count, epochs=model.epochs, progress=False)
        if protocol == "transductive":
            u_train = np.stack([model.dv[d.tags[0]] for d in train])
            u_test = np.stack([model.dv[d.tags[0]] for d in test])
        else:
            u_train = np.stack([model.dv[i] for i in range(len(train))])
            u_test = model.infer_vectors([d.words for d in test], progress=False)
        results[protocol] = {}
        for mu in args.mu:
            x_train = refine(model, [d.words for d in train], u_train, mu, args.steps, args.lr, args.seed)
            x_test = refine(model, [d.words for d in test], u_test, mu, args.steps, args.lr, args.seed + 1)
            acc = classify(x_train, y_train, x_test, y_test)
            results[protocol][str(mu)] = acc
            print(f"[{time.perf_counter() - t0:6.0f}s] {protocol} mu={mu}: accuracy {100 * acc:.2f}%", flush=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "provenance": started, "accuracy": results},
                                         indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
