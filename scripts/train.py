#!/usr/bin/env python
"""Train attentive PV-DM (or any configuration) and write a checkpoint.

With no arguments it trains on gensim's bundled Lee background corpus and writes
``checkpoints/lee-attention``. Every model and training parameter is a flag,
generated from :class:`attn_doc2vec.config.Doc2VecConfig`.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from attn_doc2vec import Doc2Vec
from attn_doc2vec.config import Doc2VecConfig, config_fields
from attn_doc2vec.corpus import TOKENIZERS, LineCorpus
from attn_doc2vec.explain import save_attention_map

REPO = Path(__file__).resolve().parents[1]
# Flags that define the model's shape or vocabulary: fixed once a checkpoint exists.
STRUCTURAL = {"vector_size", "dm", "context", "window", "min_count", "max_vocab_size", "max_final_vocab",
              "sample", "negative", "ns_exponent"}


def field_help() -> dict[str, str]:
    """One-line help per config field, taken from the dataclass's numpydoc ``Attributes`` section."""
    doc = Doc2VecConfig.__doc__ or ""
    helps, name = {}, None
    for line in doc.splitlines():
        match = re.match(r"^    (\w+) : ", line)
        if match:
            name = match.group(1)
            helps[name] = ""
        elif name and line.startswith("        "):
            helps[name] = (helps[name] + " " + line.strip()).strip()
    return helps


def optional_int(text: str) -> int | None:
    """argparse type for ``int or None``."""
    return None if text.lower() == "none" else int(text)


def optional_float(text: str) -> float | None:
    """argparse type for ``float or None``."""
    return None if text.lower() == "none" else float(text)


def boolean(text: str) -> bool:
    """argparse type for ``bool``: true/false, yes/no, 1/0."""
    value = text.strip().lower()
    if value not in ("true", "false", "yes", "no", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "yes", "1")


def flag_type(annotation: str):
    """The argparse type of a config field, from its annotation (``"float | None"``, ``"bool"``, ...)."""
    if annotation.startswith("bool"):
        return boolean
    if annotation.startswith("float"):
        return optional_float if "None" in annotation else float
    if annotation.startswith("int"):
        return optional_int if "None" in annotation else int
    return str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--corpus", default=None,
                        help="plain text (one document per line) or JSON Lines with a 'text' field and optional "
                             "'tags' (.jsonl / .jsonl.gz); default: gensim's lee_background.cor")
    parser.add_argument("--tokenizer", default="simple_preprocess", choices=sorted(TOKENIZERS))
    parser.add_argument("--out", default=None, help="checkpoint directory (default: checkpoints/<corpus>-<mode>)")
    parser.add_argument("--resume", default=None, help="continue training this checkpoint for --epochs more")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    group = parser.add_argument_group("model and training parameters (attn_doc2vec.Doc2VecConfig)")
    helps = field_help()
    defaults = Doc2VecConfig()
    for f in config_fields():
        default = getattr(defaults, f.name)
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=flag_type(str(f.type)), default=default,
                           help=helps.get(f.name, ""))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("gensim").setLevel(max(logging.WARNING, logging.getLogger().level))
    params = {f.name: getattr(args, f.name) for f in config_fields()}

    if args.corpus is None:
        from gensim.test.utils import datapath

        corpus_path, name = datapath("lee_background.cor"), "lee"
    else:
        corpus_path, name = args.corpus, Path(args.corpus).name.split(".")[0]
    corpus = LineCorpus(corpus_path, args.tokenizer)

    t0 = time.perf_counter()
    if args.resume:
        model = Doc2Vec.load(args.resume, device=params["device"])
        given = {k for k, v in params.items() if v != parser.get_default(k)}
        changed = sorted(k for k in given & STRUCTURAL if params[k] != getattr(model.config, k))
        if changed:
            parser.error(f"--resume cannot change {', '.join(changed)}: they are fixed by the checkpoint.")
        model.config = model.config.replace(**{k: params[k] for k in given - STRUCTURAL})
    else:
        model = Doc2Vec(**params)
        model.build_vocab(corpus)
    vocab_seconds = time.perf_counter() - t0
    history = model.train(corpus, epochs=model.config.epochs, compute_loss=True,
                          progress=False if args.no_progress else None)

    mode = model.config.context if model.config.dm else "dbow"
    out = Path(args.out or args.resume or REPO / "checkpoints" / f"{name}-{mode}")
    model.save(out)
    heatmap = save_attention_map(model, out.with_name(out.name + "-attention.png"))
    train_seconds = sum(h.seconds for h in history)
    words = sum(h.raw_words for h in history)
    print(f"checkpoint:      {out}")
    print(f"corpus:          {corpus_path} ({model.corpus_count} documents, {model.corpus_total_words} words)")
    print(f"vocabulary:      {len(model.wv)} words, {len(model.dv)} document tags ({vocab_seconds:.1f}s)")
    print(f"model:           {model!r} on {model.device}")
    print(f"epochs:          {len(history)} (total trained: {model.epochs_trained})")
    print(f"final loss:      {history[-1].mean_loss:.4f} per prediction (first epoch {history[0].mean_loss:.4f})")
    print(f"training speed:  {words / train_seconds:,.0f} words/s ({train_seconds:.1f}s)")
    if heatmap is not None:
        print(f"attention map:   {heatmap} (first training document)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
