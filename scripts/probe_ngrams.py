#!/usr/bin/env python
"""Probe: documents with their word n-grams appended as extra tokens, ours against gensim's PV-DBOW.

On sentiment (IMDB) our default trails gensim's PV-DBOW, and phrases ("not good", "waste of") carry much of a
review's polarity. Predicting a document's n-grams as well as its words is known to help PV-DBOW on IMDB (Li et
al. 2016, "Learning document embeddings by predicting n-grams for sentiment classification of long movie
reviews"). This probe asks, before any design work, whether our attention-pooled document gains as much: each
document's ``w1 ... wL`` becomes ``w1 ... wL w1_w2 ... w(L-1)_wL`` (for ``--ngrams 2``; ``3`` adds trigrams),
for every model alike, and each model is trained and classified as ``scripts/compare_gensim.py`` does
(transductive), once on the plain and once on the extended documents. In our PV-DM the appended n-grams are
both pooled document words and a second stretch of text whose windows hold neighbouring n-grams: a data-level
stand-in for a design that pools n-grams, not that design.

    python scripts/probe_ngrams.py --dataset imdb --subset 5000 --seed 1 --models gensim-dbow ours-dm-attention \\
        --set workers=1 window=10 --out docs/results/designs/probe-ngrams-imdb-5000-s1.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec import benchmark  # noqa: E402
from attn_doc2vec.benchmark import MODELS, RunSpec  # noqa: E402
from attn_doc2vec.cli.compare import parse_overrides, provenance  # noqa: E402
from attn_doc2vec.datasets import DEFAULT_DATA_DIR, load_dataset  # noqa: E402


def with_ngrams(words: list[str], n: int) -> list[str]:
    """``words`` followed by its 2-grams ... n-grams, each joined by ``_``."""
    grams = [" ".join(words[i:i + k]).replace(" ", "_") for k in range(2, n + 1) for i in range(len(words) - k + 1)]
    return words + grams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["imdb", "20news"], default="imdb")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=None, help="override the shared 20 epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ngrams", type=int, default=2, help="append the 2-grams ... n-grams")
    parser.add_argument("--models", nargs="+", default=["gensim-dbow", "ours-dm-attention"], choices=list(MODELS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="parameters of our models")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="JSON result file")
    args = parser.parse_args(argv)
    args.seeds = [args.seed]  # for provenance()
    started = provenance(args)
    overrides = parse_overrides(args.set)

    def extended(*a, **k):
        return [dataclasses.replace(d, words=with_ngrams(d.words, args.ngrams)) for d in load_dataset(*a, **k)]

    runs = []
    for model in args.models:
        for ngrams in (1, args.ngrams):
            benchmark.load_dataset = load_dataset if ngrams == 1 else extended  # run() reads through this name
            spec = RunSpec(model=model, dataset=args.dataset, data_dir=args.data_dir, seed=args.seed,
                           subset=args.subset, epochs=args.epochs, device=args.device, overrides=overrides)
            t0 = time.perf_counter()
            result = benchmark.run(spec)  # in this process: a fresh one would not see the extended corpus
            runs.append({"model": model, "ngrams": ngrams, "accuracy": result.accuracy, "error": 1 - result.accuracy,
                         "train_seconds": result.train_seconds, "seconds": time.perf_counter() - t0,
                         "params": spec.params(), "config": result.config})
            print(f"{model} ngrams={ngrams}: accuracy {100 * result.accuracy:.2f}% "
                  f"(error {100 * (1 - result.accuracy):.2f}%), {time.perf_counter() - t0:.0f}s", flush=True)
            Path(args.out).write_text(json.dumps({"args": vars(args), "provenance": started, "runs": runs}, indent=1))
    benchmark.load_dataset = load_dataset
    return 0


if __name__ == "__main__":
    sys.exit(main())
