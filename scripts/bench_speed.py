#!/usr/bin/env python
"""Speed against gensim: ``attn-doc2vec bench`` (see attn_doc2vec/cli/bench.py), writing the docs of this checkout.

In a checkout it records ``docs/bench_speed.json`` and regenerates the speed section of
``docs/benchmarks.md`` unless ``--json`` / ``--markdown`` say otherwise.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from attn_doc2vec.cli.bench import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.startswith("--json") for a in argv):
        argv += ["--json", str(REPO / "docs" / "bench_speed.json")]
    if not any(a.startswith("--markdown") for a in argv):
        argv += ["--markdown", str(REPO / "docs" / "benchmarks.md")]
    sys.exit(main(argv))
