#!/usr/bin/env python
"""Regenerate the tables of docs/attention-designs.md from the result files under docs/results/designs/.

Every figure in those tables comes from a JSON result file written by ``scripts/compare_gensim.py``
(falsification runs: ``20news-3000-<name>.json``, full runs: ``<dataset>-full-<name>.json``) or
``scripts/explore_design.py`` (``explore-*.json``); the file records its command, commit, versions,
backend, device and seeds. The tables are written between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` markers; the prose around them is kept.

    python scripts/design_report.py            # rewrite docs/attention-designs.md in place
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results" / "designs"
DOC = REPO / "docs" / "attention-designs.md"
# the default on round 17's sizes and seeds (20 Newsgroups 3,000 posts seeds 0-2, IMDB 5,000 reviews seeds 0-2)
ROUND17_DEFAULTS = ("explore-20news-3000-s*-poolloss8.json", "explore-imdb-5000-r15-s[01]-w10.json",
                    "explore-imdb-5000-r16-s2-w10.json")


def _rows(path: Path) -> tuple[list[dict], dict]:
    data = json.loads(path.read_text())
    return data["runs"], data.get("provenance", {})


def _label(run: dict) -> str:
    o = dict(run["overrides"])
    if run["model"] == "ours-dbow":
        return "ours PV-DBOW"
    if run["model"].startswith("gensim"):
        return run["model"].replace("gensim-", "gensim ").replace("dm-mean", "PV-DM mean").replace("dbow", "PV-DBOW")
    context = o.pop("context", "mean" if run["model"] == "ours-dm-mean" else "attention")
    twin = " (uniform twin)" if o.pop("uniform_attention", False) else ""
    for key in ("window", "alpha", "backend"):
        o.pop(key, None)
    extra = ", ".join(f"{k}={v}" for k, v in sorted(o.items()))
    return f"ours {context}{twin}" + (f", {extra}" if extra else "")


def _settings(run: dict) -> str:
    params = run.get("config") or run.get("params") or run.get("overrides") or {}
    keep = ("context", "window", "alpha", "doc_share", "pool_share", "pool_sample", "pool_group", "pool_loss",
            "attention_parts", "context_scores", "update_rule", "uniform_attention")
    return " ".join(f"{k}={params[k]}" for k in keep if k in params)


def table(pattern: str | list[str], metric: str = "accuracy") -> str:
    """Mean ± std over seeds of every (result file, model), with its settings and provenance."""
    groups: dict[tuple, list[float]] = {}
    patterns = [pattern] if isinstance(pattern, str) else pattern
    for path in sorted({p for pat in patterns for p in RESULTS.glob(pat)}):
        runs, prov = _rows(path)
        for run in runs:
            key = (f"[{path.stem}](results/designs/{path.name})", _label(run), run["protocol"], _settings(run),
                   prov.get("commit", "unknown")[:7])
            groups.setdefault(key, []).append(100 * run[metric] if metric == "accuracy" else 100 * run["error"])
    head = "accuracy %" if metric == "accuracy" else "error %"
    lines = [f"| result file | model | protocol | settings | seeds | {head} (mean ± std) | per seed | commit |",
             "| --- | --- | --- | --- | ---: | ---: | --- | --- |"]
    for (name, label, protocol, settings, commit), values in groups.items():
        v = np.array(values)
        lines.append(f"| {name} | {label} | {protocol} | {settings} | {len(v)} | {v.mean():.2f} ± {v.std():.2f} | "
                     f"{' / '.join(f'{x:.2f}' for x in v)} | {commit} |")
    return "\n".join(lines)


def seed_summary(patterns: list[str]) -> str:
    """Runs of ``compare_gensim.py`` (one seed a file, or several) grouped across files by model (with its
    settings), protocol and data set: mean ± std over seeds, each seed linked to its file."""
    groups: dict[tuple, list[tuple]] = {}
    for path in sorted({p for pattern in patterns for p in RESULTS.glob(pattern)}):
        runs, prov = _rows(path)
        for run in runs:
            groups.setdefault((run["dataset"], _label(run), run["protocol"]), []).append(
                (run["seed"], run["accuracy"], path, prov.get("commit", "unknown")[:7]))
    lines = ["| data set | model | protocol | seeds | % (mean ± std) | per seed | commits |",
             "| --- | --- | --- | ---: | ---: | --- | --- |"]
    for (dataset, label, protocol), runs in sorted(groups.items()):
        lines.append(f"| {dataset} | {label} | {protocol} | {_seed_cells(dataset, runs)} |")
    return "\n".join(lines)


def explore_table() -> str:
    """One row per exploration run: its settings and the accuracy of each document representation."""
    lines = ["| run | subset | epochs | seed | settings | accuracy % by representation | commit |",
             "| --- | ---: | ---: | ---: | --- | --- | --- |"]
    for path in sorted(RESULTS.glob("explore-*.json")):
        data = json.loads(path.read_text())
        args, acc = data["args"], data["accuracy"]
        views = ", ".join(f"{k}: {100 * v:.2f}" for k, v in acc.items())
        lines.append(f"| [{path.stem}](results/designs/{path.name}) | {args['subset']} | {args['epochs']} | "
                     f"{args['seed']} | {' '.join(args['set'])} | {views} | "
                     f"{data['provenance'].get('commit', 'unknown')[:7]} |")
    return "\n".join(lines)


def _probe_settings(args: dict) -> str:
    """A probe's ``--set`` overrides as written, less the thread count (``workers=``), which the tables leave out."""
    return " ".join(s for s in args["set"] if not s.startswith("workers="))


def _seed_cells(dataset: str, runs: list[tuple]) -> str:
    """``seeds | metric mean ± std | per seed | commits`` cells of ``(seed, accuracy, path, commit)`` runs
    (sorted here by seed); IMDB as error, as everywhere else in this file."""
    runs.sort(key=lambda r: r[0])
    error = dataset == "imdb"
    v = np.array([100 * (1 - acc if error else acc) for _, acc, _, _ in runs])
    per_seed = " / ".join(f"[{x:.2f}](results/designs/{p.name}) (seed {seed})"
                          for x, (seed, _, p, _) in zip(v, runs, strict=True))
    return (f"{len(v)} | {'error ' if error else 'accuracy '}{v.mean():.2f} ± {v.std():.2f} | {per_seed} | "
            f"{', '.join(sorted({c for *_, c in runs}))}")


def explore_summary(patterns: list[str]) -> str:
    """Exploration runs grouped by data set, size, epochs and settings: ``model.dv``'s mean ± std over seeds."""
    groups: dict[tuple, list[tuple]] = {}
    paths = sorted({p for pattern in patterns for p in RESULTS.glob(pattern)})
    for path in paths:
        data = json.loads(path.read_text())
        args = data["args"]
        settings = _probe_settings(args) or "(defaults)"
        key = (args.get("dataset", "20news"), args["subset"], args["epochs"], settings)
        groups.setdefault(key, []).append((args["seed"], data["accuracy"]["dv"], path,
                                           data["provenance"].get("commit", "unknown")[:7]))
    lines = ["| data set | documents | epochs | settings | seeds | `model.dv` % (mean ± std) | per seed | commits |",
             "| --- | ---: | ---: | --- | ---: | ---: | --- | --- |"]
    for (dataset, subset, epochs, settings), runs in sorted(groups.items()):
        lines.append(f"| {dataset} | {subset} | {epochs} | {settings} | {_seed_cells(dataset, runs)} |")
    return "\n".join(lines)


def representation_table(patterns: list[str]) -> str:
    """One row per exploration run: each document representation's figure (IMDB as error)."""
    lines = ["| run | data set | documents | epochs | seed | settings | `model.dv` | free vectors | pooled words | "
             "commit |", "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    paths = sorted({p for pattern in patterns for p in RESULTS.glob(pattern)})
    for path in paths:
        data = json.loads(path.read_text())
        args, acc = data["args"], data["accuracy"]
        error = args.get("dataset", "20news") == "imdb"
        cells = [f"{100 * (1 - acc[k] if error else acc[k]):.2f}" if k in acc else "–"
                 for k in ("dv", "free", "pooled")]
        settings = _probe_settings(args)
        lines.append(f"| [{path.stem}](results/designs/{path.name}) | {args.get('dataset', '20news')} "
                     f"({'error' if error else 'accuracy'} %) | {args['subset']} | {args['epochs']} | {args['seed']} | "
                     f"{settings} | {' | '.join(cells)} | {data['provenance'].get('commit', 'unknown')[:7]} |")
    return "\n".join(lines)


def refine_table() -> str:
    """``scripts/probe_refine.py`` runs: each (data set, protocol, mu) with its mean ± std over seeds and files."""
    groups: dict[tuple, list[tuple]] = {}
    for path in sorted(RESULTS.glob("probe-refine-*.json")):
        data = json.loads(path.read_text())
        args = data["args"]
        for protocol, by_mu in data["accuracy"].items():
            for mu, acc in by_mu.items():
                key = (args.get("dataset", "20news"), args["subset"], args["epochs"], protocol, float(mu))
                if any(seed == args["seed"] for seed, *_ in groups.get(key, [])):
                    continue  # a seed rerun in a later file (sorted first: its name has a protocol): count it once
                groups.setdefault(key, []).append((args["seed"], acc, path,
                                                   data["provenance"].get("commit", "unknown")[:7]))
    lines = ["| data set | documents | epochs | protocol | μ | seeds | % (mean ± std) | per seed | commits |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for (dataset, subset, epochs, protocol, mu), runs in sorted(groups.items(), key=lambda kv: (
            kv[0][:4], -kv[0][4])):
        lines.append(f"| {dataset} | {subset} | {epochs} | {protocol} | {mu:g} | {_seed_cells(dataset, runs)} |")
    return "\n".join(lines)


def ngrams_table() -> str:
    """``scripts/probe_ngrams.py`` runs: each (data set, model, n-grams appended) over seeds, with its files."""
    groups: dict[tuple, list[tuple]] = {}
    for path in sorted(RESULTS.glob("probe-ngrams-*.json")):
        data = json.loads(path.read_text())
        args = data["args"]
        for run in data["runs"]:
            key = (args["dataset"], args["subset"], args["epochs"] or 20, run["model"], run["ngrams"])
            groups.setdefault(key, []).append((args["seed"], run["accuracy"], path,
                                               data["provenance"].get("commit", "unknown")[:7]))
    lines = ["| data set | documents | epochs | model | n-grams appended | seeds | % (mean ± std) | per seed "
             "| commits |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for (dataset, subset, epochs, model, ngrams), runs in sorted(groups.items()):
        appended = {1: "none", 2: "bigrams"}.get(ngrams, f"2- to {ngrams}-grams")
        lines.append(f"| {dataset} | {subset} | {epochs} | {model} | {appended} | {_seed_cells(dataset, runs)} |")
    return "\n".join(lines)


def inductive_table() -> str:
    """``scripts/probe_inductive.py`` runs: each (data set, size, epochs, variant) over seeds, with its files."""
    order = {"transductive": 0, "inductive": 1, "inductive-extra": 2, "foreign": 3}
    groups: dict[tuple, list[tuple]] = {}
    trained: dict[tuple, list[int]] = {}  # the train split's size varies with the seed's shuffle
    for path in sorted(RESULTS.glob("probe-inductive-*.json")):
        data = json.loads(path.read_text())
        args = data["args"]
        key = (args["dataset"], args["subset"], args["epochs"], args["variant"])
        groups.setdefault(key, []).append((args["seed"], data["accuracy"], path,
                                           data["provenance"].get("commit", "unknown")[:7]))
        trained.setdefault(key, []).append(data["corpus_documents"])
    lines = ["| data set | documents classified | epochs | variant | documents trained on | seeds | % (mean ± std) "
             "| per seed | commits |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for key, runs in sorted(groups.items(), key=lambda kv: (kv[0][:2], order[kv[0][3]], kv[0][2])):
        dataset, subset, epochs, variant = key
        low, high = min(trained[key]), max(trained[key])
        sizes = f"{low:,}" if low == high else f"{low:,}–{high:,}"
        lines.append(f"| {dataset} | {subset} | {epochs} | {variant} | {sizes} | {_seed_cells(dataset, runs)} |")
    return "\n".join(lines)


def salience_table() -> str:
    """``scripts/probe_salience.py`` runs: how the document attention's learned score ranks words against
    what the labels need, one row per run."""
    lines = ["| run | data set | documents | epochs | seed | settings | words compared | Spearman with label skew | "
             "with label information | with IDF | percentile of the 100 most informative words | highest scores | "
             "commit |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for path in sorted(RESULTS.glob("probe-salience-*.json")):
        data = json.loads(path.read_text())
        args = data["args"]
        top = ", ".join(w for w in data["highest_salience"][:8] if w.isalpha())
        lines.append(f"| [{path.stem}](results/designs/{path.name}) | {args['dataset']} | {args['subset']} | "
                     f"{args['epochs']} | {args['seed']} | "
                     f"{_probe_settings(args) or '(defaults)'} | "
                     f"{data['words_compared']:,} | "
                     f"{data['spearman_salience_label_skew']:.2f} | {data['spearman_salience_label_information']:.2f} "
                     f"| {data['spearman_salience_idf']:.2f} | "
                     f"{100 * data['salience_percentile_of_most_informative']:.0f} | {top} | "
                     f"{data['provenance'].get('commit', 'unknown')[:7]} |")
    return "\n".join(lines)


def pooling_table() -> str:
    """``scripts/probe_pooling.py`` runs: each (data set, size, epochs, readout of the trained model) over seeds."""
    groups: dict[tuple, list[tuple]] = {}
    order: dict[str, int] = {}
    for path in sorted(RESULTS.glob("probe-pooling-*.json")):
        data = json.loads(path.read_text())
        args = data["args"]
        for i, (readout, acc) in enumerate(data["accuracy"].items()):
            order.setdefault(readout, i)
            groups.setdefault((args["dataset"], args["subset"], args["epochs"], readout), []).append(
                (args["seed"], acc, path, data["provenance"].get("commit", "unknown")[:7]))
    lines = ["| data set | documents | epochs | readout | seeds | % (mean ± std) | per seed | commits |",
             "| --- | ---: | ---: | --- | ---: | ---: | --- | --- |"]
    for key, runs in sorted(groups.items(), key=lambda kv: (kv[0][:3], order[kv[0][3]])):
        dataset, subset, epochs, readout = key
        if readout == "softmax/1":
            continue  # model.dv's readout, checked equal by the probe
        name = {"model.dv": "`model.dv` (softmax, T = 1)", "softmax/inf": "plain mean (T = ∞)",
                "sampled": "training's sampled pools"}.get(readout, readout.replace("softmax/", "softmax, T = "))
        lines.append(f"| {dataset} | {subset} | {epochs} | {name} | {_seed_cells(dataset, runs)} |")
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{DOC} has no <!-- {name}:begin --> ... <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    text = DOC.read_text()
    blocks = {"falsification": table("20news-3000-*.json"), "explore": explore_table(),
              "round3": table("20news-3000-attention-d0-p50-batch*.json"),
              "round4": table("20news-3000-attention-group*.json"),
              "round5": explore_summary(["explore-20news-3000-s*-poolloss0*.json",
                                         "explore-20news-3000-s*-poolloss1*.json",
                                         "explore-20news-3000-s*-poolloss2.json",
                                         "explore-20news-3000-s0-poolloss4.json",
                                         "explore-20news-3000-s0-window10-poolloss2.json",
                                         "explore-imdb-5000-*poolloss*.json",
                                         "explore-20news-3000-s0-group8.json",
                                         "explore-20news-3000-s0-window10.json", "explore-imdb-5000-*window*.json"]),
              "round6-inductive": table(["20news-full-inductive-attention-poolloss2.json",
                                         "20news-3000-inductive-attention-poolloss*.json",
                                         "20news-3000-attention-mincount5-s0.json",
                                         "20news-3000-attention-docshare02-s0.json"]),
              "round6-mean": table(["20news-3000-mean-docshare*.json", "20news-full-mean-docshare*.json"]),
              "round6-mean-imdb": table(["imdb-25000-mean-docshare.json", "imdb-25000-mean-docshare090.json"], "error"),
              "round7-refine": refine_table(),
              "round7-imdb": explore_summary(["explore-imdb-5000-*-meandocshare090-w10.json",
                                              "explore-imdb-5000-*-docshare03-w10.json",
                                              "explore-imdb-5000-*-poolloss4-w10.json",
                                              "explore-imdb-5000-*-sample80-w10.json"]),
              "round8-ngrams": ngrams_table(),
              "round9-dvloss": representation_table(["explore-imdb-*-docshare03-*.json",
                                                     "explore-imdb-*-window10-poolloss2.json"]),
              "round10-heads": representation_table(["explore-*-heads*.json", "explore-imdb-5000-s*-w10-uniform.json",
                                                     "explore-imdb-5000-s0-window10-poolloss2.json",
                                                     "explore-20news-3000-s0-poolloss2.json"]),
              "round11-alpha": representation_table(["explore-imdb-5000-s0-w10-alpha*.json",
                                                     "explore-imdb-5000-s0-window10-poolloss2.json"]),
              "round12-poolshare": explore_summary(["explore-imdb-5000-s*-poolshare*-w10.json",
                                                    "explore-imdb-25000-s0-w10-learned.json",
                                                    "explore-imdb-25000-s0-w10-uniform.json"]),
              "round13-imdb25k": explore_summary(["explore-imdb-25000-s*-w10-learned.json",
                                                  "explore-imdb-25000-s*-w10-uniform.json",
                                                  "explore-imdb-25000-s*-w10-poolloss*.json",
                                                  "explore-20news-3000-s*-poolloss2-b22cdcb.json",
                                                  "explore-20news-3000-s*-poolloss8.json"]),
              "round13-blocks": explore_summary(["explore-20news-3000-s*-block*.json",
                                                 "explore-20news-3000-s*-poolloss2-b22cdcb.json"]),
              "round14-3000": explore_summary(["explore-20news-3000-s*-poolloss8.json",
                                               "explore-20news-3000-r14-s*-poolloss8-uniform.json",
                                               "explore-20news-3000-s*-poolloss2-b22cdcb.json"]),
              "round14-full": seed_summary(["20news-full-attention-poolloss2.json",
                                            "20news-full-attention-poolloss2-seed[12].json",
                                            "20news-full-inductive-attention-poolloss2.json",
                                            "20news-full-attention-poolloss8-seed*-064bd85.json",
                                            "20news-full-attention-poolloss2-seed*-064bd85.json",
                                            "20news-full-inductive-attention-poolloss8-seed*-064bd85.json"]),
              "round14-imdb25k": explore_summary(["explore-imdb-25000-s*-w10-poolloss8*.json",
                                                  "explore-imdb-25000-r14-*.json"]),
              "round15-inductive": inductive_table(),
              "round15-imdb25k-mean": seed_summary(["imdb-25000-mean-docshare090.json",
                                                    "imdb-25000-mean-docshare090-seed[12]-*.json"]),
              "round15-imdb-full": seed_summary(["imdb-full-dbow.json", "imdb-full-dbow-seed[12]-*.json",
                                                 "imdb-full-attention-poolloss8-window10-*.json"]),
              "round15-salience": salience_table(),
              "round15-ctxshared": explore_summary(["explore-imdb-5000-r15-*.json"]),
              "round16-readout": pooling_table(),
              "round16-exclude": explore_summary(["explore-*-r16-*group1*.json"]),
              "round16-window": explore_summary(["explore-imdb-25000-r16-*-w15.json",
                                                 "explore-imdb-25000-s[01]-w10-poolloss8.json"]),
              "round16-parts": explore_summary(["explore-*-r16-*-parts-*.json",
                                                "explore-imdb-5000-r16-s[01]-*-uniform.json",
                                                "explore-20news-3000-s*-poolloss8.json",
                                                "explore-20news-3000-r14-s*-poolloss8-uniform.json",
                                                "explore-imdb-5000-r15-s[01]-w10.json"]),
              "round16-full-twin": seed_summary(["20news-full-attention-poolloss8-seed*-064bd85.json",
                                                 "20news-full-attention-uniform-seed*-391f749.json"]),
              "round16-imdb-twin": explore_summary(["explore-imdb-25000-s[01]-w10-poolloss8.json",
                                                    "explore-imdb-25000-r14-s2-w10-poolloss8.json",
                                                    "explore-imdb-25000-*poolloss8-uniform.json",
                                                    "explore-imdb-5000-r15-s[01]-w10.json",
                                                    "explore-imdb-5000-r16-s*-w10.json",
                                                    "explore-imdb-5000-r16-s*-w10-uniform.json"]),
              "round17-values": explore_summary(["explore-*-r17-*-ownvalues.json", *ROUND17_DEFAULTS]),
              "round17-batch": explore_summary(["explore-*-r17-*-batch*.json",
                                                 "explore-20news-3000-r17-*-attnalpha*.json",
                                                 "explore-imdb-25000-s[01]-w10-poolloss8.json", *ROUND17_DEFAULTS]),
              "round17-full-batch": seed_summary(["20news-full-attention-batch4096-seed*-a6072c0.json",
                                                  "20news-full-attention-poolloss8-seed*-064bd85.json",
                                                  "imdb-full-attention-batch4096-seed*-a6072c0.json",
                                                  "imdb-full-attention-poolloss8-window10-*.json"])}
    for name, pattern, metric in (("full-20news", "20news-full-*.json", "accuracy"),
                                  ("imdb-5000", "imdb-5000-*.json", "error"),
                                  ("imdb-25000", "imdb-25000-*.json", "error"),
                                  ("imdb-full", "imdb-full-*.json", "error")):
        if f"<!-- {name}:begin -->" in text:
            blocks[name] = table(pattern, metric) if list(RESULTS.glob(pattern)) else "_not run yet_"
    for name, body in blocks.items():
        text = replace_block(text, name, body)
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
