#!/usr/bin/env python
"""Train a model and write a checkpoint: ``attn-doc2vec train`` (see attn_doc2vec/cli/train.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
