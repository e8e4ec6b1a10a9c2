#!/usr/bin/env python
"""Train attentive PV-DM (or any configuration) and write a checkpoint.

With no arguments it trains on gensim's bundled Lee background corpus and writes
checkpoints/lee-attention in the current folder. Every model and training parameter
is a flag, generated from attn_doc2vec.Doc2VecConfig.

Ctrl-C stops after the current batch and saves a checkpoint that --resume continues
exactly; --save-every N also saves every N epochs.

Under torchrun (torchrun --nproc-per-node N scripts/train.py ...) the N processes train one
model together (attn_doc2vec.distributed); rank 0 prints and writes the checkpoint, after every
epoch unless --save-every says otherwise, and Ctrl-C leaves the latest of those.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from attn_doc2vec import Doc2Vec, distributed
from attn_doc2vec.config import BACKENDS, Doc2VecConfig, config_fields
from attn_doc2vec.context import CONTEXT_NAMES
from attn_doc2vec.context.pooled import ATTENTION_PARTS, CONTEXT_SCORES
from attn_doc2vec.corpus import TOKENIZERS, LineCorpus
from attn_doc2vec.explain import save_attention_map

# Flags that define the model's shape or vocabulary: fixed once a checkpoint exists.
STRUCTURAL = {"vector_size", "dm", "context", "window", "min_count", "max_vocab_size", "max_final_vocab",
              "sample", "negative", "ns_exponent", "sorted_vocab", "hs", "dm_tag_count"}


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


def plain(text: str) -> str:
    """Docstring markup (``code``, :mod:`x`) as plain text for --help (``%`` escaped for argparse)."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "").replace("%", "%%")


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


CHOICES = {"context": CONTEXT_NAMES, "backend": BACKENDS, "attention_parts": ATTENTION_PARTS,
           "context_scores": CONTEXT_SCORES}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=None,
                        help="plain text (one document per line) or JSON Lines with a 'text' field and optional "
                             "'tags' (.jsonl / .jsonl.gz); default: gensim's lee_background.cor")
    parser.add_argument("--tokenizer", default="simple_preprocess", choices=sorted(TOKENIZERS),
                        help="how lines of --corpus become tokens (default: simple_preprocess)")
    parser.add_argument("--out", default=None,
                        help="checkpoint directory (default: checkpoints/<corpus>-<mode> in the current folder, "
                             "or the --resume checkpoint)")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT",
                        help="continue this checkpoint: an interrupted run (Ctrl-C, --save-every) goes on exactly "
                             "where it stopped, to its planned epochs; a finished one trains --epochs more")
    parser.add_argument("--save-every", type=int, default=None, metavar="N",
                        help="also save the checkpoint every N epochs (default: only at the end and on Ctrl-C)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="library log messages shown (default: INFO)")
    group = parser.add_argument_group("model and training parameters (attn_doc2vec.Doc2VecConfig)")
    helps = field_help()
    defaults = Doc2VecConfig()
    for f in config_fields():
        default = getattr(defaults, f.name)
        text = plain(helps.get(f.name, ""))
        if default is not None and "default" not in text.lower():  # None: unset, as the help says
            text += f" (default: {default})"
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=flag_type(str(f.type)), default=default,
                           choices=CHOICES.get(f.name), help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("gensim").setLevel(max(logging.WARNING, logging.getLogger().level))
    params = {f.name: getattr(args, f.name) for f in config_fields()}
    if args.save_every is not None and args.save_every < 1:
        parser.error(f"--save-every must be >= 1 epochs, got {args.save_every}")
    if not distributed.init_from_environment(params["device"]):
        return train(parser, args, params, print)
    try:  # under torchrun: one model, trained by every process; rank 0 prints and saves
        if args.save_every is None:
            args.save_every = 1
        return train(parser, args, params, print if distributed.is_root() else lambda *_, **__: None)
    finally:
        import torch.distributed

        torch.distributed.destroy_process_group()


def train(parser: argparse.ArgumentParser, args: argparse.Namespace, params: dict, say) -> int:
    """The main job: vocabulary, training, checkpoint, attention map; ``say`` prints (rank 0's ``print``)."""

    if args.corpus is None:
        from gensim.test.utils import datapath

        corpus_path, name = datapath("lee_background.cor"), "lee"
    else:
        corpus_path, name = args.corpus, Path(args.corpus).name.split(".")[0]
    corpus = LineCorpus(corpus_path, args.tokenizer)

    t0 = time.perf_counter()
    given = {k for k, v in params.items() if v != parser.get_default(k)}
    if args.resume:
        model = Doc2Vec.load(args.resume, device=params["device"], dv_mapfile=params["dv_mapfile"])
        changed = sorted(k for k in given & STRUCTURAL if params[k] != getattr(model.config, k))
        if changed:
            parser.error(f"--resume cannot change {', '.join(changed)}: they are fixed by the checkpoint.")
        unfinished = model.schedule is not None and not model.schedule.finished
        planned = {**model.config.to_dict(), "epochs": model.schedule.epochs if unfinished else None}
        differ = sorted(k for k in given - {"device", "workers", "backend"} if params[k] != planned[k])
        if unfinished and differ:
            parser.error(f"{args.resume} holds an interrupted run (epoch {model.schedule.epoch + 1} of "
                         f"{model.schedule.epochs}); --resume continues it exactly as planned, so it cannot change "
                         f"--{', --'.join(k.replace('_', '-') for k in differ)}. Resume it first, then --resume the "
                         "finished checkpoint with new settings.")
        model.config = model.config.replace(**{k: params[k] for k in given - STRUCTURAL})
    else:
        unfinished = False
        model = Doc2Vec(**params)
        model.build_vocab(corpus)
    vocab_seconds = time.perf_counter() - t0

    mode = model.config.context if model.config.dm else "dbow"
    out = Path(args.out or args.resume or Path.cwd() / "checkpoints" / f"{name}-{mode}")

    def save_every(m: Doc2Vec) -> None:
        if args.save_every and m.schedule is not None and m.schedule.epoch % args.save_every == 0 \
                and not m.schedule.finished:
            m.save(out)
            say(f"saved {out} after epoch {m.schedule.epoch}/{m.schedule.epochs}", flush=True)

    progress = False if args.no_progress else None
    try:
        with logging_redirect_tqdm():  # log lines above the progress bar, not through it
            if unfinished:
                say(f"resuming {args.resume} at epoch {model.schedule.epoch + 1}/{model.schedule.epochs}, "
                      f"batch {model.schedule.batch}", flush=True)
                history = model.resume_training(corpus, compute_loss=True, callbacks=[save_every],
                                                progress=progress)
            else:
                history = model.train(corpus, total_examples=model.corpus_count, epochs=model.config.epochs,
                                      compute_loss=True,
                                      callbacks=[save_every], progress=progress)
    except KeyboardInterrupt:
        if model.schedule is None:
            raise
        if model.world_size > 1:  # the processes stopped apart: the latest epoch's checkpoint stands
            say(f"\ninterrupted in epoch {model.schedule.epoch + 1}/{model.schedule.epochs}: {out} keeps the latest "
                f"checkpoint saved (every {args.save_every} epochs), if any; continue with: torchrun ... "
                f"scripts/train.py --resume {out}", flush=True)
            return 130
        model.save(out)
        say(f"\ninterrupted at epoch {model.schedule.epoch + 1}/{model.schedule.epochs}, batch "
              f"{model.schedule.batch}: saved {out}\ncontinue with: python scripts/train.py --resume {out}",
              flush=True)
        return 130

    model.save(out)
    heatmap = None
    if distributed.is_root():
        heatmap = save_attention_map(model, out.with_name(out.name + "-attention.png"))
    train_seconds = sum(h.seconds for h in history)
    compile_seconds = sum(h.compile_seconds for h in history)
    words = sum(h.raw_words for h in history)
    say(f"checkpoint:      {out}")
    say(f"corpus:          {corpus_path} ({model.corpus_count} documents, {model.corpus_total_words} words)")
    say(f"vocabulary:      {len(model.wv)} words, {len(model.dv)} document tags ({vocab_seconds:.1f}s)")
    say(f"model:           {model!r} on {model.device}")
    if model.world_size > 1:
        say(f"processes:       {model.world_size} (torch.distributed, shared tables added up every "
            f"{model.config.sync_every} batches)")
    say(f"epochs:          {len(history)} (total trained: {model.epochs_trained})")
    say(f"final loss:      {history[-1].mean_loss:.4f} per prediction (first epoch {history[0].mean_loss:.4f})")
    compiled = f", of which {compile_seconds:.1f}s loading or compiling CPU kernels, left out of words/s" \
        if compile_seconds >= 0.1 else ""
    say(f"training speed:  {words / max(train_seconds - compile_seconds, 1e-9):,.0f} words/s "
          f"({train_seconds:.1f}s{compiled})")
    if heatmap is not None:
        say(f"attention map:   {heatmap} (first training document)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
