#!/usr/bin/env python
"""Write a benchmark corpus as a text file, or a synthetic corpus of a chosen size drawn from it.

Documents of a benchmark corpus of the shared data folder, tokenized as the benchmarks tokenize them, are
written one per line, tokens separated by spaces: each once in the benchmarks' shuffled order, or with
``--tokens N`` drawn with replacement (seeded) until the file holds at least N tokens; ``--join K`` makes each
written document K drawn ones one after another (a larger corpus with as many documents: memory that grows with
the tokens apart from memory that grows with the documents); ``--split N`` cuts every written document into
documents of N tokens (the last shorter): as many tokens in many more, short documents (memory that grows with
the documents). The data stays outside the project: write it to a scratch folder.

    python scripts/synthetic_corpus.py --dataset imdb --out /tmp/imdb.txt                     # all 100,000 reviews
    python scripts/synthetic_corpus.py --dataset imdb --tokens 50000000 --out /tmp/imdb-50M.txt
    python scripts/synthetic_corpus.py --dataset imdb --tokens 200000000 --join 7 --out /tmp/imdb-200M-join7.txt
    python scripts/synthetic_corpus.py --dataset imdb --split 25 --out /tmp/imdb-split25.txt  # ~1.1 M documents
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def main(argv: list[str] | None = None) -> int:
    from attn_doc2vec.datasets import DEFAULT_DATA_DIR, load_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="imdb", choices=["imdb", "20news"])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--tokens", type=int, default=None,
                        help="draw documents with replacement until this many tokens (default: each document once)")
    parser.add_argument("--join", type=int, default=1, help="drawn documents per written document (with --tokens)")
    parser.add_argument("--split", type=int, default=None,
                        help="cut each written document into documents of this many tokens (default: whole)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="the text file to write (must not exist)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} exists: choose a new file")
    if args.join < 1 or (args.join > 1 and args.tokens is None):
        parser.error("--join K needs K >= 1 and --tokens (each document is written once without --tokens)")
    if args.split is not None and args.split < 1:
        parser.error("--split N needs N >= 1")
    lines = [" ".join(doc.words) for doc in load_dataset(args.dataset, args.data_dir) if doc.words]
    lengths = [line.count(" ") + 1 for line in lines]
    rng = random.Random(args.seed)
    target = sum(lengths) if args.tokens is None else args.tokens
    written = documents = taken = 0  # tokens and documents written, source documents taken
    with open(out, "w", encoding="utf-8") as f, tqdm(total=target, unit="token", unit_scale=True) as bar:
        while written < target:
            picks = [taken] if args.tokens is None else [rng.randrange(len(lines)) for _ in range(args.join)]
            taken += 1
            text = " ".join(lines[i] for i in picks)
            size = sum(lengths[i] for i in picks)
            if args.split is None:
                f.write(text + "\n")
                documents += 1
            else:  # documents of args.split tokens
                words = text.split(" ")
                for lo in range(0, len(words), args.split):
                    f.write(" ".join(words[lo:lo + args.split]) + "\n")
                    documents += 1
            written += size
            bar.update(size)
    how = "each once" if args.tokens is None else f"drawn with replacement, {args.join} a document, seed {args.seed}"
    how += "" if args.split is None else f", cut into documents of {args.split} tokens"
    print(f"wrote {out}: {documents:,} documents, {written:,} tokens ({len(lines):,} {args.dataset} documents, {how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
