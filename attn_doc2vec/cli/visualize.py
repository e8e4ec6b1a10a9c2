#!/usr/bin/env python
"""Draw the attention of a trained attentive PV-DM checkpoint over one document.

Writes a heatmap of target words x context words (darker = more attention) with a strip of
per-token importance below it, and the document's text shaded by importance. The document
is either a training document, named by its tag and read again from the training corpus
(checkpoints do not store the text), or any text.

Examples
--------
    python scripts/visualize.py checkpoints/lee-attention --tag 0 --out lee-0.png
    python scripts/visualize.py checkpoints/lee-attention --text "The cabinet met to discuss the budget."
    python scripts/visualize.py checkpoints/lee-attention --text-file article.txt --all-pages --out pages.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from attn_doc2vec import Doc2Vec, TaggedDocument
from attn_doc2vec.corpus import TOKENIZERS, LineCorpus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint directory written by scripts/train.py or Doc2Vec.save")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tag", help="tag of a training document (line number for plain-text corpora)")
    source.add_argument("--text", help="raw text to tokenize and draw")
    source.add_argument("--text-file", help="file whose whole content is one document")
    parser.add_argument("--corpus", default=None,
                        help="with --tag: the training corpus, as given to scripts/train.py "
                             "(default: gensim's lee_background.cor)")
    parser.add_argument("--tokenizer", default="simple_preprocess", choices=sorted(TOKENIZERS),
                        help="tokenizer for the corpus or text; use the one the model was trained with "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="attention.png", help="heatmap PNG (default: %(default)s)")
    parser.add_argument("--importance-out", default=None,
                        help="PNG of the text shaded by importance (default: <out>-importance.png)")
    parser.add_argument("--no-importance", action="store_true", help="do not write the importance text figure")
    parser.add_argument("--start", type=int, default=0, help="first target token drawn (default: %(default)s)")
    parser.add_argument("--length", type=int, default=40, help="target tokens per heatmap (default: %(default)s)")
    parser.add_argument("--all-pages", action="store_true",
                        help="write one heatmap per --length tokens of the whole document: <out>-p01.png, ...")
    parser.add_argument("--kind", default="attention", choices=["attention", "weights"],
                        help="attention: softmax over the context words; weights: the forward pass's "
                             "combination weights (the document vector takes the rest)")
    parser.add_argument("--device", default="cpu", help="device to load the model on (default: %(default)s)")
    return parser


def find_document(corpus: str | None, tokenizer: str, tag: str) -> TaggedDocument:
    """The document of ``corpus`` one of whose tags prints as ``tag``."""
    if corpus is None:
        from gensim.test.utils import datapath

        corpus = datapath("lee_background.cor")
    for doc in LineCorpus(corpus, tokenizer):
        for t in doc.tags:
            if str(t) == tag:
                return TaggedDocument(doc.words, [t])
    raise SystemExit(f"error: no document tagged {tag!r} in {corpus}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    model = Doc2Vec.load(args.checkpoint, device=args.device)
    if args.tag is not None:
        doc = find_document(args.corpus, args.tokenizer, args.tag)
    else:
        text = args.text if args.text is not None else Path(args.text_file).read_text(encoding="utf-8")
        doc = TOKENIZERS[args.tokenizer](text)
    att = model.attention_weights(doc)
    if len(att) == 0:
        raise SystemExit("error: none of the document's words is in the model's vocabulary")
    out = Path(args.out)
    if args.all_pages:
        starts = range(0, len(att), args.length)
        paths = [out.with_name(f"{out.stem}-p{i + 1:02d}{out.suffix or '.png'}") for i in range(len(starts))]
    else:
        starts, paths = [args.start], [out]
    for start, path in zip(starts, paths, strict=True):
        model.visualize_attention(doc, path, start=start, length=args.length, kind=args.kind)
        print(f"wrote {path} (targets {start}-{min(start + args.length, len(att)) - 1} of {len(att)})")
    if not args.no_importance:
        path = Path(args.importance_out) if args.importance_out else out.with_name(f"{out.stem}-importance.png")
        model.visualize_importance(doc, path)
        print(f"wrote {path}")
    top = att.importance_frame().dropna().nlargest(5, "importance")
    tops = ", ".join(f"{t} ({v:.2f})" for t, v in zip(top.token, top.importance, strict=True))
    print(f"most attended tokens: {tops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
