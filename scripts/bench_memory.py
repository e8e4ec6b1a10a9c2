#!/usr/bin/env python
"""Peak memory of training: one epoch from a text file against one from a corpus store, each in a fresh process.

Builds the vocabulary of ``--corpus`` (one document per line, whitespace tokens), saves the model and writes a
corpus store beside it, then trains one epoch in a new process for each source and reads its peak RSS from the
operating system (``ru_maxrss``). A third process reports the peak RSS step by step while it sets up one epoch
with the PyTorch sampler (after loading; the corpus on the device; the epoch's downsampling; the epoch's order).
Writes a JSON result file with the command, commit and versions.

    python scripts/bench_memory.py --corpus imdb25k.txt --work /tmp/bench-memory --json results/memory.json
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


def child(mode: str, corpus: str, work: Path) -> dict:
    """One measurement in this process (``mode``: prepare, file, store or steps)."""
    import torch

    from attn_doc2vec import Doc2Vec

    if mode == "prepare":
        model = Doc2Vec(epochs=1, workers=1, seed=0, device="cpu")
        model.build_vocab(corpus_file=corpus)
        model.save(work / "model")
        model.write_corpus_store(work / "store", corpus_file=corpus)
        return {"documents": model.corpus_count, "words": model.corpus_total_words}
    model = Doc2Vec.load(work / "model")
    if mode == "steps":
        from attn_doc2vec.batching import DeviceCorpus, Sampler
        from attn_doc2vec.store import open_corpus_store
        from attn_doc2vec.training import make_generator

        steps = {"loaded": peak_mb()}
        corpus_t = DeviceCorpus.from_encoded(open_corpus_store(work / "store", model.vocab), torch.device("cpu"))
        steps["corpus"] = peak_mb()
        sampler = Sampler.from_vocab(model.vocab, model.config, make_generator(0, torch.device("cpu")))
        sampler.pool_sample, sampler.pool_group = model.config.pool_sample, model.config.pool_group
        kept = sampler.downsample(corpus_t)
        steps["downsampled"] = peak_mb()
        sampler.epoch_order(kept)
        steps["epoch order"] = peak_mb()
        return {"peak_rss_mb_by_step": steps}
    t0 = time.perf_counter()
    source = {"corpus_file": corpus} if mode == "file" else {"corpus_store": work / "store"}
    model.train(**source, total_examples=model.corpus_count, epochs=1, progress=False)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="text file, one document per line")
    parser.add_argument("--work", required=True, help="a new folder for the model and the store")
    parser.add_argument("--json", required=True, help="result file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.child:
        print(json.dumps(child(args.child, args.corpus, work)))
        return 0
    from attn_doc2vec.cli import invocation, source_revision

    work.mkdir(parents=True, exist_ok=False)
    results = {}
    for mode in ("prepare", "file", "store", "steps"):
        out = subprocess.run([sys.executable, __file__, "--corpus", args.corpus, "--work", str(work), "--json",
                              args.json, "--child", mode], check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
        print(mode, results[mode], flush=True)
    import gensim
    import numpy
    import torch

    record = {"command": invocation(), "commit": source_revision(), "corpus": args.corpus,
              "versions": {"torch": torch.__version__, "numpy": numpy.__version__, "gensim": gensim.__version__,
                           "python": sys.version.split()[0]},
              "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()), "results": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
