"""Head-to-head evaluation of document vectors: ours and gensim's, same tokens, same protocol.

Each model is trained in its own process (so its peak memory is its own), its
document vectors are classified with scikit-learn's logistic regression (trained
on the ``train`` split's vectors, scored on the ``test`` split's), and the figures
are gathered into one table. Needs the ``bench`` extra (scikit-learn, psutil).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from attn_doc2vec.datasets import LabeledDocument, load_dataset

logger = logging.getLogger(__name__)

# The reference settings of the comparison (gensim's IMDB tutorial).
SHARED = {"vector_size": 100, "negative": 5, "min_count": 2, "sample": 0.0, "epochs": 20}
MODELS = {
    "gensim-dbow": {"library": "gensim", "dm": 0},
    "gensim-dm-mean": {"library": "gensim", "dm": 1, "window": 10, "alpha": 0.05},
    "ours-dbow": {"library": "ours", "dm": 0},
    "ours-dm-mean": {"library": "ours", "dm": 1, "context": "mean", "window": 10, "alpha": 0.05},
    # the attentive design with its own defaults (alpha 0.1, row-wise Adagrad); window 5, as measured in
    # docs/attention-designs.md
    "ours-dm-attention": {"library": "ours", "dm": 1, "context": "attention", "window": 5},
    # gensim's other switches side by side (not in the default run): PV-DBOW with interleaved skip-gram word
    # training, PV-DBOW with hierarchical softmax alone, and PV-DM concatenation (gensim's tutorial: window 5)
    "gensim-dbow-words": {"library": "gensim", "dm": 0, "dbow_words": 1},
    "ours-dbow-words": {"library": "ours", "dm": 0, "dbow_words": 1},
    "gensim-dbow-hs": {"library": "gensim", "dm": 0, "hs": 1, "negative": 0},
    "ours-dbow-hs": {"library": "ours", "dm": 0, "hs": 1, "negative": 0},
    "gensim-dm-concat": {"library": "gensim", "dm": 1, "dm_concat": 1},
    "ours-dm-concat": {"library": "ours", "dm": 1, "dm_concat": 1},
}
DEFAULT_MODELS = ("gensim-dbow", "gensim-dm-mean", "ours-dbow", "ours-dm-mean", "ours-dm-attention")  # the headline
CONCATENATIONS = {"ours-dm-attention+dbow": ("ours-dm-attention", "ours-dbow"),
                  "gensim-dm-mean+dbow": ("gensim-dm-mean", "gensim-dbow")}


@dataclass
class RunSpec:
    """One model trained on one dataset with one seed under one protocol."""

    model: str
    dataset: str
    data_dir: str
    seed: int
    protocol: str = "transductive"  # or "inductive"
    subset: int | None = None
    epochs: int | None = None
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)  # extra parameters for our models
    processes: int = 1  # our models: processes training the one model (torch.distributed, gloo on localhost)

    def params(self) -> dict[str, Any]:
        """Model parameters: shared settings, the model's own, then overrides."""
        params = {**SHARED, **{k: v for k, v in MODELS[self.model].items() if k != "library"}}
        if self.epochs is not None:
            params["epochs"] = self.epochs
        if MODELS[self.model]["library"] == "ours":
            params.update(device=self.device, **self.overrides)
        return params


@dataclass
class RunResult:
    """Figures of one run, plus the vectors of the labelled documents for concatenation."""

    spec: RunSpec
    accuracy: float
    train_seconds: float
    words_per_second: float
    peak_rss_mb: float
    infer_seconds: float | None = None
    config: dict[str, Any] | None = None  # our models: the whole resolved configuration, defaults included
    sync_seconds: float | None = None  # our models across processes: rank 0's seconds adding up the changes
    train_vectors: np.ndarray | None = field(default=None, repr=False)
    test_vectors: np.ndarray | None = field(default=None, repr=False)
    train_labels: np.ndarray | None = field(default=None, repr=False)
    test_labels: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        """The JSON-friendly figures (no vectors)."""
        params = self.spec.params() if self.spec.model in MODELS else None  # None for a concatenation
        return {**asdict(self.spec), "params": params, "accuracy": self.accuracy,
                "error": 1 - self.accuracy, "train_seconds": self.train_seconds,
                "words_per_second": self.words_per_second, "peak_rss_mb": self.peak_rss_mb,
                "infer_seconds": self.infer_seconds, "sync_seconds": self.sync_seconds, "config": self.config}


def classify(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Accuracy of a logistic regression fitted on ``train_x`` and scored on ``test_x``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(train_x), train_y)
    return float(clf.score(scaler.transform(test_x), test_y))


def _split(docs: list[LabeledDocument]) -> tuple[list[LabeledDocument], list[LabeledDocument], list[LabeledDocument]]:
    train = [d for d in docs if d.split == "train" and d.label is not None]
    test = [d for d in docs if d.split == "test" and d.label is not None]
    return train, test, [d for d in docs if d.split == "unsup"]


def run(spec: RunSpec) -> RunResult:
    """Train and evaluate one model in this process (see :func:`run_isolated`)."""
    docs = load_dataset(spec.dataset, spec.data_dir, subset=spec.subset, seed=spec.seed)
    train, test, unsup = _split(docs)
    if spec.protocol == "transductive":
        corpus = docs
    else:  # inductive: test documents are unseen; their vectors are inferred
        corpus = [type(d)(d.words, [i], d.split, d.label) for i, d in enumerate(train + unsup)]
    params = spec.params()
    library = MODELS[spec.model]["library"]
    sync_seconds = None
    if library == "gensim":
        from gensim.models.doc2vec import Doc2Vec as GensimDoc2Vec

        model = GensimDoc2Vec(workers=os.cpu_count(), seed=spec.seed, **params)
        model.build_vocab(corpus)
        t0 = time.perf_counter()
        model.train(corpus, total_examples=model.corpus_count, epochs=model.epochs)
        train_seconds = time.perf_counter() - t0
    else:
        from attn_doc2vec import Doc2Vec

        model = Doc2Vec(seed=spec.seed, **params)
        model.build_vocab(corpus)
        t0 = time.perf_counter()
        history = model.train(corpus, total_examples=model.corpus_count, epochs=model.epochs, progress=False)
        train_seconds = time.perf_counter() - t0
        if spec.processes > 1:
            sync_seconds = sum(h.sync_seconds for h in history)
    words = model.corpus_total_words * params["epochs"]
    infer_seconds = None
    if spec.protocol == "transductive":
        train_x = np.stack([model.dv[d.tags[0]] for d in train])
        test_x = np.stack([model.dv[d.tags[0]] for d in test])
    else:
        train_x = np.stack([model.dv[i] for i in range(len(train))])
        t0 = time.perf_counter()
        if library == "gensim":
            test_x = np.stack([model.infer_vector(d.words) for d in test])
        else:
            test_x = model.infer_vectors([d.words for d in test], progress=False)
        infer_seconds = time.perf_counter() - t0
    train_y, test_y = np.array([d.label for d in train]), np.array([d.label for d in test])
    accuracy = classify(train_x, train_y, test_x, test_y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return RunResult(spec=spec, accuracy=accuracy, train_seconds=train_seconds,
                     words_per_second=words / train_seconds, peak_rss_mb=peak, infer_seconds=infer_seconds,
                     config=None if library == "gensim" else model.config.to_dict(), sync_seconds=sync_seconds,
                     train_vectors=train_x, test_vectors=test_x, train_labels=train_y, test_labels=test_y)


def run_isolated(spec: RunSpec) -> RunResult:
    """:func:`run` in a fresh process, so that peak memory and thread pools are the model's own; with
    ``spec.processes > 1``, in that many processes joined by a gloo process group on this machine, which
    train one model together (:mod:`attn_doc2vec.distributed`; rank 0's figures and vectors are returned)."""
    if spec.processes > 1:
        if MODELS[spec.model]["library"] != "ours":
            raise ValueError(f"{spec.model} runs in one process: processes > 1 trains our models only.")
        import tempfile

        import torch.multiprocessing as tmp

        with tempfile.TemporaryDirectory() as folder:
            result_file = os.path.join(folder, "result.pkl")
            tmp.spawn(_run_rank, args=(spec, _free_port(), result_file), nprocs=spec.processes)
            with open(result_file, "rb") as f:
                return pickle.load(f)
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(run, (spec,))


def _die_with_parent() -> None:
    """On Linux, have the kernel stop this process when the one that spawned it dies (a killed benchmark
    would otherwise leave its ranks training)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_rank(rank: int, spec: RunSpec, port: int, result_file: str) -> None:
    import torch.distributed as dist

    _die_with_parent()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=spec.processes)
    try:
        result = run(spec)
        if rank == 0:
            with open(result_file, "wb") as f:
                pickle.dump(result, f)
    finally:
        dist.destroy_process_group()


def concatenate(first: RunResult, second: RunResult, name: str) -> RunResult:
    """Evaluate the concatenation of two runs' vectors (same dataset, seed and protocol)."""
    accuracy = classify(np.hstack([first.train_vectors, second.train_vectors]), first.train_labels,
                        np.hstack([first.test_vectors, second.test_vectors]), first.test_labels)
    seconds = first.train_seconds + second.train_seconds
    spec = RunSpec(**{**asdict(first.spec), "model": name})
    words = first.words_per_second * first.train_seconds
    return RunResult(spec=spec, accuracy=accuracy, train_seconds=seconds, words_per_second=words / seconds,
                     peak_rss_mb=max(first.peak_rss_mb, second.peak_rss_mb))


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds, per (dataset, protocol, model)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["protocol"], row["model"]), []).append(row)
    out = []
    for (dataset, protocol, model), group in groups.items():
        acc = np.array([r["accuracy"] for r in group])
        wps = np.array([r["words_per_second"] for r in group])
        out.append({"dataset": dataset, "protocol": protocol, "model": model, "seeds": len(group),
                    "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
                    "train_seconds_mean": float(np.mean([r["train_seconds"] for r in group])),
                    "words_per_second_mean": float(wps.mean()),
                    "peak_rss_mb_max": float(max(r["peak_rss_mb"] for r in group))})
    return out


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (error for IMDB, accuracy for 20 Newsgroups)."""
    lines = ["| dataset | protocol | model | seeds | error % | accuracy % | train s | words/s | peak RSS MB |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summary:
        err = 100 * (1 - s["accuracy_mean"])
        std = 100 * s["accuracy_std"]
        lines.append(f"| {s['dataset']} | {s['protocol']} | {s['model']} | {s['seeds']} | {err:.2f} ± {std:.2f} | "
                     f"{100 * s['accuracy_mean']:.2f} ± {std:.2f} | {s['train_seconds_mean']:.1f} | "
                     f"{s['words_per_second_mean']:,.0f} | {s['peak_rss_mb_max']:,.0f} |")
    return "\n".join(lines)
