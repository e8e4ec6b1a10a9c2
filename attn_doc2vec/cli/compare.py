#!/usr/bin/env python
"""Compare our Doc2Vec with gensim's on IMDB sentiment or 20 Newsgroups, side by side.

Trains every selected model on the same tokens with the same vocabulary settings,
classifies the document vectors with logistic regression, and prints and writes a
Markdown table and JSON: quality (mean ± std over seeds), training time, words/s
and peak memory. Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from attn_doc2vec.benchmark import (
    CONCATENATIONS,
    DEFAULT_MODELS,
    MODELS,
    RunSpec,
    concatenate,
    markdown_table,
    run_isolated,
    summarize,
)
from attn_doc2vec.datasets import DEFAULT_DATA_DIR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", choices=["imdb", "20news"], default="imdb")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="folder with imdb.jsonl.gz / 20news.jsonl.gz")
    parser.add_argument("--subset", type=int, default=None, help="use only the first N shuffled documents")
    parser.add_argument("--epochs", type=int, default=None, help="override the shared 20 epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS) + list(CONCATENATIONS),
                        choices=list(MODELS) + list(CONCATENATIONS),
                        help="also gensim's other switches side by side: gensim-dbow-words ours-dbow-words "
                             "(dbow_words=1), gensim-dbow-hs ours-dbow-hs (hs=1, negative=0), gensim-dm-concat "
                             "ours-dm-concat (dm_concat=1: slow)")
    parser.add_argument("--protocols", nargs="+", default=["transductive"], choices=["transductive", "inductive"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra parameters for our models, e.g. batch_size=4096 attention_alpha=2")
    parser.add_argument("--processes", type=int, default=1,
                        help="our models: train each with N processes on torch.distributed (gloo on this machine; "
                             "use --set workers=1 for one thread each)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 documents, 3 epochs, one seed (a few minutes on 2 cores)")
    parser.add_argument("--out", default=None,
                        help="output prefix (default: results/<dataset>[-quick] in the current folder; "
                             "--out docs/results/<name> to publish a table in the docs)")
    return parser


def check_bench_extra() -> None:
    """Fail at once, with the install command, when the ``bench`` extra is missing."""
    import importlib.util

    missing = [name for name, module in (("scikit-learn", "sklearn"), ("psutil", "psutil"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise SystemExit(f"compare_gensim.py needs {' and '.join(missing)}: pip install -e \".[bench]\"")


def provenance(args: argparse.Namespace) -> dict:
    """What produced a result file: command, commit, library versions, backend, device, seeds."""
    import platform

    import torch

    from attn_doc2vec.checkpoint import library_versions
    from attn_doc2vec.cli import invocation, source_revision
    from attn_doc2vec.training import resolve_backend, resolve_device

    device = resolve_device(args.device)
    return {"command": invocation(), **source_revision(),
            "versions": library_versions(), "python": platform.python_version(), "machine": platform.processor()
            or platform.machine(), "cpus": os.cpu_count(), "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "device": str(device), "backend": resolve_backend(parse_overrides(args.set).get("backend", "auto"), device),
            "torch_threads": torch.get_num_threads(), "seeds": args.seeds}


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_bench_extra()
    if args.quick:
        args.subset, args.epochs, args.seeds = args.subset or 2000, args.epochs or 3, args.seeds[:1]
    overrides = parse_overrides(args.set)
    started = provenance(args)  # before training: the commit is the one that runs
    wanted = set(args.models)
    needed = wanted | {part for name in wanted & set(CONCATENATIONS) for part in CONCATENATIONS[name]}
    singles = [m for m in MODELS if m in needed]
    rows, t_start = [], time.perf_counter()
    for protocol in args.protocols:
        for seed in args.seeds:
            results = {}
            # alternate libraries run by run, so that machine noise hits both alike
            for model in singles:
                spec = RunSpec(model=model, dataset=args.dataset, data_dir=args.data_dir, seed=seed,
                               protocol=protocol, subset=args.subset, epochs=args.epochs, device=args.device,
                               overrides=overrides,
                               processes=args.processes if MODELS[model]["library"] == "ours" else 1)
                result = run_isolated(spec)
                results[model] = result
                print(f"[{time.perf_counter() - t_start:7.0f}s] {args.dataset} {protocol} seed={seed} {model}: "
                      f"accuracy {100 * result.accuracy:.2f}%  {result.words_per_second:,.0f} words/s  "
                      f"{result.peak_rss_mb:,.0f} MB", flush=True)
            for name, (first, second) in CONCATENATIONS.items():
                if name in wanted:
                    results[name] = concatenate(results[first], results[second], name)
                    print(f"          {name}: accuracy {100 * results[name].accuracy:.2f}%", flush=True)
            rows += [r.row() for m, r in results.items() if m in wanted]
    summary = summarize(rows)
    table = markdown_table(summary)
    print(table)
    json_path, md_path = output_paths(args.out or Path.cwd() / "results" /
                                      (args.dataset + ("-quick" if args.quick else "")))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"args": vars(args), "provenance": started, "runs": rows, "summary": summary},
                                    indent=1))
    md_path.write_text(table + "\n")
    print(f"wrote {md_path} and {json_path}")
    return 0


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """``<out>.json`` and ``<out>.md``; a dot in the name is kept (``--out x/docshare0.25`` writes
    ``docshare0.25.json``), and a given ``.json`` or ``.md`` ending is not doubled."""
    out = Path(out)
    if out.suffix in (".json", ".md"):
        out = out.with_suffix("")
    return out.parent / f"{out.name}.json", out.parent / f"{out.name}.md"


if __name__ == "__main__":
    sys.exit(main())
