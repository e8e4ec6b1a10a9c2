#!/usr/bin/env python
"""Where the default's CPU training time goes, per example, beside gensim's PV-DM mean (the Numba backend).

Trains the default model (``context="attention"``, batch rule) for one epoch on the first ``--subset`` shuffled
documents, timing each call of the layer kernel (:func:`attn_doc2vec.fused_layers._run`, one per batch) and
keeping the arguments of batch ``--batch``. That batch is then replayed ``--repeats`` times, the three
measurements interleaved:

- ``kernel``: the whole batch step (every example's gradient, the sums, one Adagrad step per row), on fresh
  copies of the tables each time;
- ``examples``: the examples' pass alone (every example's loss and gradient record,
  :func:`attn_doc2vec.fused_layers._example`, from the batch-start tables; the document samples' pooling,
  the sums and the steps left out);
- ``examples, rows in cache``: the same pass with every word and output row folded into the first 64 rows,
  so that every row it reads is in the cache: what is left is arithmetic, the gap to ``examples`` is waiting
  for rows from memory.

gensim's PV-DM mean (``dm_mean=1``) then trains one epoch of the same documents with the same settings and
threads: its seconds per example (gensim's effective words: the predictions after downsampling) are the
budget a per-example cost of ours is compared with. ``--json`` records the figures with the commit.

    python scripts/profile_kernel.py --corpus imdb --data-dir /work/shared/data --subset 5000 --threads 1 \\
        --json docs/results/speed/kernel-profile-imdb-5000.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from attn_doc2vec import Doc2Vec, fused_layers  # noqa: E402
from attn_doc2vec.cli import invocation, source_revision  # noqa: E402
from attn_doc2vec.cli.bench import cpu_model, load_documents, warm_up  # noqa: E402
from attn_doc2vec.cli.compare import parse_overrides  # noqa: E402

CACHE_ROWS = 64  # rows every index is folded into for the "rows in cache" pass


@njit(fastmath=fused_layers.FASTMATH)
def _examples_pass(design, shares, doc_slots, words, positions, word_mask, outputs, output_mask, pool_words,
                   pool_mask, pool_index, docs, wv, ov, salience, context, bias, query, scores, ctx_mode, prow, nrow,
                   rec_gd, rec_nu, rec_urows, rec_ucoef, rec_wvec, rec_uscore, rec_ucontext, rec_dectx, rec_no,
                   rec_orows, rec_ocoef, rec_ovec, rec_gpool, rec_gqd, rec_dvec, rec_loss):
    """Pass 1 of the batch rule on one thread: every example's record, as ``_run`` computes it."""
    f32 = np.float32
    dim = docs.shape[1]
    vec = np.empty((8, dim), f32)
    p, ga = np.empty(words.shape[1], f32), np.empty(words.shape[1], f32)
    q, gp = np.empty(pool_words.shape[1], f32), np.empty(pool_words.shape[1], f32)
    z, g, gq = np.empty(outputs.shape[1], f32), np.empty(outputs.shape[1], f32), np.empty(outputs.shape[1], f32)
    for b in range(doc_slots.shape[0]):
        rec_loss[b] = fused_layers._example(
            b, b, design, shares, doc_slots, words, positions, word_mask, outputs, output_mask, pool_words, pool_mask,
            pool_index, docs, wv, ov, salience, context, bias, query, scores, ctx_mode, True, prow, nrow, vec, p, ga, q,
            gp, z, g, gq, rec_gd, rec_nu, rec_urows, rec_ucoef, rec_wvec, rec_uscore, rec_ucontext, rec_dectx, rec_no,
            rec_orows, rec_ocoef, rec_ovec, rec_gpool, rec_gqd, rec_dvec)


def examples_pass(a: dict) -> None:
    """:func:`_examples_pass` on the named arguments ``a`` of ``_run`` (the pooled samples' vectors given as a
    constant, which does not change the operations)."""
    n_rows, dim = a["pool_words"].shape[0], a["docs"].shape[1]
    prow = np.full((n_rows, dim), 0.01, np.float32)
    nrow = a["pool_mask"].sum(axis=1).astype(np.int64)
    _examples_pass(a["design"], a["shares"], a["doc_slots"], a["words"], a["positions"], a["word_mask"], a["outputs"],
                   a["output_mask"], a["pool_words"], a["pool_mask"], a["pool_index"], a["docs"], a["wv"], a["ov"],
                   a["salience"], a["context"], a["bias"], a["query"], a["scores"], a["ctx_mode"], prow, nrow,
                   a["rec_gd"], a["rec_nu"], a["rec_urows"], a["rec_ucoef"], a["rec_wvec"], a["rec_uscore"],
                   a["rec_ucontext"], a["rec_dectx"], a["rec_no"], a["rec_orows"], a["rec_ocoef"], a["rec_ovec"],
                   a["rec_gpool"], a["rec_gqd"], a["rec_dvec"], a["rec_loss"])


def capture(model: Doc2Vec, docs: list, batch: int) -> tuple[dict, dict]:
    """Train one epoch, timing every layer-kernel call; return the epoch's figures and batch ``batch``'s arguments."""
    names = list(inspect.signature(fused_layers._run.py_func).parameters)
    real = fused_layers.call_kernel
    kept: dict = {}
    epoch = {"batches": 0, "examples": 0, "kernel_seconds": 0.0}

    def spy(kernel, *args):
        if kernel is not fused_layers._run:
            return real(kernel, *args)
        if epoch["batches"] == batch:
            kept.update(zip(names, [a.copy() if isinstance(a, np.ndarray) else a for a in args], strict=True))
        t0 = time.perf_counter()
        try:
            return real(kernel, *args)
        finally:
            epoch["kernel_seconds"] += time.perf_counter() - t0
            epoch["batches"] += 1
            epoch["examples"] += args[names.index("doc_slots")].shape[0]

    fused_layers.call_kernel = spy
    try:
        t0 = time.perf_counter()
        model.train(docs, total_examples=model.corpus_count, epochs=1, progress=False)
        epoch["train_seconds"] = time.perf_counter() - t0
    finally:
        fused_layers.call_kernel = real
    if not kept:
        raise SystemExit(f"The epoch had {epoch['batches']} batches: pass a --batch below that.")
    return epoch, kept


def distinct(a: dict) -> dict:
    """How many rows batch ``a`` touches (what its Adagrad steps cost)."""
    words = np.unique(a["words"][a["word_mask"]])
    pooled = np.unique(a["pool_words"][a["pool_mask"]])
    return {"examples": int(a["doc_slots"].shape[0]), "context_words": int(words.size),
            "pooled_words": int(pooled.size), "word_rows": int(np.union1d(words, pooled).size),
            "output_rows": int(np.unique(a["outputs"][a["output_mask"]]).size),
            "document_samples": int(a["pool_words"].shape[0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="imdb", help="'imdb', '20news' or a text file (one document per line)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1, help="ours and gensim's (the replays run on one)")
    parser.add_argument("--batch", type=int, default=400, help="index of the batch replayed")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="other parameters of both models (values parsed as JSON when they can be)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    settings = {"vector_size": 100, "window": 5, "negative": 5, "sample": 1e-4, "min_count": 5,
                **parse_overrides(args.set)}
    docs = load_documents(args.corpus, args.data_dir, args.subset)
    params = {**settings, "seed": 1, "workers": args.threads, "backend": "numba"}
    warm_up(params)  # the kernels loaded (or compiled) outside the timed epoch
    model = Doc2Vec(**params)
    model.build_vocab(docs)
    if not model.module.uses_layer:
        raise SystemExit("profile_kernel times the layer kernel: pass a design with a context layer "
                         "(--set context=attention, the default).")
    epoch, batch = capture(model, docs, args.batch)
    # replays on one thread: the kernel's parallel passes then run serially, as in a one-thread epoch
    numba.set_num_threads(1)
    batch["threads"] = 1
    folded = dict(batch)
    for name in ("words", "outputs", "pool_words"):
        folded[name] = batch[name] % CACHE_ROWS
    examples_pass(batch), examples_pass(folded)  # compile (and warm) before timing
    times: dict[str, list[float]] = {"kernel": [], "examples": [], "examples, rows in cache": []}
    for _ in range(args.repeats):
        fresh = [v.copy() if isinstance(v, np.ndarray) else v for v in batch.values()]
        t0 = time.perf_counter()
        fused_layers._run(*fresh)
        times["kernel"].append(time.perf_counter() - t0)
        for label, a in (("examples", batch), ("examples, rows in cache", folded)):
            t0 = time.perf_counter()
            examples_pass(a)
            times[label].append(time.perf_counter() - t0)
    n = batch["doc_slots"].shape[0]
    per_example = {k: statistics.median(v) / n for k, v in times.items()}

    from gensim.models.doc2vec import Doc2Vec as GensimDoc2Vec

    gensim = GensimDoc2Vec(dm=1, dm_mean=1, workers=args.threads, seed=1, epochs=1, **settings)
    gensim.build_vocab(docs)
    counts = {}
    log_end = gensim._log_train_end  # gensim's Doc2Vec.train returns nothing: its effective words, as it logs them
    gensim._log_train_end = lambda raw, trained, *rest: counts.update(raw=raw, effective=trained) or log_end(
        raw, trained, *rest)
    t0 = time.perf_counter()
    gensim.train(docs, total_examples=len(docs), epochs=1)
    gensim_seconds = time.perf_counter() - t0
    effective = counts["effective"]

    ours = epoch["train_seconds"] / epoch["examples"]
    rows = [
        ("ours, one epoch (train())", ours),
        ("  of which the layer kernel", epoch["kernel_seconds"] / epoch["examples"]),
        ("  outside it (batches, epoch set-up, model.dv)", (epoch["train_seconds"] - epoch["kernel_seconds"])
         / epoch["examples"]),
        (f"batch {args.batch} replayed: the whole kernel", per_example["kernel"]),
        ("  the examples' pass", per_example["examples"]),
        ("    with every row in cache", per_example["examples, rows in cache"]),
        ("  the rest (pooled samples, sums, Adagrad steps)", per_example["kernel"] - per_example["examples"]),
        ("gensim PV-DM mean, one epoch", gensim_seconds / effective),
    ]
    budget = gensim_seconds / effective
    print(f"{cpu_model()}, {os.cpu_count()} cores; {len(docs):,} documents, {args.threads} thread(s); "
          f"{epoch['examples']:,} examples in {epoch['batches']} batches")
    for label, seconds in rows:
        print(f"{label:50s} {seconds * 1e6:7.2f} us/example  {seconds / budget:5.2f}x gensim's")
    result = {"command": invocation(), **source_revision(),
              "machine": f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "versions": {"numba": numba.__version__, "numpy": np.__version__},
              "load_average": os.getloadavg(), "corpus": args.corpus, "docs": len(docs), "threads": args.threads,
              "settings": settings, "batch": args.batch, "repeats": args.repeats, "epoch": epoch,
              "replayed_batch": distinct(batch), "replay_seconds": times,
              "gensim": {"train_seconds": gensim_seconds, "effective_words": effective},
              "us_per_example": {label.strip(): seconds * 1e6 for label, seconds in rows}}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
