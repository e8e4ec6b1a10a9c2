#!/usr/bin/env python
"""Where does the gap between the inductive and transductive protocols come from? (a cheap probe)

Takes the first ``--subset`` shuffled documents of a benchmark corpus (as ``scripts/explore_design.py``
does) and trains one model per ``--variant`` on a different corpus; every variant classifies the same
documents (logistic regression, the subset's train split -> its test split):

``transductive``
    trained on the whole subset (the protocol of ``docs/benchmarks.md``); every vector is ``model.dv``.
``inductive``
    trained on the subset's train split (and its unlabelled documents, IMDB's ``unsup``) only; test vectors
    inferred (the inductive protocol of ``attn_doc2vec.benchmark``).
``inductive-extra``
    trained on the same plus as many documents from *outside* the subset as the subset has test
    documents: the transductive corpus's size, without the test documents. If this closes the
    gap, the gap is the training corpus's size, not the test documents being unseen.
``foreign``
    trained on as many documents from outside the subset as the subset has; every vector of the subset,
    train and test alike, inferred. Whether seen training documents help the classifier (or hurt it, their
    vectors fitted to them and the test ones not).

    python scripts/probe_inductive.py --subset 3000 --epochs 10 --seed 0 --variant inductive-extra --out f.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec.benchmark import classify  # noqa: E402
from attn_doc2vec.cli.probe import parse_probe_args, probe_parser, train_probe_model, write_probe_result  # noqa: E402
from attn_doc2vec.datasets import load_dataset  # noqa: E402

VARIANTS = ("transductive", "inductive", "inductive-extra", "foreign")


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    args, started = parse_probe_args(parser, argv)
    everything = load_dataset(args.dataset, args.data_dir, seed=args.seed)  # same order as subset=...
    docs, outside = everything[:args.subset], everything[args.subset:]
    train = [d for d in docs if d.split == "train" and d.label is not None]
    test = [d for d in docs if d.split == "test" and d.label is not None]
    if args.variant == "transductive":
        corpus = docs
    elif args.variant == "inductive":  # as the benchmark's inductive protocol: unlabelled documents train too
        corpus = [d for d in docs if d.split != "test"]
    elif args.variant == "inductive-extra":
        corpus = [d for d in docs if d.split != "test"]
        corpus += outside[:len(docs) - len(corpus)]
    else:
        corpus = outside[:len(docs)]
    if args.variant in ("inductive-extra", "foreign") and len(corpus) < len(docs):
        raise SystemExit(f"Not enough documents outside the subset for {args.variant}: lower --subset.")
    seen = {d.tags[0] for d in corpus}
    corpus = [type(d)(d.words, [f"d{d.tags[0]}"], d.split, d.label) for d in corpus]  # string tags: dv holds
    # the corpus's documents only (plain int tags would size it by the largest)
    model, seconds = train_probe_model(args, corpus)

    def vectors(group):
        known = [d for d in group if d.tags[0] in seen]
        if len(known) == len(group):
            return np.stack([model.dv[f"d{d.tags[0]}"] for d in group])
        if known:
            raise AssertionError("a split is either all seen or all unseen in these variants")
        return model.infer_vectors([d.words for d in group], progress=False)

    accuracy = classify(vectors(train), np.array([d.label for d in train]),
                        vectors(test), np.array([d.label for d in test]))
    print(f"{args.variant}: accuracy {100 * accuracy:.2f}% (trained on {len(corpus)} documents, "
          f"{seconds:.0f}s)", flush=True)
    write_probe_result(args, started, model, corpus_documents=len(corpus), accuracy=accuracy, train_seconds=seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
