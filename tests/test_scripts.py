"""Command-line scripts: train.py's flags come from the config with the right types; Ctrl-C and --resume."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attn_doc2vec import Doc2VecConfig
from attn_doc2vec.config import config_fields

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_flags_parse_every_config_type():
    parser = load_script("train").build_parser()
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
        load_script("train").build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "``" not in text and ":mod:" not in text
    assert text.count("(default: 0.0001)") == 1  # --min-alpha once, not repeated by the formatter


def _train(tmp_path, *flags: str) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--no-progress", "--vector-size", "16",
               "--epochs", "8", "--batch-size", "256", *flags]
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ctrl_c_saves_and_resume_finishes_the_same_model(tmp_path):
    """A real SIGINT to scripts/train.py in epoch 3: it saves, exits 130, and --resume ends with the model
    an uninterrupted run gives (same machine, same seed)."""
    import signal

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
