"""Command-line scripts: train.py's flags come from the config with the right types."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
