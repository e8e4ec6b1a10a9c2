"""What the one-model probes in ``scripts/`` share (``explore_design.py``, ``probe_inductive.py``,
``probe_salience.py``, ``probe_pooling.py``): their flags, the model they train, the document attention's learned
scores they read, and the JSON result file they write.

Not a console command: each probe is a script that adds its own flags to :func:`probe_parser`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attn_doc2vec.cli.compare import parse_overrides, provenance
from attn_doc2vec.datasets import DEFAULT_DATA_DIR


def probe_parser(description: str | None) -> argparse.ArgumentParser:
    """The flags every probe takes: data set, size, epochs, seed, ``--set KEY=VALUE``, device and ``--out``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["imdb", "20news"], default="20news")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="JSON result file")
    return parser


def parse_probe_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, dict]:
    """The parsed flags and the run's provenance, taken before training (the commit is the one that runs)."""
    args = parser.parse_args(argv)
    args.seeds = [args.seed]
    return args, provenance(args)


def probe_model(args: argparse.Namespace) -> Any:
    """An untrained PV-DM model with the benchmark's shared settings, ``--epochs`` and the ``--set`` overrides."""
    from attn_doc2vec import Doc2Vec
    from attn_doc2vec.benchmark import SHARED

    params = {**SHARED, "epochs": args.epochs, "dm": 1, **parse_overrides(args.set)}
    params.setdefault("device", args.device)  # --set device=... wins over --device
    return Doc2Vec(seed=args.seed, **params)


def train_probe_model(args: argparse.Namespace, docs: list) -> tuple[Any, float]:
    """:func:`probe_model` with its vocabulary built from ``docs`` and trained on them (no progress bar); returns
    the model and the seconds ``train()`` took."""
    model = probe_model(args)
    model.build_vocab(docs)
    t0 = time.perf_counter()
    model.train(docs, total_examples=model.corpus_count, epochs=model.epochs, progress=False)
    return model, time.perf_counter() - t0


def pool_scores(model: Any) -> np.ndarray:
    """Every vocabulary word's learned score ``r[w]`` in the document attention's pooling, ``(V,)`` or ``(V, heads)``;
    exits with a message for a model whose design does not pool the document's words."""
    module = model.module
    if not module.pools_documents:
        raise SystemExit("This probe reads the document attention's scores: use the default context.")
    every_word = torch.arange(len(model.wv), device=module.layer.row_salience.device)
    with torch.no_grad():
        return module.layer.pool_weights(every_word).cpu().numpy()


def write_probe_result(args: argparse.Namespace, started: dict, model: Any, **fields: Any) -> None:
    """Write ``--out``: the flags, the provenance, the model's whole config and the probe's own ``fields``."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "provenance": started, "params": model.config.to_dict(),
                               **fields}, indent=1))
