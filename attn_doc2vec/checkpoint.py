"""Checkpoints as data: ``config.json`` + ``vocab.json`` + ``model.safetensors`` in one directory.

Nothing is pickled. ``config.json`` is written last and records a format version,
the library versions and the SHA-256 of the tensor file, so a truncated or
modified checkpoint is refused instead of loaded. Saving writes a staging
directory beside the target and swaps it in with renames: an interrupted save
never damages the previous checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gensim
import numpy as np
import torch
from gensim.models.keyedvectors import KeyedVectors
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from attn_doc2vec.config import Doc2VecConfig
from attn_doc2vec.corpus import Vocabulary
from attn_doc2vec.model import Doc2VecModule

logger = logging.getLogger(__name__)

FORMAT = "attn_doc2vec"
FORMAT_VERSION = 2
# Version 1 (attn_doc2vec 0.1) called the word x position design "attention"; it is "wordpos" since
# version 2, where "attention" names the pooled design of attn_doc2vec.context.pooled.
READS = (1, 2)
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
TENSORS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or of an unknown format version."""


@dataclass
class LoadedCheckpoint:
    """Everything :func:`load` reads back."""

    config: Doc2VecConfig
    vocab: Vocabulary
    module: Doc2VecModule
    generator_state: torch.Tensor | None
    state: dict[str, Any]


def library_versions() -> dict[str, str]:
    """Versions recorded in every checkpoint."""
    from attn_doc2vec import __version__

    return {"attn_doc2vec": __version__, "torch": torch.__version__, "gensim": gensim.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def save(path: str | os.PathLike, config: Doc2VecConfig, vocab: Vocabulary, module: Doc2VecModule,
         generator: torch.Generator | None, state: dict[str, Any]) -> Path:
    """Write a checkpoint directory at ``path`` atomically (see the module docstring).

    Returns
    -------
    pathlib.Path
        The checkpoint directory.
    """
    path = Path(path)
    if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or (path / CONFIG_FILE).exists())):
        raise FileExistsError(f"{path} exists and is not an attn_doc2vec checkpoint; choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        tensors = {f"module.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        tensors["vocab.cum_table"] = torch.from_numpy(vocab.cum_table.astype(np.int64))
        dtypes: dict[str, dict[str, str]] = {}
        for side, kv in (("wv", vocab.wv), ("dv", vocab.dv)):
            dtypes[side] = {}
            for name, values in kv.expandos.items():
                values = np.asarray(values)
                dtypes[side][name] = values.dtype.str
                tensors[f"vocab.{side}.{name}"] = torch.from_numpy(values.astype(np.int64))
        if generator is not None:
            tensors["rng.state"] = generator.get_state()
        save_file(tensors, str(staging / TENSORS_FILE))
        _write_json(staging / VOCAB_FILE, {"words": list(vocab.wv.index_to_key), "tags": list(vocab.dv.index_to_key),
                                           "attribute_dtypes": dtypes})
        _write_json(staging / CONFIG_FILE, {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "versions": library_versions(),
            "config": config.to_dict(),
            "state": state,
            "rng_device": None if generator is None else generator.device.type,
            "sha256": {TENSORS_FILE: _sha256(staging / TENSORS_FILE), VOCAB_FILE: _sha256(staging / VOCAB_FILE)},
        })
        _fsync(staging / TENSORS_FILE)
        _swap_in(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("saved checkpoint to %s", path)
    return path


def load(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read a checkpoint directory (or any file inside one) onto the CPU.

    Raises
    ------
    FileNotFoundError
        If there is no checkpoint at ``path``.
    CheckpointError
        If it is corrupt, incomplete or of an unknown format version.
    """
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not path.exists():
        leftovers = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.exists() else []
        hint = f" A save was interrupted; the previous checkpoint is intact at {leftovers[-1]}: rename it to {path}." \
            if leftovers else ""
        raise FileNotFoundError(f"No checkpoint at {path}.{hint}")
    meta = _read_json(path / CONFIG_FILE, path)
    if meta.get("format") != FORMAT or not isinstance(meta.get("format_version"), int):
        raise CheckpointError(f"{path} is not an attn_doc2vec checkpoint "
                              f"({CONFIG_FILE} has no attn_doc2vec format tag).")
    if meta["format_version"] not in READS:
        newer = meta["format_version"] > FORMAT_VERSION
        raise CheckpointError(
            f"{path} has checkpoint format version {meta['format_version']}, but this attn_doc2vec reads version "
            f"{FORMAT_VERSION}: "
            + ("upgrade attn_doc2vec." if newer else "re-train, or load it with the release that wrote it "
                                     f"({meta.get('versions', {}).get('attn_doc2vec', 'unknown')}).")
        )
    for name, digest in meta.get("sha256", {}).items():
        if not (path / name).is_file():
            raise CheckpointError(f"Corrupt checkpoint {path}: {name} is missing.")
        if _sha256(path / name) != digest:
            raise CheckpointError(f"Corrupt checkpoint {path}: {name} does not match the checksum recorded in "
                                  f"{CONFIG_FILE} (truncated or modified); restore it from a backup or re-train.")
    try:
        config = Doc2VecConfig.from_dict(_upgrade(meta["config"], meta["format_version"]))
        tensors = load_file(str(path / TENSORS_FILE))
        words = _read_json(path / VOCAB_FILE, path)
        vocab = _vocabulary(words, tensors, config, meta["state"])
        module = Doc2VecModule.from_config(config, len(vocab.wv), len(vocab.dv))
        module.load_state_dict({k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")})
    except (KeyError, ValueError, RuntimeError, SafetensorError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"Corrupt or incompatible checkpoint {path}: {err}") from err
    rng = tensors.get("rng.state") if meta.get("rng_device") == "cpu" else None
    return LoadedCheckpoint(config=config, vocab=vocab, module=module, generator_state=rng, state=meta["state"])


def _upgrade(config: dict, version: int) -> dict:
    """The config of an older format version, in today's terms."""
    config = dict(config)
    if version == 1 and config.get("context") == "attention":
        config["context"] = "wordpos"  # the same design (same tensors), renamed in version 2
        logger.info("format version 1 checkpoint: its context 'attention' is today's 'wordpos'")
    return config


def _vocabulary(words: dict, tensors: dict[str, torch.Tensor], config: Doc2VecConfig, state: dict) -> Vocabulary:
    sides = {}
    for side, keys in (("wv", words["words"]), ("dv", words["tags"])):
        kv = KeyedVectors(config.vector_size, count=0)
        kv.index_to_key = list(keys)
        kv.key_to_index = {k: i for i, k in enumerate(keys)}
        for name, dtype in words["attribute_dtypes"][side].items():
            kv.expandos[name] = tensors[f"vocab.{side}.{name}"].numpy().astype(np.dtype(dtype))
        sides[side] = kv
    return Vocabulary(wv=sides["wv"], dv=sides["dv"], cum_table=tensors["vocab.cum_table"].numpy().astype(np.uint32),
                      corpus_count=state["corpus_count"], corpus_total_words=state["corpus_total_words"])


def _swap_in(staging: Path, path: Path) -> None:
    """Replace ``path`` by ``staging``; at every instant one complete checkpoint exists on disk."""
    if not path.exists():
        os.replace(staging, path)
        return
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(path, old)
    try:
        os.replace(staging, path)
    except BaseException:
        os.replace(old, path)  # put the previous checkpoint back where it was
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_json(file: Path, obj: Any) -> None:
    with open(file, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _read_json(file: Path, checkpoint_dir: Path) -> dict:
    if not file.is_file():
        raise CheckpointError(f"Corrupt or incomplete checkpoint {checkpoint_dir}: {file.name} is missing.")
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"Corrupt checkpoint {checkpoint_dir}: {file.name} is not valid JSON ({err}).") from err


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(file: Path) -> None:
    with open(file, "rb") as f:
        os.fsync(f.fileno())
