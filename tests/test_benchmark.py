"""The head-to-head benchmark: table building, the generated quality section of docs/benchmarks.md, and a slow
smoke run of compare_gensim --quick."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from attn_doc2vec.benchmark import (
    CONCATENATIONS,
    DEFAULT_MODELS,
    MODELS,
    SHARED,
    RunSpec,
    markdown_table,
    summarize,
)
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


@pytest.mark.parametrize("switch", ["dbow-words", "dbow-hs", "dm-concat"])
def test_gensims_other_switches_run_with_the_same_settings_in_both_libraries(switch: str) -> None:
    from gensim.models.doc2vec import Doc2Vec as GensimDoc2Vec

    from attn_doc2vec import Doc2Vec

    ours = RunSpec(f"ours-{switch}", "20news", ".", 0, device="cpu").params()
    theirs = RunSpec(f"gensim-{switch}", "20news", ".", 0).params()
    assert {k: v for k, v in ours.items() if k != "device"} == theirs
    assert f"ours-{switch}" not in DEFAULT_MODELS
    mine, gensims = Doc2Vec(**ours), GensimDoc2Vec(**theirs)  # both take them as they are
    for name in ("dm", "dbow_words", "hs", "negative", "dm_concat", "window", "alpha"):
        assert getattr(mine, name) == getattr(gensims, name), name


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
    assert models == set(DEFAULT_MODELS) | set(CONCATENATIONS)
    assert all(0.0 < row["accuracy_mean"] <= 1.0 for row in result["summary"])
    table = out.with_suffix(".md").read_text()
    assert all(f"| {m} |" in table for m in models)


def _benchmarks_report():
    spec = importlib.util.spec_from_file_location("benchmarks_report", REPO / "scripts" / "benchmarks_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


def _figures_of(value, out: set[str]) -> set[str]:
    """Every way the report may print a number held in a result file: as written, rounded, or in percent."""
    if isinstance(value, dict):
        for key, item in value.items():
            _figures_of(key, out)
            _figures_of(item, out)
    elif isinstance(value, list):
        for item in value:
            _figures_of(item, out)
    elif isinstance(value, str):
        out.update(NUMBER.findall(value))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.update({str(value), f"{value:,.0f}", f"{value:.0f}", f"{value:.1f}", f"{value:.2f}",
                    f"{100 * value:.2f}", f"{100 * value:.1f}"})
    return out


def test_benchmarks_quality_section_is_generated_from_result_files(tmp_path, monkeypatch) -> None:
    """docs/benchmarks.md's quality section is what scripts/benchmarks_report.py makes of docs/results/*.json, and
    every number in it is a figure of a result file or one of the protocol settings of attn_doc2vec.benchmark."""
    report = _benchmarks_report()
    section = report.render_section()
    page = (REPO / "docs" / "benchmarks.md").read_text()
    assert report.extract_section(page) == section, "hand edit? run python scripts/benchmarks_report.py"
    assert report.render_page(page, section) == page  # --check passes

    files = sorted((REPO / "docs" / "results").glob("*.json"))
    assert files and all(f"(results/{path.name})" in section for path in files)  # one table per result file
    allowed: set[str] = set()
    for path in files:
        _figures_of(json.loads(path.read_text()), allowed)
    _figures_of([SHARED, MODELS], allowed)  # the settings the protocol paragraph quotes
    for _title, stems in report.HEADLINES:  # the per-seed tables: each file's figures, and the mean and std
        designs = [REPO / "docs" / "results" / "designs" / f"{stem}.json" for stem in stems]
        datas = [json.loads(path.read_text()) for path in designs if path.is_file()]
        runs = [run for data in datas for run in data["runs"]]
        assert all(f"(results/designs/{path.name})" in section for path in designs if path.is_file())
        _figures_of(runs, allowed)
        rows: dict[tuple, list[float]] = {}  # a row per model, processes and the file's --set (bar workers)
        for data in datas:
            settings = tuple(sorted(s for s in data["args"].get("set") or [] if not s.startswith("workers=")))
            for run in data["runs"]:
                key = (run["model"], run.get("processes", 1), settings if run["model"].startswith("ours") else ())
                rows.setdefault(key, []).append(run["accuracy"])
        for values in rows.values():
            accuracy = np.array(values)
            _figures_of([float(accuracy.mean()), float(accuracy.std()), float(1 - accuracy.mean()), len(accuracy)],
                        allowed)  # and the number of seeds
        _figures_of([float(1 - run["accuracy"]) for run in runs], allowed)  # IMDB rows show error %
    text = re.sub(r"\d{4}-\d{2}-\d{2}", "", section)  # the date of the note is not a figure
    text = re.sub(r"`[0-9a-f]{7}`", "", text)  # nor is a commit
    text = re.sub(r"\[[\w.-]+\]\(results/designs/[\w.-]+\)", "", text)  # nor a result file's name
    unbacked = set(NUMBER.findall(text)) - allowed
    assert not unbacked, f"numbers in docs/benchmarks.md with no result file behind them: {sorted(unbacked)}"
    for gone in ("43.90", "55.52", "53.89", "45.90", "75.1", "68.7", "76.0", "1.54", "1.89"):  # hand-copied
        assert gone not in section

    # --check fails on a hand edit and leaves the page alone
    doc = tmp_path / "benchmarks.md"
    doc.write_text(page.replace("| 73.61 |", "| 73.62 |"))
    monkeypatch.setattr(report, "DOC", doc)
    assert report.main(["--check"]) == 1
    assert "| 73.62 |" in doc.read_text()
    assert report.main([]) == 0 and report.main(["--check"]) == 0 and doc.read_text() == page


def test_every_result_file_the_docs_link_to_is_in_the_repository() -> None:
    """A figure in the docs is only as good as its result file: each linked file exists and is tracked by git
    (a broad .gitignore once hid docs/results/ subfolders)."""
    import subprocess

    tracked = set(subprocess.run(["git", "ls-files", "docs"], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.split())
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    linked = 0
    for page in pages:
        base = page.parent
        for target in re.findall(r"\]\(((?:docs/)?results/[^)#]+)\)", page.read_text(encoding="utf-8")):
            path = (base / target).resolve()
            assert path.exists(), f"{page.name} links to missing {target}"
            name = str(path.relative_to(REPO))
            if tracked:  # in a git checkout: the file, or for a folder some file in it
                assert name in tracked or (path.is_dir() and any(t.startswith(name + "/") for t in tracked)), \
                    f"{page.name} links to untracked {target}"
            linked += 1
    assert linked > 20


def test_seed_tables_gather_one_seed_per_file_and_refuse_a_seed_twice() -> None:
    report = _benchmarks_report()

    def result(seed: int, accuracy: float, commit: str) -> dict:
        return {"args": {"set": ["workers=1", "window=10"]}, "provenance": {"commit": commit},
                "runs": [{"model": "ours-dm-attention", "dataset": "imdb", "seed": seed, "accuracy": accuracy},
                         {"model": "gensim-dbow", "dataset": "imdb", "seed": seed, "accuracy": accuracy - 0.01}]}

    files = {"a": result(0, 0.80, "abc1234ffff"), "b": result(1, 0.90, "def5678ffff")}
    ours, gensim = report.seed_rows(files)
    assert ours["label"] == "ours PV-DM attention (`window=10`)" and gensim["label"] == "gensim PV-DBOW"
    assert ours["by_seed"] == {0: 0.80, 1: 0.90} and ours["stems"] == ["a", "b"]
    assert ours["commits"] == ["abc1234", "def5678"]
    assert ours["mean"] == pytest.approx(0.85) and ours["std"] == pytest.approx(0.05)
    table = report.seed_table(files)
    assert "| ours PV-DM attention (`window=10`) | 20.00 | 10.00 | 15.00 ± 5.00 (2) |" in table  # IMDB: error %
    with pytest.raises(ValueError, match="seed 0 of ours PV-DM attention"):
        report.seed_rows({"a": result(0, 0.80, "x"), "c": result(0, 0.81, "y")})


def test_compare_output_names_keep_their_dots() -> None:
    from attn_doc2vec.cli.compare import output_paths

    assert output_paths("r/docshare0.25-s0") == (Path("r/docshare0.25-s0.json"), Path("r/docshare0.25-s0.md"))
    assert output_paths("r/x.json") == (Path("r/x.json"), Path("r/x.md"))
    assert output_paths("r/x") == (Path("r/x.json"), Path("r/x.md"))


def test_memory_tables_are_generated_from_bench_memory_files(tmp_path) -> None:
    """The memory tables of docs/benchmarks.md: a row per bench_memory.py file, its sizes from the file that
    prepared the same corpus, a killed run shown as killed, the limit it ran under; the page is up to date."""
    report = _benchmarks_report()

    def write(stem: str, command: str, results: dict, limit: int | None = None) -> None:
        record = {"command": command, "commit": {"commit": "abcdef0123"}, "corpus": "/x/c.txt",
                  "memory_limit_mb": limit, "results": results}
        (tmp_path / f"{stem}.json").write_text(json.dumps(record))

    store = {"peak_rss_mb": 2793, "peak_anonymous_mb": 620, "words_per_second": 60480.6}
    write("a", "python scripts/bench_memory.py --modes prepare store",
          {"prepare": {"documents": 1159958, "words": 27796815, "peak_rss_mb": 2636}, "store": store})
    write("b", "python scripts/bench_memory.py --modes store --dv-mapfile D", {"store": {"failed": -9}}, limit=1250)
    rows = report.memory_table(["a", "b", "c"], folder=tmp_path).splitlines()[2:]
    assert rows[0] == ("| [a](results/memory/a.json) | `c.txt` | 27.8 M | 1,159,958 | 2,636 | in memory | none | "
                       "2,793 | 620 | 60,481 | `abcdef0` |")
    assert "| 27.8 M | 1,159,958 | – | mapped | 1,250 MB | killed (exit -9) | killed (exit -9) | – |" in rows[1]
    assert rows[2].startswith("| c | not run yet |")
    # the table of ways of training: a row per mode the file measured, file first, gensim without words/s
    write("m", "python scripts/bench_memory.py --modes prepare file store gensim",
          {"prepare": {"documents": 3, "words": 9, "peak_rss_mb": 1}, "gensim": {"peak_rss_mb": 210,
           "peak_anonymous_mb": 170}, "store": store, "file": {**store, "peak_rss_mb": 891}})
    write("r", "python scripts/bench_memory.py --modes runtime store",
          {"runtime": {"peak_rss_mb": 341, "peak_anonymous_mb": 205}, "store": {"failed": -9}})
    rows = report.modes_table(["m", "n", "r"], folder=tmp_path).splitlines()[2:]
    assert [row.split(" | ")[2:4] for row in rows[:3]] == [["891", "620"], ["2,793", "620"], ["210", "170"]]
    assert rows[0].startswith("| ours: a new process builds the vocabulary from the text file")
    assert rows[2].endswith("| – | `abcdef0` |") and rows[3].startswith("| not run yet | n |")
    assert rows[4].startswith("| ours: the runtime alone") and rows[4].split(" | ")[2:5] == ["341", "205", "–"]
    assert "| killed (exit -9) |" in rows[5] and rows[5].startswith("| ours: a saved model trains from its corpus")
    page = (REPO / "docs" / "benchmarks.md").read_text()
    assert report.render_memory(page) == page, "run python scripts/benchmarks_report.py"
