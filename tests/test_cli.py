"""The command line (``attn-doc2vec``, ``scripts/*.py``): typed flags from the config, Ctrl-C and --resume,
attention maps written by ``visualize``."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attn_doc2vec import Doc2VecConfig, cli
from attn_doc2vec.cli import train as train_cli
from attn_doc2vec.cli import visualize as visualize_cli
from attn_doc2vec.config import config_fields

REPO = Path(__file__).resolve().parents[1]


def test_train_flags_parse_every_config_type():
    parser = train_cli.build_parser()
    args = parser.parse_args(["--alpha", "0.05", "--doc-share", "0.5", "--uniform-attention", "false",
                              "--max-vocab-size", "none", "--pool-share", "0.2", "--context", "mean",
                              "--workers", "2"])
    assert (args.alpha, args.doc_share, args.uniform_attention) == (0.05, 0.5, False)
    assert (args.max_vocab_size, args.pool_share, args.context, args.workers) == (None, 0.2, "mean", 2)
    assert parser.parse_args(["--uniform-attention", "yes"]).uniform_attention is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--uniform-attention", "maybe"])
    defaults = parser.parse_args([])
    assert {f.name: getattr(defaults, f.name) for f in config_fields()} == Doc2VecConfig().to_dict()


def test_train_help_has_no_empty_or_repeated_defaults(capsys):
    with pytest.raises(SystemExit):
        train_cli.build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "``" not in text and ":mod:" not in text
    assert text.count("(default: 0.0001)") == 1  # --min-alpha once, not repeated by the formatter


def _train(tmp_path, *flags: str) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--no-progress", "--vector-size", "16",
               "--epochs", "8", "--batch-size", "256", *flags]
    # Ctrl-C on, as from a terminal, even when this test process inherited SIGINT ignored (started in the
    # background by a shell without job control): the child would inherit that too
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_saves_and_resume_finishes_the_same_model(tmp_path):
    """A real SIGINT to scripts/train.py in epoch 3: it saves, exits 130, and --resume ends with the model
    an uninterrupted run gives (same machine, same seed)."""
    from attn_doc2vec import Doc2Vec

    whole = _train(tmp_path, "--out", "whole")
    assert whole.wait(timeout=600) == 0, whole.stdout.read()
    run = _train(tmp_path, "--save-every", "2")
    lines = []
    for line in run.stdout:
        lines.append(line)
        if "epoch 3/8:" in line:  # logged at the end of epoch 3: the SIGINT lands in epoch 4
            run.send_signal(signal.SIGINT)
            break
    out = run.communicate(timeout=600)[0]
    assert run.returncode == 130, "".join(lines) + out
    assert "saved" in out and "continue with: python scripts/train.py --resume" in out
    path = tmp_path / "checkpoints" / "lee-attention"  # the current folder's checkpoints/, not the repository's
    interrupted = Doc2Vec.load(path)
    assert interrupted.schedule.epoch in (3, 4) and not interrupted.schedule.finished
    resumed = _train(tmp_path, "--resume", str(path))
    resumed_out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, resumed_out
    assert "resuming" in resumed_out
    a, b = Doc2Vec.load(path), Doc2Vec.load(tmp_path / "whole")
    assert a.schedule.finished and a.epochs_trained == 8
    np.testing.assert_array_equal(a.dv.vectors, b.dv.vectors)
    np.testing.assert_array_equal(a.wv.vectors, b.wv.vectors)


@pytest.mark.parametrize("flag, value", [("--hs", "1"), ("--dm-tag-count", "2"), ("--window", "3")])
def test_resume_refuses_to_change_the_tables_shape(small_model, tmp_path, capsys, flag, value):
    """hs adds Huffman rows to the output table, dm_tag_count and window size dm_concat's input: a checkpoint
    fixes them, and --resume says so instead of failing deep inside training."""
    small_model.save(tmp_path / "ckpt")
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--resume", str(tmp_path / "ckpt"), flag, value])
    assert exit_info.value.code == 2
    assert f"--resume cannot change {flag[2:].replace('-', '_')}" in capsys.readouterr().err


def test_train_maps_the_document_tables_and_resume_maps_them_again(small_model, topic_docs, tmp_path):
    """--dv-mapfile: the main job's per-document tables live in .npy files there; --resume with another
    directory maps the checkpoint's copies there and goes on."""
    from attn_doc2vec import Doc2Vec

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(d.words) for d in topic_docs[:30]) + "\n", encoding="utf-8")
    common = ["--corpus", str(corpus), "--tokenizer", "whitespace", "--no-progress", "--vector-size", "8",
              "--min-count", "1", "--device", "cpu", "--out", str(tmp_path / "ckpt")]
    assert train_cli.main([*common, "--epochs", "2", "--dv-mapfile", str(tmp_path / "a")]) == 0
    first = Doc2Vec.load(tmp_path / "ckpt")
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "dv.npy"), first.dv.vectors)
    assert train_cli.main(["--resume", str(tmp_path / "ckpt"), "--corpus", str(corpus), "--tokenizer", "whitespace",
                           "--epochs", "1", "--no-progress", "--dv-mapfile", str(tmp_path / "b")]) == 0
    resumed = Doc2Vec.load(tmp_path / "ckpt")
    assert resumed.epochs_trained == 3
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "dv.npy"), resumed.dv.vectors)


def test_visualize_writes_pngs(small_model, topic_docs, tmp_path, capsys, monkeypatch):
    script = visualize_cli
    small_model.save(tmp_path / "ckpt")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(d.words) for d in topic_docs[:20]) + "\n", encoding="utf-8")
    out = tmp_path / "tag3.png"
    assert script.main([str(tmp_path / "ckpt"), "--tag", "3", "--corpus", str(corpus), "--tokenizer", "whitespace",
                        "--out", str(out), "--length", "20"]) == 0
    assert out.stat().st_size > 2000 and (tmp_path / "tag3-importance.png").stat().st_size > 2000
    text = tmp_path / "text.txt"
    text.write_text(" ".join(topic_docs[2].words[:45]), encoding="utf-8")
    script.main([str(tmp_path / "ckpt"), "--text-file", str(text), "--tokenizer", "whitespace", "--all-pages",
                 "--out", str(tmp_path / "page.png"), "--no-importance"])
    assert sorted(p.name for p in tmp_path.glob("page-p*.png")) == ["page-p01.png", "page-p02.png"]
    assert "most attended tokens" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["visualize.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        script.main()
    assert exit_info.value.code == 0 and "--tag" in capsys.readouterr().out


def test_console_command_dispatches_and_is_installed(capsys):
    from importlib.metadata import entry_points

    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("train", "visualize", "compare", "bench"))
    assert cli.main(["nonsense"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0 and "--save-every" in capsys.readouterr().out
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("attn-doc2vec") == "attn_doc2vec.cli:main"


def test_synthetic_corpus_writes_each_document_once_or_draws_to_a_size(tmp_path, capsys):
    """scripts/synthetic_corpus.py: the benchmark's tokenized documents one per line, each once, or drawn with
    replacement (seeded) until the file holds the tokens asked for, K of them a line with --join K."""
    import gzip
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("synthetic_corpus", REPO / "scripts" / "synthetic_corpus.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    records = [{"text": f"Review {i}: not good, word{i}!", "split": "train", "label": i % 2} for i in range(20)]
    with gzip.open(tmp_path / "imdb.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)

    def write(name: str, *flags: str) -> list[str]:
        assert script.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / name), *flags]) == 0
        return (tmp_path / name).read_text(encoding="utf-8").splitlines()

    lines = write("all.txt")
    assert sorted(lines) == sorted(f"review {i} : not good , word{i} !" for i in range(20))  # 8 tokens each
    drawn = {name: write(f"{name}.txt", "--tokens", "500", "--seed", seed) for name, seed in
             (("a", "0"), ("b", "0"), ("c", "1"))}
    for name in drawn:
        assert 500 <= 8 * len(drawn[name]) < 500 + 8 and set(drawn[name]) <= set(lines)  # stops past 500
    assert drawn["a"] == drawn["b"] and drawn["a"] != drawn["c"]  # the seed decides the draws
    joined = write("joined.txt", "--tokens", "500", "--join", "3")
    assert all(len(line.split()) == 3 * 8 and line.count("review") == 3 for line in joined)  # 3 reviews a line
    assert 500 <= 24 * len(joined) < 500 + 24
    split = write("split.txt", "--split", "3")  # every review cut into documents of 3, 3 and 2 tokens
    assert len(split) == 3 * 20 and [len(line.split()) for line in split[:3]] == [3, 3, 2]
    assert " ".join(split).split() == " ".join(lines).split()  # the same tokens, in the same order
    for flags, words in ((["--out", str(tmp_path / "a.txt")], "exists: choose a new file"),
                         (["--out", str(tmp_path / "j.txt"), "--join", "2"], "--join K needs"),
                         (["--out", str(tmp_path / "s.txt"), "--split", "0"], "--split N needs")):
        with pytest.raises(SystemExit):
            script.main(["--data-dir", str(tmp_path), *flags])
        assert words in capsys.readouterr().err


def test_bench_speed_reports_each_librarys_thread_scaling_from_the_same_call() -> None:
    """scripts/bench_speed.py: medians per (model, backend, threads), ratios to gensim's run with the most threads,
    and one scaling line per model measured on one thread and on more."""
    from attn_doc2vec.cli.bench import summarize, thread_scaling

    def run(model, backend, workers, wps):
        return {"model": model, "backend": backend, "workers": workers, "docs": 100, "epochs": 1, "infer_docs": 0,
                "words_per_second": wps, "cpu_seconds": workers * 1.0, "train_seconds": 1.0, "peak_rss_mb": 10.0}

    runs = [run("gensim-dm-mean", "-", 2, 900.0), run("gensim-dm-mean", "-", 2, 1100.0),
            run("gensim-dm-mean", "-", 1, 600.0), run("ours-dm-attention", "numba", 2, 300.0),
            run("ours-dm-attention", "numba", 1, 200.0), run("gensim-dbow", "-", 2, 2000.0)]
    rows = summarize(runs)
    ours2 = next(r for r in rows if r["model"] == "ours-dm-attention" and r["workers"] == 2)
    assert ours2["ratio"] == pytest.approx(300.0 / 1000.0)  # gensim's PV-DM mean on 2 threads, the median
    assert thread_scaling(rows) == ["- gensim-dm-mean: 2 threads 1.67x one thread's words/s",
                                    "- ours-dm-attention (numba): 2 threads 1.50x one thread's words/s"]


def test_bench_warm_up_loads_every_kernel_the_timed_run_calls() -> None:
    """The warm-up trains with the run's sample, so the downsampling kernel is loaded (or compiled) before the
    timed run, not in it; with sample=0 (no downsampling) it is not needed and not called."""
    from attn_doc2vec import fused, fused_batching
    from attn_doc2vec.cli.bench import MODELS, warm_up

    params = {**MODELS["ours-dm-attention"][1], "backend": "numba", "workers": 1, "seed": 1, "window": 5,
              "negative": 5, "min_count": 5, "vector_size": 100}
    fused._called.discard(fused_batching._downsample)
    warm_up({**params, "sample": 0.0})
    assert fused_batching._downsample not in fused._called
    warm_up({**params, "sample": 1e-4})
    assert fused_batching._downsample in fused._called


def test_profile_kernel_counts_every_batch_and_compares_equal_work_with_gensim(tmp_path) -> None:
    """scripts/profile_kernel.py: the epoch's examples are those of every kernel call, the replayed batch is a full
    one, gensim's effective words (its predictions after the same downsampling) match our examples, and the
    per-example table is made of those figures."""
    import json
    import math

    from gensim.test.utils import datapath

    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "profile_kernel.py"), "--corpus",
                    datapath("lee_background.cor"), "--subset", "300", "--batch", "3", "--repeats", "2",
                    "--set", "min_count=2", "--json", str(out)], check=True, capture_output=True, text=True)
    result = json.loads(out.read_text())
    epoch, gensim, per = result["epoch"], result["gensim"], result["us_per_example"]
    assert epoch["batches"] == math.ceil(epoch["examples"] / 1024) and epoch["examples"] > 20_000
    assert result["replayed_batch"]["examples"] == 1024
    assert result["replayed_batch"]["word_rows"] >= result["replayed_batch"]["context_words"]
    assert abs(gensim["effective_words"] - epoch["examples"]) < 0.05 * epoch["examples"]
    assert per["ours, one epoch (train())"] == pytest.approx(1e6 * epoch["train_seconds"] / epoch["examples"])
    assert per["the rest (pooled samples, sums, Adagrad steps)"] == pytest.approx(
        per["batch 3 replayed: the whole kernel"] - per["the examples' pass"])
    assert 0 < epoch["kernel_seconds"] < epoch["train_seconds"]
