#!/usr/bin/env python
"""Where the PyTorch path's training time goes: words/s per batch size and a torch.profiler table.

For the PyTorch backend on any device (on a GPU the eager launches of each batch decide the speed).
For each ``--batch-sizes`` entry it trains one warm-up epoch, then times one epoch (the device
synchronised) and prints words/s. The first batch size is also profiled for one epoch: the operators
taking the most device time (CPU time on a CPU), the kernels launched per batch and the share of the
wall time the GPU was busy. ``--json`` records the figures with the device's name.

Example (a lent GPU; ``scripts/device_check.sh`` runs it)::

    python scripts/profile_step.py --device cuda --corpus 20news --subset 2000 --batch-sizes 1024 8192 32768
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from attn_doc2vec import Doc2Vec  # noqa: E402
from attn_doc2vec.cli import invocation, source_revision  # noqa: E402
from attn_doc2vec.cli.bench import device_name, load_documents  # noqa: E402
from attn_doc2vec.cli.compare import parse_overrides  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="20news")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="other model parameters, e.g. context=mean (values parsed as JSON when they can be)")
    parser.add_argument("--rows", type=int, default=15, help="operators shown in the profile table")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    extra = parse_overrides(args.set)
    docs = load_documents(args.corpus, args.data_dir, args.subset)
    raw_words = sum(len(d.words) for d in docs)
    params = dict(min_count=2, sample=0.0, seed=1, backend="torch", device=args.device, epochs=1) | extra
    result = {"command": invocation(), **source_revision(), "device": device_name(args.device),
              "torch": torch.__version__, "docs": len(docs), "raw_words": raw_words, "params": params, "runs": []}
    print(f"{result['device']}: {len(docs):,} documents, {raw_words:,} words", flush=True)
    for i, batch_size in enumerate(args.batch_sizes):
        model = Doc2Vec(**(params | {"batch_size": batch_size}))
        model.build_vocab(docs)
        # warm-up: CUDA context, allocator, kernels' first launches
        model.train(docs, total_examples=model.corpus_count, epochs=1, progress=False)
        sync(model.device)
        t0 = time.perf_counter()
        model.train(docs, total_examples=model.corpus_count, epochs=1, progress=False)
        sync(model.device)
        seconds = time.perf_counter() - t0
        run = {"batch_size": batch_size, "seconds": seconds, "words_per_second": raw_words / seconds,
               "batches": math.ceil(raw_words / batch_size)}
        print(f"batch {batch_size:>6}: {run['words_per_second']:>12,.0f} words/s  ({seconds:.2f} s, "
              f"{seconds / run['batches'] * 1e3:.2f} ms a batch)", flush=True)
        if i == 0:
            run["profile"] = profiled(model, docs, run["batches"], args.rows)
        result["runs"].append(run)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def profiled(model: Doc2Vec, docs: list, batches: int, rows: int) -> dict:
    """Profile one epoch; print the top operators; return kernels per batch and GPU-busy share."""
    gpu = model.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    sync(model.device)
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        model.train(docs, total_examples=model.corpus_count, epochs=1, progress=False)
        sync(model.device)
    wall = time.perf_counter() - t0
    averages = prof.key_averages()
    key = "self_cpu_time_total"
    if gpu:
        key = "self_device_time_total" if hasattr(averages[0], "self_device_time_total") else "self_cuda_time_total"
    print(averages.table(sort_by=key, row_limit=rows), flush=True)
    out = {"wall_seconds": wall, "sorted_by": key,
           "cpu_ops_per_batch": sum(e.count for e in averages if e.key.startswith("aten::")) / batches}
    if gpu:
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6
        out |= {"kernels_per_batch": len(kernels) / batches, "gpu_busy_share": busy / wall}
        print(f"{out['kernels_per_batch']:.0f} kernels a batch; GPU busy {100 * out['gpu_busy_share']:.0f} % of "
              f"{wall:.2f} s (profiled)", flush=True)
    print(f"{out['cpu_ops_per_batch']:.0f} aten operators a batch", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
