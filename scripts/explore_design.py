#!/usr/bin/env python
"""Train one PV-DM design once and score several document representations of it (a cheap probe).

For the ``attention`` design it classifies the free document vectors, the pooled document words,
and their mix (``model.dv``); for other designs ``model.dv`` only. Same data, protocol and classifier
as ``scripts/compare_gensim.py`` (transductive; logistic regression train -> test split). Writes a JSON
result file with the command, commit and versions.

    python scripts/explore_design.py --subset 3000 --epochs 10 --seed 0 --set context=attention window=5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec import Doc2Vec  # noqa: E402
from attn_doc2vec.benchmark import SHARED, classify  # noqa: E402
from attn_doc2vec.cli.compare import parse_overrides, provenance  # noqa: E402
from attn_doc2vec.datasets import DEFAULT_DATA_DIR, load_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["imdb", "20news"], default="20news")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="JSON result file")
    args = parser.parse_args(argv)
    args.seeds = [args.seed]
    started = provenance(args)  # before training: the commit is the one that runs
    docs = load_dataset(args.dataset, args.data_dir, subset=args.subset, seed=args.seed)
    params = {**SHARED, "epochs": args.epochs, "dm": 1, **parse_overrides(args.set)}
    params.setdefault("device", args.device)  # --set device=... wins over --device
    model = Doc2Vec(seed=args.seed, **params)
    model.build_vocab(docs)
    t0 = time.perf_counter()
    model.train(docs, total_examples=model.corpus_count, epochs=model.epochs, progress=False)
    seconds = time.perf_counter() - t0
    train = [d for d in docs if d.split == "train" and d.label is not None]
    test = [d for d in docs if d.split == "test" and d.label is not None]
    module = model.module
    views = {"dv": model.dv.vectors}
    if module.pools_documents:
        views["free"] = module.doc_vectors.data.cpu().numpy()
        views["pooled"] = module.pooled_docs.cpu().numpy()
        views["free+pooled concatenated"] = np.hstack([views["free"], views["pooled"]])
    scores = {}
    for name, table in views.items():
        train_x = np.stack([table[model.dv.get_index(d.tags[0])] for d in train])
        test_x = np.stack([table[model.dv.get_index(d.tags[0])] for d in test])
        scores[name] = classify(train_x, np.array([d.label for d in train]), test_x, np.array([d.label for d in test]))
        print(f"{name}: accuracy {100 * scores[name]:.2f}%", flush=True)
    print(f"train {seconds:.0f}s, {model.corpus_total_words * model.epochs / seconds:,.0f} words/s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "provenance": started, "params": model.config.to_dict(),
                               "accuracy": scores, "train_seconds": seconds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
