#!/usr/bin/env python
"""Compare with gensim: ``attn-doc2vec compare`` (see attn_doc2vec/cli/compare.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec.cli.compare import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
