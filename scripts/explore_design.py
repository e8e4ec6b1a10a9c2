#!/usr/bin/env python
"""Train one PV-DM design once and score several document representations of it (a cheap probe).

For the ``attention`` design it classifies the free document vectors, the pooled document words,
and their mix (``model.dv``); for other designs ``model.dv`` only. Same data, protocol and classifier
as ``scripts/compare_gensim.py`` (transductive; logistic regression train -> test split). Writes a JSON
result file with the command, commit and versions.

    python scripts/explore_design.py --subset 3000 --epochs 10 --seed 0 --set context=attention window=5
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec.benchmark import classify  # noqa: E402
from attn_doc2vec.cli.probe import parse_probe_args, probe_parser, train_probe_model, write_probe_result  # noqa: E402
from attn_doc2vec.datasets import load_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args, started = parse_probe_args(probe_parser(__doc__), argv)
    docs = load_dataset(args.dataset, args.data_dir, subset=args.subset, seed=args.seed)
    model, seconds = train_probe_model(args, docs)
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
    write_probe_result(args, started, model, accuracy=scores, train_seconds=seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
