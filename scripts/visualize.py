#!/usr/bin/env python
"""Draw attention maps: ``attn-doc2vec visualize`` (see attn_doc2vec/cli/visualize.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from attn_doc2vec.cli.visualize import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
