"""Per-document tables kept in memory-mapped files (``Doc2Vec(dv_mapfile=...)``, gensim's parameter name).

A model's per-document tables grow with the corpus's documents, not its vocabulary: the free document
vectors (``D`` floats a document), their Adagrad state, the attention-pooled words of the pooling design and
``model.dv`` itself. With tens of millions of documents they outgrow memory (gensim issue #1057). Given a
directory, :class:`MappedTables` creates each of them as a ``.npy`` file in it and maps it into memory
(``numpy.lib.format.open_memmap``), so the operating system keeps in memory only the pages in use and writes
the rest back to the file. The files are plain ``.npy`` arrays (``numpy.load(path, mmap_mode="r")`` reads
them) and the checkpoint written by ``save`` still holds every table: the directory is working space.

The directory is created if needed and marked as ours (``attn_doc2vec-tables.json``); a directory holding
other files is refused, so a run never overwrites what it did not write. A later run given the same
directory reuses (overwrites) the tables it wrote there.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

MARKER = "attn_doc2vec-tables.json"
_IN_USE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # directory -> the live MappedTables using it


class MappedTables:
    """A directory of memory-mapped ``.npy`` tables (see the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        A new or empty directory, or one that a model mapped its tables into before.

    Raises
    ------
    FileExistsError
        If ``path`` is a file, or a directory holding files that attn_doc2vec did not write.
    RuntimeError
        If another model of this process maps its tables from ``path``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        key = str(self.path.resolve())
        if _IN_USE.get(key) is not None:
            raise RuntimeError(f"dv_mapfile={str(path)!r} holds the document tables of another model in this process: "
                               "give each model its own directory.")
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"dv_mapfile={str(path)!r} is a file: give a directory (new or empty) for the "
                                  "memory-mapped document tables.")
        self.path.mkdir(parents=True, exist_ok=True)
        marker = self.path / MARKER
        if not marker.exists():
            foreign = sorted(p.name for p in self.path.iterdir())
            if foreign:
                raise FileExistsError(
                    f"dv_mapfile={str(path)!r} holds files attn_doc2vec did not write ({', '.join(foreign[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}): give a new or empty directory for the memory-mapped "
                    "document tables.")
            marker.write_text(json.dumps({"format": "attn_doc2vec mapped document tables", "tables": {}}) + "\n",
                              encoding="utf-8")
        self._written = json.loads(marker.read_text(encoding="utf-8")).get("tables", {})
        _IN_USE[key] = self

    def table(self, name: str, shape: tuple[int, ...], dtype: np.dtype = np.float32) -> Tensor:
        """A zero-filled table ``name`` of ``shape`` in ``<path>/<name>.npy``, mapped: a CPU tensor over the map.

        Only names this class writes are used (``doc_vectors``, ``adagrad_docs``, ``pooled_docs``, ``dv``);
        an existing file of that name from an earlier run is replaced.
        """
        file = self.path / f"{name}.npy"
        # a new file, not the old one truncated: arrays still mapped from the old one stay valid
        file.unlink(missing_ok=True)
        array = np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=tuple(int(n) for n in shape))
        self._written[name] = list(array.shape)
        (self.path / MARKER).write_text(json.dumps({"format": "attn_doc2vec mapped document tables",
                                                     "tables": self._written}) + "\n", encoding="utf-8")
        logger.info("document table %s %s mapped from %s (%.1f MB on disk)", name, tuple(array.shape), file,
                    array.nbytes / 1e6)
        return torch.from_numpy(array)

    def __repr__(self) -> str:
        return f"MappedTables({str(self.path)!r})"
