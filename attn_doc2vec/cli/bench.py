#!/usr/bin/env python
"""Training speed, peak memory and inference time: our Doc2Vec (Numba and PyTorch backends) against gensim.

Every run trains in a fresh process (its peak memory and thread pools are its own) on the
same tokens with the same ``vector_size``, ``window``, ``negative``, ``sample`` and
``min_count``; runs alternate between libraries so that machine noise hits both alike.
words/s = corpus tokens (before downsampling, out-of-vocabulary ones included) x epochs /
wall seconds of ``train()``; vocabulary building and Numba's one-time compilation are
excluded, the encoding of the tokens inside ``train()`` is included. Peak RSS covers the
whole process, Python token lists included.

Writes ``--json`` and, with ``--markdown``, the section between ``<!-- speed:begin -->`` and
``<!-- speed:end -->`` of that file (the rest of it is left alone). ``scripts/bench_speed.py``
in a checkout writes ``docs/bench_speed.json`` and ``docs/benchmarks.md``; ``attn-doc2vec bench``
writes ``results/bench_speed.json`` in the current folder.

Examples
--------
    python scripts/bench_speed.py --subset 20000                 # ~10 minutes on 2 cores
    python scripts/bench_speed.py --repeats 3 --infer-docs 25000 # all 100k IMDB reviews
    python scripts/bench_speed.py --corpus my_corpus.txt --models gensim-dm-mean ours-dm-attention
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

MODELS = {  # name: (library, parameters)
    "gensim-dm-mean": ("gensim", {"dm": 1, "dm_mean": 1}),
    "gensim-dbow": ("gensim", {"dm": 0}),
    "ours-dm-attention": ("ours", {"dm": 1, "context": "attention"}),
    "ours-dm-mean": ("ours", {"dm": 1, "context": "mean"}),
    "ours-dm-sum": ("ours", {"dm": 1, "context": "sum"}),
    "ours-dbow": ("ours", {"dm": 0}),
}
BASELINE = {"ours-dm-attention": "gensim-dm-mean", "ours-dm-mean": "gensim-dm-mean", "ours-dm-sum": "gensim-dm-mean",
            "ours-dbow": "gensim-dbow"}
BEGIN, END = "<!-- speed:begin -->", "<!-- speed:end -->"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="imdb", help="'imdb', '20news' or a text file (one document per line)")
    parser.add_argument("--data-dir", default=None, help="folder with imdb.jsonl.gz (default: the library's)")
    parser.add_argument("--subset", type=int, default=None, help="train on the first N shuffled documents")
    parser.add_argument("--models", nargs="+", default=["gensim-dm-mean", "gensim-dbow", "ours-dm-attention",
                                                        "ours-dm-mean", "ours-dbow"], choices=list(MODELS))
    parser.add_argument("--backends", nargs="+", default=["numba", "torch"], choices=["numba", "torch"])
    parser.add_argument("--torch-subset", type=int, default=5000,
                        help="documents for the (slow) torch backend runs; words/s hardly depends on it")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds; the table shows medians")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="threads for every library")
    parser.add_argument("--our-workers", type=int, nargs="*", default=[],
                        help="also run our Numba models with these thread counts (e.g. 1)")
    parser.add_argument("--gensim-workers", type=int, nargs="*", default=[],
                        help="also run gensim's models with these thread counts (its scaling, in the same call)")
    parser.add_argument("--vector-size", type=int, default=100)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negative", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-4)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="our batch size (default: the config's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--infer-docs", type=int, default=25000,
                        help="also time inference of this many held-out documents (0: skip)")
    parser.add_argument("--infer-epochs", type=int, default=10)
    parser.add_argument("--infer-models", nargs="+", default=["gensim-dm-mean", "ours-dm-attention"],
                        choices=list(MODELS))
    parser.add_argument("--profile", action="store_true", help="also time the parts of one training run of ours")
    parser.add_argument("--json", default=str(Path("results") / "bench_speed.json"),
                        help="result file (scripts/bench_speed.py in a checkout: docs/bench_speed.json)")
    parser.add_argument("--markdown", default=None,
                        help="also rewrite the speed section of this Markdown file "
                             "(scripts/bench_speed.py in a checkout: docs/benchmarks.md)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser


# ------------------------------------------------------------------------------------------------
# One run, in its own process


def load_documents(corpus: str, data_dir: str | None, n_docs: int | None) -> list:
    """The first ``n_docs`` documents as ``TaggedDocument``-likes (``.words``, ``.tags``)."""
    from gensim.models.doc2vec import TaggedDocument

    if os.path.isfile(corpus):
        docs = []
        with open(corpus, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if n_docs is not None and i >= n_docs:
                    break
                docs.append(TaggedDocument(line.split(), [i]))
        return docs
    from attn_doc2vec.datasets import DEFAULT_DATA_DIR, load_dataset

    return load_dataset(corpus, data_dir or DEFAULT_DATA_DIR, subset=n_docs)


def warm_up(params: dict[str, Any]) -> float:
    """Load (or compile, the very first time) the Numba kernels outside the timed region."""
    from attn_doc2vec import Doc2Vec, TaggedDocument

    t0 = time.perf_counter()
    # forty words, each 8 times in 320 tokens, trained with the run's sample: some are dropped, so the downsampling
    # kernel is loaded here too (a warm-up with sample=0 left it to the timed run: 1.5 s of a 10 s one, compiling)
    docs = [TaggedDocument([f"w{(7 * i + j) % 40}" for j in range(40)], [i]) for i in range(8)]
    Doc2Vec(docs, **{**params, "min_count": 1, "epochs": 1, "vector_size": 8})
    return time.perf_counter() - t0


def profiled(totals: dict[str, float]) -> None:
    """Time the parts of our training loop (patched in this process only)."""
    from attn_doc2vec import batching, doc2vec, training

    def timed(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, wrapper)

    timed(doc2vec, "encode", "encode tokens")
    timed(training.DeviceCorpus, "from_encoded", "corpus to tensors")
    samplers = [batching.Sampler]
    if importlib.util.find_spec("numba") is not None:
        from attn_doc2vec.fused_batching import FusedSampler

        samplers.append(FusedSampler)
    for sampler in samplers:
        timed(sampler, "downsample", "downsample")
        timed(sampler, "pvdm_batch", "build batches")
        timed(sampler, "dbow_batch", "build batches")
    original_step = training.Trainer._step

    def step_factory(self, *args, **kwargs):
        step = original_step(self, *args, **kwargs)

        def timed_step(batch, alpha):
            t0 = time.perf_counter()
            try:
                return step(batch, alpha)
            finally:
                totals["SGD steps"] = totals.get("SGD steps", 0.0) + time.perf_counter() - t0

        return timed_step

    training.Trainer._step = step_factory


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one model (and optionally time inference) in this process; return its figures."""
    library, params = MODELS[job["model"]]
    shared = {k: job[k] for k in ("vector_size", "window", "negative", "sample", "min_count")}
    t0 = time.perf_counter()
    n_infer = job["infer_docs"]
    docs = load_documents(job["corpus"], job["data_dir"], None if job["n_docs"] is None else job["n_docs"] + n_infer)
    unseen = n_infer > 0 and (job["n_docs"] is None or len(docs) == job["n_docs"] + n_infer)
    infer_set, docs = (docs[-n_infer:], docs[:-n_infer]) if n_infer else ([], docs)
    if n_infer and not docs:
        raise ValueError(f"--infer-docs {n_infer} leaves no document to train on.")
    result: dict[str, Any] = {**job, "library": library, "docs": len(docs), "load_seconds": time.perf_counter() - t0}
    raw_words = sum(len(d.words) for d in docs)
    if library == "gensim":
        from gensim.models.doc2vec import Doc2Vec as GensimDoc2Vec

        model = GensimDoc2Vec(workers=job["workers"], seed=1, epochs=job["epochs"], **shared, **params)
        model.build_vocab(docs)
        train = lambda: model.train(docs, total_examples=len(docs), epochs=job["epochs"])  # noqa: E731
    else:
        from attn_doc2vec import Doc2Vec

        ours = {**shared, **params, "backend": job["backend"], "workers": job["workers"], "device": job["device"],
                "epochs": job["epochs"], "seed": 1}
        if job["batch_size"]:
            ours["batch_size"] = job["batch_size"]
        result["warmup_seconds"] = warm_up(ours)
        model = Doc2Vec(**ours)
        model.build_vocab(docs)
        result["batch_size"] = model.config.batch_size
        totals: dict[str, float] = {}
        if job["profile"]:
            profiled(totals)
        train = lambda: model.train(docs, total_examples=model.corpus_count, epochs=job["epochs"], progress=False)  # noqa: E731
    cpu0, t0 = time.process_time(), time.perf_counter()
    train()
    seconds = time.perf_counter() - t0
    result.update(raw_words=raw_words, train_seconds=seconds, cpu_seconds=time.process_time() - cpu0,
                  words_per_second=raw_words * job["epochs"] / seconds)
    if library == "ours" and job["profile"]:
        result["profile_seconds"] = {**totals, "other": seconds - sum(totals.values())}
    if n_infer:
        word_lists = [d.words for d in infer_set]
        t0 = time.perf_counter()
        if library == "gensim":
            for words in word_lists:
                model.infer_vector(words, epochs=job["infer_epochs"])
        else:
            model.infer_vectors(word_lists, epochs=job["infer_epochs"], progress=False)
        infer_seconds = time.perf_counter() - t0
        result.update(infer_docs=len(word_lists), infer_unseen=unseen, infer_seconds=infer_seconds,
                      infer_words_per_second=sum(map(len, word_lists)) * job["infer_epochs"] / infer_seconds)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if library == "ours" and model.device.type == "cuda":
        import torch

        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(model.device) / 2**20
    return result


def run_isolated(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_job` in a fresh process."""
    pool = mp.get_context("spawn").Pool(1)
    try:
        return pool.apply(run_job, (job,))
    finally:
        pool.close()
        pool.join()


# ------------------------------------------------------------------------------------------------
# Summary


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median figures per (model, backend) and the ratio to gensim's counterpart measured in the same call."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if not r["infer_docs"]:
            groups.setdefault((r["model"], r["backend"], r["workers"]), []).append(r)
    rows = []
    for (model, backend, workers), group in groups.items():
        wps = [r["words_per_second"] for r in group]
        rows.append({"model": model, "backend": backend, "workers": workers, "docs": group[0]["docs"],
                     "epochs": group[0]["epochs"],
                     "batch_size": group[0].get("batch_size"), "runs": len(group),
                     "words_per_second": statistics.median(wps), "min": min(wps), "max": max(wps),
                     "cpu_per_wall": statistics.median(r["cpu_seconds"] / r["train_seconds"] for r in group),
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in group),
                     "peak_gpu_mb": max((r.get("peak_gpu_mb", 0.0) for r in group), default=0.0)})
    speed = {(r["model"], r["workers"]): r["words_per_second"] for r in rows if r["backend"] == "-"}
    most = max((r["workers"] for r in rows if r["backend"] == "-"), default=None)
    for r in rows:
        base = BASELINE.get(r["model"])
        r["ratio"] = r["words_per_second"] / speed[base, most] if (base, most) in speed else None
    return rows


def thread_scaling(rows: list[dict[str, Any]]) -> list[str]:
    """One line per model measured on one thread and on more: its words/s on each count over one thread's."""
    by_model: dict[tuple, dict[int, float]] = {}
    for r in rows:
        by_model.setdefault((r["model"], r["backend"]), {})[r["workers"]] = r["words_per_second"]
    lines = []
    for (model, backend), speeds in by_model.items():
        if 1 in speeds and len(speeds) > 1:
            gains = ", ".join(f"{n} threads {speeds[n] / speeds[1]:.2f}x" for n in sorted(speeds) if n > 1)
            lines.append(f"- {model}{'' if backend == '-' else f' ({backend})'}: {gains} one thread's words/s")
    return lines


def markdown(rows: list[dict[str, Any]], infer: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The speed section of docs/benchmarks.md."""
    lines = [BEGIN, "## Training speed and memory", "",
             f"`{meta['command']}`", "",
             f"{meta['machine']}{device_note(meta)}; {meta['settings']}. words/s counts corpus tokens before "
             "downsampling per second of `train()` (vocabulary building excluded); the median of the alternating runs, "
             "with their range. Ratio: ours / gensim's counterpart (PV-DM mean for PV-DM, PV-DBOW for "
             "PV-DBOW) in the same call. Peak RSS is the whole process, Python token lists included. "
             f"Load average before / after: {meta['load_before']} / {meta['load_after']} (shared machine: "
             "timings are noisy).", "",
             "| model | backend | threads | docs | batch | words/s | range | ours / gensim | CPU/wall | peak RSS MB |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        batch = r["batch_size"] or ""
        lines.append(f"| {r['model']} | {r['backend']} | {r['workers']} | {r['docs']:,} | {batch} | "
                     f"{r['words_per_second']:,.0f} | "
                     f"{r['min']:,.0f}-{r['max']:,.0f} | {ratio} | {r['cpu_per_wall']:.2f} | "
                     f"{r['peak_rss_mb']:,.0f} |")
    scaling = thread_scaling(rows)
    if scaling:
        lines += ["", "Thread scaling (medians of the same call):", "", *scaling]
    if infer:
        lines += ["", "Inference: vectors of held-out documents (ours: one batched `infer_vectors` call; gensim: "
                  "an `infer_vector` loop).", "",
                  "| model | backend | trained on | inferred docs | epochs | seconds | docs/s | words/s |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in infer:
            seen = "" if r["infer_unseen"] else " (seen)"
            docs_per_second = r["infer_docs"] / r["infer_seconds"]
            lines.append(f"| {r['model']} | {r['backend']} | {r['docs']:,} | {r['infer_docs']:,}{seen} | "
                         f"{r['infer_epochs']} | {r['infer_seconds']:.1f} | {docs_per_second:,.0f} | "
                         f"{r['infer_words_per_second']:,.0f} |")
    profiles = meta["profiles"]
    if profiles:
        lines += ["", "Where our training time goes (one profiled run each, seconds):", ""]
        for r in profiles:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["profile_seconds"].items(), key=lambda kv: -kv[1]))
            lines.append(f"- {r['model']} ({r['backend']}, {r['workers']} threads, {r['train_seconds']:.1f} s): "
                         f"{parts}")
    lines.append(END)
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU's model name (Linux), else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_note(meta: dict[str, Any]) -> str:
    """", on <GPU>" when our models ran on a GPU (result files before this field: nothing)."""
    device = meta.get("device", "cpu")
    return "" if device == "cpu" else f"; our models on {device}"


def device_name(device: str) -> str:
    """The accelerator's name when ``device`` is a CUDA device, else ``"cpu"``."""
    import torch

    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (torch {torch.__version__})"
    return "cpu"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the delimited speed section, keeping the rest of the file."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    base = {"corpus": args.corpus, "data_dir": args.data_dir, "epochs": args.epochs, "workers": args.workers,
            "vector_size": args.vector_size, "window": args.window, "negative": args.negative,
            "sample": args.sample, "min_count": args.min_count, "batch_size": args.batch_size,
            "device": args.device, "infer_docs": 0, "infer_epochs": args.infer_epochs, "profile": False}
    jobs = []
    for model in args.models:
        if MODELS[model][0] == "gensim":
            jobs.append({**base, "model": model, "backend": "-", "n_docs": args.subset})
            for workers in args.gensim_workers:
                jobs.append({**base, "model": model, "backend": "-", "n_docs": args.subset, "workers": workers})
        for backend in args.backends if MODELS[model][0] == "ours" else []:
            n_docs = args.subset if backend == "numba" else min(args.subset or 10**9, args.torch_subset)
            jobs.append({**base, "model": model, "backend": backend, "n_docs": n_docs})
            for workers in args.our_workers if backend == "numba" else []:
                jobs.append({**base, "model": model, "backend": backend, "n_docs": n_docs, "workers": workers})
    load_before = os.getloadavg()
    runs, t_start = [], time.perf_counter()
    for rnd in range(args.repeats):
        for job in jobs:
            r = run_isolated({**job, "profile": args.profile and rnd == 0 and job["backend"] != "-"})
            runs.append(r)
            print(f"[{time.perf_counter() - t_start:6.0f}s] round {rnd + 1} {r['model']:18s} {r['backend']:5s} "
                  f"{r['docs']:>7,} docs: {r['words_per_second']:>12,.0f} words/s  {r['train_seconds']:7.1f} s  "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MB", flush=True)
    infer = []
    if args.infer_docs:
        for model in args.infer_models:
            backend = "-" if MODELS[model][0] == "gensim" else "numba" if "numba" in args.backends else "torch"
            r = run_isolated({**base, "model": model, "backend": backend, "n_docs": args.subset,
                              "infer_docs": args.infer_docs})
            infer.append(r)
            print(f"[{time.perf_counter() - t_start:6.0f}s] infer {r['model']:18s} {r['backend']:5s} "
                  f"{r['infer_docs']:,} docs x {args.infer_epochs} epochs: {r['infer_seconds']:.1f} s", flush=True)
    rows = summarize(runs)
    subset = "" if args.subset is None else f" (first {args.subset:,} shuffled documents)"
    from attn_doc2vec.cli import invocation, source_revision

    meta = {"command": invocation(),
            **source_revision(),
            "machine": f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "device": device_name(args.device),
            "settings": (f"{args.corpus}{subset}, "
                         f"vector_size={args.vector_size}, window={args.window}, negative={args.negative}, "
                         f"sample={args.sample:g}, min_count={args.min_count}, epochs={args.epochs}, "
                         f"workers={args.workers}"),
            "load_before": " ".join(f"{x:.1f}" for x in load_before),
            "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "profiles": [r for r in runs if "profile_seconds" in r]}
    section = markdown(rows, infer, meta)
    print(section)
    if not args.no_write:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "summary": rows, "runs": runs, "inference": infer},
                                              indent=1), encoding="utf-8")
        if args.markdown is not None:
            write_section(Path(args.markdown), section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
