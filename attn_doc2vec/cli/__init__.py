"""Command-line tools, installed as the ``attn-doc2vec`` console command.

``attn-doc2vec train|visualize|compare|bench [options]`` runs :mod:`~attn_doc2vec.cli.train`,
:mod:`~attn_doc2vec.cli.visualize`, :mod:`~attn_doc2vec.cli.compare` (against gensim on IMDB or 20
Newsgroups; needs the ``bench`` extra) or :mod:`~attn_doc2vec.cli.bench` (speed); ``attn-doc2vec
<command> --help`` lists each one's options. In a checkout, ``scripts/train.py`` and its siblings run
the same code.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

COMMANDS = {
    "train": ("train", "train a model and write a checkpoint (default: the Lee corpus)"),
    "visualize": ("visualize", "draw the attention map of a checkpoint's document or of new text"),
    "compare": ("compare", "compare document-vector quality and speed with gensim on IMDB / 20 Newsgroups"),
    "bench": ("bench", "time training, memory and inference against gensim"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``attn-doc2vec <command> [options]``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: attn-doc2vec <command> [options]   (attn-doc2vec <command> --help for its options)\n\n"
              "commands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"attn_doc2vec.cli.{COMMANDS[argv[0]][0]}")
    return module.main(argv[1:])


def invocation() -> str:
    """The command line that is running, as a user would retype it (for result files)."""
    prog = sys.argv[0]
    head = ["python", prog] if prog.endswith(".py") else [Path(prog).name]
    return " ".join(head + sys.argv[1:])


def source_revision() -> dict:
    """The git commit of the installed source and whether its tracked files were modified.

    A copy shipped to another machine (without git history, or with stale history) names its commit in
    the ``ATTN_DOC2VEC_COMMIT`` environment variable, which wins; without git the commit is "unknown".
    """
    source = Path(__file__).resolve().parents[2]

    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=source, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    if os.environ.get("ATTN_DOC2VEC_COMMIT"):  # named by whoever shipped the copy: its git metadata may be stale
        return {"commit": os.environ["ATTN_DOC2VEC_COMMIT"], "dirty": None}
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
