#!/usr/bin/env python
"""Peak memory of training: one epoch from a text file against one from a corpus store, each in a fresh process.

``prepare`` builds the vocabulary of ``--corpus`` (one document per line, whitespace tokens), saves the model
and writes a corpus store beside it. ``file`` is a user's first run in a new process: build the vocabulary from
the file and train one epoch from it. ``store`` loads the saved model in a new process and trains one epoch from
the store. Each reports its peak RSS from the operating system (``ru_maxrss``: mapped files and shared
libraries included) and the peak of its anonymous memory (``RssAnon``, sampled). ``runtime`` imports what
training needs (PyTorch, gensim, Numba, attn_doc2vec) and reports the peak RSS after each: the floor before any
data. ``steps`` reports the peak
RSS step by step while it sets up one epoch with the PyTorch sampler (after loading; the corpus on the device;
for a corpus larger than ``epoch_block``, the first block gathered; its downsampling; its order). ``gensim``
trains gensim's ``Doc2Vec`` one epoch from the file in its ``corpus_file`` mode, one worker, same settings.
Writes a JSON result file with the command, commit and versions.

    python scripts/bench_memory.py --corpus imdb25k.txt --work /tmp/bench-memory --json results/memory.json
    python scripts/bench_memory.py --corpus imdb25k.txt --work /tmp/bench-memory --json again.json --modes file store
    python scripts/bench_memory.py --corpus imdb25k.txt --work /tmp/bench-memory --json mapped.json --modes store \
        --dv-mapfile /tmp/tables    # the per-document tables memory-mapped (dv_mapfile)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


class AnonymousPeak:
    """The peak of the process's anonymous resident memory (``RssAnon``: what it allocated, without the pages of
    mapped files, which the kernel can drop and read again), sampled every ``interval`` seconds by a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self.peak_kb, self.interval, self._stop = 0, interval, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            self._stop.wait(self.interval)

    def stop_mb(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kb // 1024


MODES = ("runtime", "prepare", "file", "store", "steps", "gensim")


def child(mode: str, corpus: str, work: Path, settings: list[str], dv_mapfile: str | None = None) -> dict:
    """One measurement in this process (``mode``: runtime, prepare, file, store, steps or gensim; ``dv_mapfile``:
    the file and store modes map the per-document tables into ``<dv_mapfile>/<mode>``)."""
    if mode == "runtime":  # what a trainer imports, in the order it does, before it reads a word
        anonymous, by_import = AnonymousPeak(), {}
        import torch  # noqa: F401

        by_import["torch"] = peak_mb()
        import gensim.models.doc2vec  # noqa: F401

        by_import["gensim"] = peak_mb()
        import numba  # noqa: F401

        by_import["numba"] = peak_mb()
        import attn_doc2vec  # noqa: F401

        by_import["attn_doc2vec"] = peak_mb()
        return {"peak_rss_mb_by_import": by_import, "peak_rss_mb": peak_mb(), "peak_anonymous_mb": anonymous.stop_mb()}
    if mode == "gensim":  # gensim's Doc2Vec, one epoch from the file in its corpus_file mode (streamed), one worker,
        # with the prepared model's settings (read from its config.json: this process never imports torch)
        import gensim
        from gensim.models.doc2vec import Doc2Vec as GensimDoc2Vec

        config = json.loads((work / "model" / "config.json").read_text())["config"]
        gensim_params = {k: config[k] for k in ("vector_size", "dm", "window", "min_count", "sample", "negative",
                                                "epochs", "seed")}
        anonymous = AnonymousPeak()
        t0 = time.perf_counter()
        GensimDoc2Vec(corpus_file=corpus, workers=1, **gensim_params)
        return {"gensim": gensim.__version__, "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_mb(),
                "peak_anonymous_mb": anonymous.stop_mb(), "settings": gensim_params}
    import torch

    from attn_doc2vec import Doc2Vec
    from attn_doc2vec.cli.compare import parse_overrides

    params = {"epochs": 1, "workers": 1, "seed": 0, "device": "cpu", **parse_overrides(settings)}

    if mode == "prepare":  # vocabulary and encoding: their peak memory and time are part of a first run too
        anonymous = AnonymousPeak()
        t0 = time.perf_counter()
        model = Doc2Vec(**params)
        model.build_vocab(corpus_file=corpus)
        vocab_seconds, vocab_peak = time.perf_counter() - t0, peak_mb()
        model.save(work / "model")
        t0 = time.perf_counter()
        model.write_corpus_store(work / "store", corpus_file=corpus)
        return {"documents": model.corpus_count, "words": model.corpus_total_words,
                "vocabulary_seconds": vocab_seconds, "store_seconds": time.perf_counter() - t0,
                "peak_rss_mb_after_vocabulary": vocab_peak, "peak_rss_mb": peak_mb(),
                "peak_anonymous_mb": anonymous.stop_mb()}
    if mode == "file":  # the user's path: a fresh process builds the vocabulary from the file and trains from it
        anonymous = AnonymousPeak()
        mapped = {} if dv_mapfile is None else {"dv_mapfile": str(Path(dv_mapfile) / mode)}
        model = Doc2Vec(**params, **mapped)
        model.build_vocab(corpus_file=corpus)
        vocab_peak = peak_mb()
        t0 = time.perf_counter()
        history = model.train(corpus_file=corpus, total_examples=model.corpus_count, epochs=1, progress=False)
        return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_mb(), "peak_rss_mb_after_vocabulary":
                vocab_peak, "peak_anonymous_mb": anonymous.stop_mb(), "words_per_second": history[-1].words_per_second}
    model = Doc2Vec.load(work / "model", dv_mapfile=None if dv_mapfile is None or mode != "store"
                         else Path(dv_mapfile) / mode)
    if mode == "steps":
        from attn_doc2vec.batching import DeviceCorpus, Sampler, epoch_blocks, trains_in_blocks
        from attn_doc2vec.store import open_corpus_store
        from attn_doc2vec.training import make_generator

        steps = {"loaded": peak_mb()}
        encoded = open_corpus_store(work / "store", model.vocab)
        block = model.config.epoch_block
        blocked = trains_in_blocks(len(encoded.tokens), block)  # as Trainer.run: then no per-token document index
        corpus_t = DeviceCorpus.from_encoded(encoded, torch.device("cpu"), with_docs=not blocked)
        steps["corpus"] = peak_mb()
        generator = make_generator(0, torch.device("cpu"))
        sampler = Sampler.from_vocab(model.vocab, model.config, generator)
        sampler.pool_sample, sampler.pool_group = model.config.pool_sample, model.config.pool_group
        if blocked:  # the first block of an epoch, as Trainer._prepare
            corpus_t = corpus_t.select(epoch_blocks(corpus_t.offsets, block, generator)[0])
            steps["block gathered"] = peak_mb()
        kept = sampler.downsample(corpus_t)
        steps["downsampled"] = peak_mb()
        sampler.epoch_order(kept)
        steps["epoch order"] = peak_mb()
        return {"peak_rss_mb_by_step": steps, "epoch_block": block, "blocked": blocked}
    loaded = peak_mb()
    anonymous = AnonymousPeak()
    t0 = time.perf_counter()
    history = model.train(corpus_store=work / "store", total_examples=model.corpus_count, epochs=1, progress=False)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_mb(), "peak_rss_mb_after_load": loaded,
            "peak_anonymous_mb": anonymous.stop_mb(), "words_per_second": history[-1].words_per_second}


def memory_limit_mb() -> int | None:
    """The memory limit of this process's control group (cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``),
    or None when there is none (or it cannot be read)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, where = line.split(":", 2)
            if controllers == "":  # v2
                file = Path("/sys/fs/cgroup") / where.lstrip("/") / "memory.max"
            elif "memory" in controllers.split(","):
                file = Path("/sys/fs/cgroup/memory") / where.lstrip("/") / "memory.limit_in_bytes"
            else:
                continue
            if file.exists():
                value = file.read_text().strip()
                if value != "max" and int(value) < 1 << 60:
                    return int(value) >> 20
    except (OSError, ValueError):
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="text file, one document per line")
    parser.add_argument("--work", required=True, help="a new folder for the model and the store")
    parser.add_argument("--json", required=True, help="result file")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                        help="measurements to run (without prepare, all but runtime and file need --work to hold a "
                             "prepared model and store)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="model settings other than the defaults (prepare and file modes; e.g. dm=0)")
    parser.add_argument("--dv-mapfile", default=None, metavar="DIR",
                        help="file and store modes: the per-document tables memory-mapped in DIR/<mode> (dv_mapfile)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.child:
        print(json.dumps(child(args.child, args.corpus, work, args.set, args.dv_mapfile)))
        return 0
    if "prepare" in args.modes:
        work.mkdir(parents=True, exist_ok=False)
    elif set(args.modes) - {"runtime", "file"} and not ((work / "model").is_dir() and (work / "store").is_dir()):
        parser.error(f"{work} holds no prepared model and store: run with the prepare mode first")
    results = {}
    for mode in args.modes:
        mapped = ["--dv-mapfile", args.dv_mapfile] if args.dv_mapfile else []
        child_run = subprocess.run([sys.executable, __file__, "--corpus", args.corpus, "--work", str(work), "--json",
                                    args.json, "--child", mode, *mapped, "--set", *args.set], capture_output=True,
                                   text=True)
        if child_run.returncode != 0:  # recorded (e.g. killed for memory under a limit: -9), then the next mode
            results[mode] = {"failed": child_run.returncode, "stderr_tail": child_run.stderr[-600:]}
        else:
            results[mode] = json.loads(child_run.stdout.strip().splitlines()[-1])
        print(mode, results[mode], flush=True)
    # imported only now: a child's peak RSS counts its parent's at the fork (Linux keeps ru_maxrss across exec)
    import gensim
    import numpy
    import torch

    from attn_doc2vec.cli import invocation, source_revision

    record = {"command": invocation(), "commit": source_revision(), "corpus": args.corpus,
              "versions": {"torch": torch.__version__, "numpy": numpy.__version__, "gensim": gensim.__version__,
                           "python": sys.version.split()[0]},
              "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()), "memory_limit_mb": memory_limit_mb(),
              "results": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
