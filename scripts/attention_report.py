#!/usr/bin/env python
"""Train attentive PV-DM on gensim's Lee corpus and report what its attention learned.

Writes a heatmap of one document, its text shaded by importance and the attention history
over training, then prints (and with --markdown writes) the corpus-wide figures: attention
entropy, mean attention per relative position, the most and least attended words, and
function words (gensim's STOPWORDS) against content words. Importance is the mean attention
a word receives relative to uniform (1 = the share the mean PV-DM would give it).

Example
-------
    python scripts/attention_report.py --images docs/images --markdown /tmp/lee_report.md
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from gensim.parsing.preprocessing import STOPWORDS
from gensim.test.utils import datapath

from attn_doc2vec import Doc2Vec
from attn_doc2vec.corpus import LineCorpus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None,
                        help="use this model (trained on the Lee corpus with simple_preprocess) instead of training")
    parser.add_argument("--vector-size", type=int, default=50, help="default: %(default)s")
    parser.add_argument("--epochs", type=int, default=40, help="default: %(default)s")
    parser.add_argument("--min-count", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=1, help="default: %(default)s")
    parser.add_argument("--device", default="auto", help="default: %(default)s")
    parser.add_argument("--doc", type=int, default=0, help="Lee document drawn (line number; default: %(default)s)")
    parser.add_argument("--start", type=int, default=0, help="first target token drawn (default: %(default)s)")
    parser.add_argument("--length", type=int, default=28, help="target tokens drawn (default: %(default)s)")
    parser.add_argument("--images", default="docs/images", help="folder for the PNGs (default: %(default)s)")
    parser.add_argument("--top", type=int, default=15, help="words listed at each end (default: %(default)s)")
    parser.add_argument("--min-windows", type=int, default=50,
                        help="list only words seen as context in this many windows (default: %(default)s)")
    parser.add_argument("--markdown", default=None, help="also write the tables to this Markdown file")
    return parser


def stopword_table(words: pd.DataFrame) -> pd.DataFrame:
    """Window-weighted mean importance of function words (gensim's STOPWORDS) and of the other words."""
    kind = np.where(words["word"].isin(STOPWORDS), "function words", "content words")
    rows = []
    for name, group in words.groupby(kind):
        rows.append({"words": name, "distinct": len(group), "windows": int(group["windows"].sum()),
                     "importance": float(np.average(group["importance"], weights=group["windows"]))})
    return pd.DataFrame(rows)


def position_table(model: Doc2Vec, atts: list) -> pd.DataFrame:
    """Mean attention and importance per relative position over every full window of the corpus."""
    att = np.concatenate([a.attention for a in atts])  # (N, S)
    valid = np.concatenate([a.context_positions >= 0 for a in atts])
    full = valid.all(axis=1)  # windows not clipped by a document end
    return pd.DataFrame({"offset": atts[0].offsets, "mean attention": att[full].mean(axis=0),
                         "vs uniform": att[full].mean(axis=0) * valid.shape[1]})


def history_table(model: Doc2Vec, args: argparse.Namespace, every: int = 5) -> pd.DataFrame:
    """Entropy and the most attended tokens of the tracked document, every few epochs."""
    frame = model.attention_history_frame()
    frame = frame[(frame["position"] >= args.start) & (frame["position"] < args.start + args.length)]
    last = int(frame["epoch"].max())
    rows = []
    for epoch in sorted({1, 3, *range(every, last + 1, every), last}):
        snap = frame[frame["epoch"] == epoch]
        top = snap.nlargest(5, "importance")
        rows.append({"epoch": epoch, "entropy": float(snap["entropy"].iloc[0]),
                     "most attended tokens": ", ".join(f"{t} {v:.2f}" for t, v in zip(top.token, top.importance,
                                                                                       strict=True))})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table (floats with 3 decimals), without pandas' optional ``tabulate`` dependency."""
    cells = [[f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
             for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    docs = list(LineCorpus(datapath("lee_background.cor"), "simple_preprocess"))
    t0 = time.perf_counter()
    if args.checkpoint:
        model = Doc2Vec.load(args.checkpoint, device=args.device)
    else:
        model = Doc2Vec(vector_size=args.vector_size, epochs=args.epochs, min_count=args.min_count, seed=args.seed,
                        device=args.device)
        model.build_vocab(docs)
        model.track_documents([args.doc])
        model.train(docs, total_examples=model.corpus_count, epochs=model.epochs, callbacks=[model.compute_weights])
    print(f"model: {model!r}, {model.epochs_trained} epochs ({time.perf_counter() - t0:.0f}s)")

    images = Path(args.images)
    doc = docs[args.doc]
    model.visualize_attention(doc, images / "lee_attention.png", start=args.start, length=args.length,
                              annot=False, title=f"Lee document {args.doc}: attention of each target word")
    model.visualize_importance(doc, images / "lee_importance.png", length=120,
                               title=f"Lee document {args.doc}: attention received per token (1 = uniform)")
    written = ["lee_attention.png", "lee_importance.png"]
    if model.attention_history:
        model.plot_attention_history(path=images / "lee_attention_history.png", start=args.start, length=args.length)
        written.append("lee_attention_history.png")
    print("wrote " + ", ".join(str(images / name) for name in written))

    atts = model.attention_weights_many(docs)
    entropy = np.concatenate([a.entropy() for a in atts])
    words = model.word_attention(docs)
    common = words[words["windows"] >= args.min_windows]
    top = common.head(args.top).reset_index(drop=True)
    bottom = common.tail(args.top).iloc[::-1].reset_index(drop=True)
    sections = [
        ("Attention entropy over all windows (1 = uniform)",
         pd.DataFrame({"mean": [np.nanmean(entropy)], "5%": [np.nanpercentile(entropy, 5)],
                       "median": [np.nanmedian(entropy)], "95%": [np.nanpercentile(entropy, 95)]})),
        ("Attention per relative position (full windows)", position_table(model, atts)),
        (f"Most attended words (>= {args.min_windows} windows)", top),
        (f"Least attended words (>= {args.min_windows} windows)", bottom),
        ("The 10 most frequent words", words.nlargest(10, "windows").reset_index(drop=True)),
        ("Function words vs content words (all words, window-weighted)", stopword_table(words)),
    ]
    if model.module.pools_documents:  # the design's attention over the document's own words
        scores = model.module.layer.row_salience.numpy().reshape(len(model.wv.index_to_key), -1)  # (words, heads)
        counts = [model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key]
        for h in range(scores.shape[1]):  # one pair of tables per head of the pooling
            head = f" (head {h})" if scores.shape[1] > 1 else ""
            salience = pd.DataFrame({"word": model.wv.index_to_key, "score r": scores[:, h], "count": counts})
            salience = salience[salience["count"] >= args.min_windows // 5].sort_values("score r", ascending=False)
            sections += [
                (f"Document attention{head}: highest word scores r (count >= {args.min_windows // 5})",
                 salience.head(args.top).reset_index(drop=True)),
                (f"Document attention{head}: lowest word scores r (count >= {args.min_windows // 5})",
                 salience.tail(args.top).iloc[::-1].reset_index(drop=True)),
            ]
    if model.attention_history:
        sections.append((f"Document {args.doc} over training (targets {args.start}-{args.start + args.length - 1})",
                         history_table(model, args)))
    text = "\n\n".join(f"### {title}\n\n{markdown(table)}" for title, table in sections)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
