"""Checkpoints as data: ``config.json`` + ``vocab.json`` + ``model.safetensors`` in one directory.

Nothing is pickled. ``config.json`` records a format version, the library versions,
the names of the tensor and vocabulary files and their SHA-256, so a truncated or
modified checkpoint is refused instead of loaded.

What a save guarantees:

* **It never deletes what it did not write.** It writes only into an empty directory or one of
  our checkpoints (a ``config.json`` with our format tag), and refuses anything else with a clear
  error. Files a user puts in a checkpoint directory survive every later save.
* **At every instant the directory holds one complete checkpoint.** A save writes new files
  under fresh names (``model.<id>.safetensors``, ``vocab.<id>.json``), syncs them, and commits by
  atomically replacing ``config.json``; only then does it delete the files the previous
  ``config.json`` named. A crash or kill at any point leaves the old or the new checkpoint, and
  the next save deletes the debris (files with our own name patterns that no config names).
* **Concurrent saves take turns** (an advisory lock on the directory, where the OS has one), and a
  load racing a save reads the old or the new checkpoint, never reports false damage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gensim
import numpy as np
import torch
from gensim.models.keyedvectors import KeyedVectors
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from attn_doc2vec.config import Doc2VecConfig
from attn_doc2vec.corpus import HUFFMAN_ATTRIBUTES, Vocabulary
from attn_doc2vec.model import Doc2VecModule

logger = logging.getLogger(__name__)

FORMAT = "attn_doc2vec"
FORMAT_VERSION = 3
# Version 1 (attn_doc2vec 0.1) called the word x position design "attention"; it is "wordpos" since
# version 2, where "attention" names the pooled design of attn_doc2vec.context.pooled. Version 3
# names each save's tensor and vocabulary files in config.json (versions 1-2: the fixed names below).
READS = (1, 2, 3)
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
    epoch_rng: torch.Tensor | None = None
    rng_device: str | None = None  # device type of the generator the states belong to


def library_versions() -> dict[str, str]:
    """Versions recorded in every checkpoint."""
    from attn_doc2vec import __version__

    return {"attn_doc2vec": __version__, "torch": torch.__version__, "gensim": gensim.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def save(path: str | os.PathLike, config: Doc2VecConfig, vocab: Vocabulary, module: Doc2VecModule,
         generator: torch.Generator | None, state: dict[str, Any], epoch_rng: torch.Tensor | None = None) -> Path:
    """Write a checkpoint directory at ``path`` atomically (see the module docstring).

    ``epoch_rng`` is the generator's state at the start of an epoch that stopped in its middle
    (:class:`attn_doc2vec.training.Schedule`).

    Returns
    -------
    pathlib.Path
        The checkpoint directory.

    Raises
    ------
    FileExistsError
        If ``path`` is a file, or a directory that is neither empty nor one of our checkpoints.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file, not a checkpoint directory; choose another path.")
    path.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        previous = _owned_config(path)
        generation = uuid.uuid4().hex[:12]
        files = {"tensors": f"model.{generation}.safetensors", "vocab": f"vocab.{generation}.json"}
        staging = path / f".staging-{generation}"
        committed = False
        try:
            tensors = {f"module.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            tensors["vocab.cum_table"] = torch.from_numpy(vocab.cum_table.astype(np.int64))
            dtypes: dict[str, dict[str, str]] = {}
            for side, kv in (("wv", vocab.wv), ("dv", vocab.dv)):
                dtypes[side] = {}
                for name, values in kv.expandos.items():
                    if name in HUFFMAN_ATTRIBUTES:  # ragged; rebuilt from the counts on load (corpus.huffman_tree)
                        continue
                    values = np.asarray(values)
                    dtypes[side][name] = values.dtype.str
                    tensors[f"vocab.{side}.{name}"] = torch.from_numpy(values.astype(np.int64))
            if generator is not None:
                tensors["rng.state"] = generator.get_state()
            if epoch_rng is not None:
                tensors["rng.epoch_state"] = epoch_rng.cpu()
            # safetensors may write through a temporary file of its own: let it do so in a staging folder
            # that is ours by name, so that a kill leaves nothing we could not recognise and clean
            staging.mkdir()
            save_file(tensors, str(staging / TENSORS_FILE))
            _fsync(staging / TENSORS_FILE)
            os.replace(staging / TENSORS_FILE, path / files["tensors"])
            _write_json(path / files["vocab"], {"words": [encode_key(k) for k in vocab.wv.index_to_key],
                                                "tags": [encode_key(k) for k in vocab.dv.index_to_key],
                                                "attribute_dtypes": dtypes})
            staged_config = path / f"{CONFIG_FILE}.{generation}.tmp"
            _write_json(staged_config, {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "versions": library_versions(),
                "config": config.to_dict(),
                "state": state,
                "rng_device": None if generator is None else generator.device.type,
                "files": files,
                "sha256": {name: _sha256(path / name) for name in files.values()},
            })
            os.replace(staged_config, path / CONFIG_FILE)  # the commit: config.json names the new files
            committed = True
            _fsync_dir(path)
        except BaseException:
            if not committed:  # after the commit the new files are the checkpoint: never delete them
                for name in (*files.values(), f"{CONFIG_FILE}.{generation}.tmp"):
                    (path / name).unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _clean(path, keep=set(files.values()), previous=previous)
    logger.info("saved checkpoint to %s", path)
    return path


def load(path: str | os.PathLike, mmap: bool = False,
         doc_table: Callable[[str, tuple[int, ...]], torch.Tensor] | None = None) -> LoadedCheckpoint:
    """Read a checkpoint directory (or any file inside one) onto the CPU.

    A save running at the same time (another thread or process) is never mistaken for damage:
    if the files change under the reader, it reads the newer checkpoint.

    With ``mmap`` the module's tensors are the safetensors file's memory map itself (copy-on-write: the
    file never changes) instead of copies, so a large model costs memory only for the rows it touches.
    ``doc_table`` creates the module's per-document tables (:class:`~attn_doc2vec.model.Doc2VecModule`), which
    the checkpoint's are copied into.

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
    if not path.exists() or (path.is_dir() and not (path / CONFIG_FILE).exists() and _legacy_leftovers(path)):
        return _load_leftover(path)
    while True:
        before = _config_bytes(path)
        try:
            return _load_once(path, mmap, doc_table)
        except (CheckpointError, OSError):
            # A save commits by replacing config.json, then deletes the files the old one named: if
            # config.json changed while we read, we read a superseded checkpoint; read the new one.
            if before is None or _config_bytes(path) == before:
                raise


def _load_once(path: Path, mmap: bool = False,
               doc_table: Callable[[str, tuple[int, ...]], torch.Tensor] | None = None) -> LoadedCheckpoint:
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
    files = meta.get("files", {"tensors": TENSORS_FILE, "vocab": VOCAB_FILE})  # fixed names before version 3
    for name, digest in meta.get("sha256", {}).items():
        if not (path / name).is_file():
            raise CheckpointError(f"Corrupt checkpoint {path}: {name} is missing.")
        if _sha256(path / name) != digest:
            raise CheckpointError(f"Corrupt checkpoint {path}: {name} does not match the checksum recorded in "
                                  f"{CONFIG_FILE} (truncated or modified); restore it from a backup or re-train.")
    try:
        config = Doc2VecConfig.from_dict(_upgrade(meta["config"], meta["format_version"]))
        tensors = load_file(str(path / files["tensors"]))
        words = _read_json(path / files["vocab"], path)
        vocab = _vocabulary(words, tensors, config, meta["state"])
        module = Doc2VecModule.from_config(config, len(vocab.wv), len(vocab.dv), doc_table=doc_table)
        module.load_state_dict({k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")},
                               assign=mmap)
    except (KeyError, ValueError, RuntimeError, SafetensorError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"Corrupt or incompatible checkpoint {path}: {err}") from err
    return LoadedCheckpoint(config=config, vocab=vocab, module=module, state=meta["state"],
                            generator_state=tensors.get("rng.state"), epoch_rng=tensors.get("rng.epoch_state"),
                            rng_device=meta.get("rng_device"))


def encode_key(key: Any) -> Any:
    """A word or tag as JSON: tuples become lists (lists cannot be keys, so decoding is unambiguous)."""
    if isinstance(key, tuple):
        return [encode_key(k) for k in key]
    return int(key) if isinstance(key, np.integer) else key


def decode_key(value: Any) -> Any:
    """The inverse of :func:`encode_key`."""
    return tuple(decode_key(v) for v in value) if isinstance(value, list) else value


# Config fields added after checkpoints existed, with the value that gives the behaviour those checkpoints
# were trained with (where it differs from today's default).
TRAINED_BEFORE = {"pool_group": 1, "pool_loss": 0.0}


def _upgrade(config: dict, version: int) -> dict:
    """The config of an older format version, in today's terms."""
    config = dict(config)
    if version == 1 and config.get("context") == "attention":
        config["context"] = "wordpos"  # the same design (same tensors), renamed in version 2
        logger.info("format version 1 checkpoint: its context 'attention' is today's 'wordpos'")
    for name, value in TRAINED_BEFORE.items():  # a field newer than the checkpoint: the behaviour it had
        config.setdefault(name, value)
    return config


def _vocabulary(words: dict, tensors: dict[str, torch.Tensor], config: Doc2VecConfig, state: dict) -> Vocabulary:
    sides = {}
    for side, keys in (("wv", words["words"]), ("dv", words["tags"])):
        kv = KeyedVectors(config.vector_size, count=0)
        kv.index_to_key = [decode_key(k) for k in keys]
        kv.key_to_index = {k: i for i, k in enumerate(kv.index_to_key)}
        for name, dtype in words["attribute_dtypes"][side].items():
            kv.expandos[name] = tensors[f"vocab.{side}.{name}"].numpy().astype(np.dtype(dtype))
        sides[side] = kv
    return Vocabulary(wv=sides["wv"], dv=sides["dv"], cum_table=tensors["vocab.cum_table"].numpy().astype(np.uint32),
                      corpus_count=state["corpus_count"], corpus_total_words=state["corpus_total_words"])


# Files a save writes, and nothing else is ever deleted: this generation's tensors and vocabulary,
# its staged config, and the staging/aside directories of format 1-2 saves beside the checkpoint.
_OWNED = re.compile(r"^(model\.[0-9a-f]{12}\.safetensors|vocab\.[0-9a-f]{12}\.json|config\.json\.[0-9a-f]{12}\.tmp"
                    r"|\.staging-[0-9a-f]{12})$")


def _owned_config(path: Path) -> dict | None:
    """The config of the checkpoint at ``path`` (None if empty); refuse a directory that is not ours."""
    if (path / CONFIG_FILE).exists():
        try:
            meta = _read_json(path / CONFIG_FILE, path)
        except CheckpointError:
            meta = {}
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise FileExistsError(f"{path} holds a {CONFIG_FILE} that is not an attn_doc2vec checkpoint's; "
                                  "nothing was written. Save to another (new or empty) directory.")
        return meta
    foreign = sorted(p.name for p in path.iterdir() if not _OWNED.match(p.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise FileExistsError(f"{path} exists and is not an attn_doc2vec checkpoint (it holds {shown}); "
                              "nothing was written. Save to a new or empty directory.")
    return None


def _clean(path: Path, keep: set[str], previous: dict | None) -> None:
    """Delete what earlier saves wrote and no longer need: the files the previous config named, debris
    of interrupted saves (our own name patterns only) and format 1-2 staging directories."""
    stale = set()
    if previous is not None:
        stale |= set(previous.get("files", {"tensors": TENSORS_FILE, "vocab": VOCAB_FILE}).values())
        stale |= set(previous.get("sha256", {}))
    stale |= {p.name for p in path.iterdir() if _OWNED.match(p.name)}
    for name in stale - keep - {CONFIG_FILE}:
        if (path / name).is_dir():
            shutil.rmtree(path / name, ignore_errors=True)  # a staging folder a killed save left
        else:
            (path / name).unlink(missing_ok=True)
    for leftover in _legacy_leftovers(path):
        shutil.rmtree(leftover, ignore_errors=True)


def _legacy_leftovers(path: Path) -> list[Path]:
    """Staging (``.name.partial-*``) and aside (``.name.old-*``) directories of format 1-2 saves."""
    if not path.parent.exists():
        return []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(partial|old)-[0-9a-f]{{8}}$")
    return [p for p in path.parent.iterdir() if pattern.match(p.name) and p.is_dir()]


def _load_leftover(path: Path) -> LoadedCheckpoint:
    """After a format 1-2 save was killed between its renames: the newest complete checkpoint it left."""
    candidates = sorted(_legacy_leftovers(path), key=lambda p: _mtime(p / CONFIG_FILE), reverse=True)
    for candidate in candidates:
        try:
            loaded = _load_once(candidate)
        except (CheckpointError, OSError):
            continue
        logger.warning("no checkpoint at %s: an earlier save was interrupted; loaded the newest complete copy it "
                       "left, %s (the next save to %s cleans it up)", path, candidate, path)
        return loaded
    raise FileNotFoundError(f"No checkpoint at {path}.")


def _mtime(file: Path) -> float:
    try:
        return file.stat().st_mtime
    except OSError:
        return float("-inf")


def _config_bytes(path: Path) -> bytes | None:
    try:
        return (path / CONFIG_FILE).read_bytes()
    except OSError:
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the checkpoint directory, so that saves from several processes take turns."""
    if fcntl is None:  # Windows: no advisory locks; saves from one process still never collide
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_json(file: Path, obj: Any) -> None:
    try:
        data = json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8")
    except UnicodeEncodeError:  # a token with a lone surrogate: \u escapes keep it exactly
        data = json.dumps(obj, ensure_ascii=True, indent=1).encode("ascii")
    with open(file, "wb") as f:
        f.write(data)
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


def _fsync_dir(path: Path) -> None:
    """Make the renames inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
