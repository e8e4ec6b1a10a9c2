"""The head-to-head benchmark: table building, and a slow smoke run of compare_gensim --quick."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from attn_doc2vec.benchmark import CONCATENATIONS, MODELS, RunSpec, markdown_table, summarize
from attn_doc2vec.datasets import DEFAULT_DATA_DIR, load_dataset, strip_headers

REPO = Path(__file__).resolve().parents[1]
HAS_DATA = (Path(DEFAULT_DATA_DIR) / "20news.jsonl.gz").is_file()
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None


def test_summary_averages_seeds_per_model() -> None:
    rows = [{"dataset": "imdb", "protocol": "transductive", "model": "ours-dbow", "accuracy": acc,
             "train_seconds": 10.0, "words_per_second": 1e6, "peak_rss_mb": mb}
            for acc, mb in ((0.88, 900.0), (0.90, 950.0))]
    [summary] = summarize(rows)
    assert summary["seeds"] == 2
    assert summary["accuracy_mean"] == pytest.approx(0.89)
    assert summary["accuracy_std"] == pytest.approx(0.01)
    assert summary["peak_rss_mb_max"] == 950.0
    table = markdown_table([summary])
    assert "| imdb | transductive | ours-dbow | 2 | 11.00 ± 1.00 | 89.00 ± 1.00 |" in table


def test_run_spec_keeps_gensim_settings_and_applies_ours_only_to_ours() -> None:
    ours = RunSpec("ours-dm-attention", "imdb", ".", 0, overrides={"batch_size": 4096}).params()
    theirs = RunSpec("gensim-dm-mean", "imdb", ".", 0, overrides={"batch_size": 4096}).params()
    for key in ("vector_size", "negative", "min_count", "sample", "epochs"):  # the shared settings
        assert ours[key] == theirs[key]
    # learning rate and window are each design's own (docs/attention-designs.md): Adagrad's default alpha
    assert "alpha" not in ours and ours["window"] == 5 and theirs["alpha"] == 0.05
    assert ours["batch_size"] == 4096 and "batch_size" not in theirs
    assert ours["context"] == "attention"


def test_news_headers_are_stripped() -> None:
    assert strip_headers("From: a@b\nSubject: hi\n\nbody line\n\nmore") == "body line\n\nmore"
    assert strip_headers("no header block") == "no header block"


@pytest.mark.skipif(not HAS_DATA, reason=f"benchmark data not found in {DEFAULT_DATA_DIR}")
def test_dataset_shuffle_is_seeded_and_tokens_are_lowercase() -> None:
    first = load_dataset("20news", subset=50, seed=3)
    again = load_dataset("20news", subset=50, seed=3)
    other = load_dataset("20news", subset=50, seed=4)
    assert [d.words for d in first] == [d.words for d in again]
    assert [d.words for d in first] != [d.words for d in other]
    assert all(w == w.lower() for d in first for w in d.words)
    assert {d.split for d in first} <= {"train", "test"}


@pytest.mark.slow
@pytest.mark.skipif(not (HAS_DATA and HAS_SKLEARN), reason="needs ../shared/data and the bench extra")
def test_quick_comparison_has_every_row(tmp_path) -> None:
    from attn_doc2vec.cli import compare as compare_gensim

    out = tmp_path / "quick"
    compare_gensim.main(["--dataset", "20news", "--quick", "--subset", "600", "--device", "cpu", "--out", str(out)])
    result = json.loads(out.with_suffix(".json").read_text())
    models = {row["model"] for row in result["summary"]}
    assert models == set(MODELS) | set(CONCATENATIONS)
    assert all(0.0 < row["accuracy_mean"] <= 1.0 for row in result["summary"])
    table = out.with_suffix(".md").read_text()
    assert all(f"| {m} |" in table for m in models)
