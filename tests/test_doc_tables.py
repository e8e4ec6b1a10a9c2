"""attn_doc2vec.doc_tables: per-document tables in memory-mapped files (``dv_mapfile``)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from attn_doc2vec import Doc2Vec
from attn_doc2vec.doc_tables import MARKER

SETTINGS = dict(vector_size=16, epochs=4, min_count=1, sample=0.0, batch_size=256, device="cpu", seed=1)


def train(docs, **extra) -> Doc2Vec:
    model = Doc2Vec(**(SETTINGS | extra))
    model.build_vocab(docs)
    model.train(docs, total_examples=len(docs), epochs=model.epochs, progress=False)
    return model


@pytest.mark.parametrize("extra", [{}, dict(dm=0), dict(doc_share=0.3)])
def test_mapped_tables_train_exactly_as_in_memory(topic_docs, tmp_path, extra):
    """Same seed, same tables: the default design, PV-DBOW, and the default with a free vector; the files hold
    them (model.dv is the map of dv.npy, or of doc_vectors.npy when it is the free vectors)."""
    plain = train(topic_docs, **extra)
    mapped = train(topic_docs, dv_mapfile=str(tmp_path / "tables"), **extra)
    for (name, a), b in zip(plain.module.state_dict().items(), mapped.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(mapped.dv.vectors, plain.dv.vectors)
    files = sorted(p.name for p in (tmp_path / "tables").iterdir())
    want = {"doc_vectors.npy", MARKER} | ({"adagrad_docs.npy", "pooled_docs.npy", "dv.npy"} if mapped.dm else set())
    assert set(files) == want
    name = "dv.npy" if mapped.dm else "doc_vectors.npy"
    on_disk = np.load(tmp_path / "tables" / name, mmap_mode="r")
    np.testing.assert_array_equal(on_disk, plain.dv.vectors)
    assert np.shares_memory(np.asarray(mapped.dv.vectors), mapped.module.document_vectors().numpy())
    assert mapped.dv.most_similar(0, topn=1)  # gensim's KeyedVectors work on the map


def test_save_and_load_into_a_new_directory(topic_docs, tmp_path):
    """save writes every table into the checkpoint; load(dv_mapfile=...) maps copies of them elsewhere and
    trains on; a plain load keeps them in memory and does not reuse the directory."""
    model = train(topic_docs, dv_mapfile=str(tmp_path / "a"))
    model.save(tmp_path / "ckpt")
    plain = Doc2Vec.load(tmp_path / "ckpt")
    assert plain.config.dv_mapfile is None and plain.doc_tables is None
    again = Doc2Vec.load(tmp_path / "ckpt", dv_mapfile=tmp_path / "b")
    assert again.config.dv_mapfile == str(tmp_path / "b")
    np.testing.assert_array_equal(again.dv.vectors, model.dv.vectors)
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "pooled_docs.npy"), plain.module.pooled_docs.numpy())
    plain.train(topic_docs, total_examples=len(topic_docs), epochs=1, progress=False)
    again.train(topic_docs, total_examples=len(topic_docs), epochs=1, progress=False)
    np.testing.assert_array_equal(again.dv.vectors, plain.dv.vectors)
    with pytest.raises(ValueError, match="not both"):
        Doc2Vec.load(tmp_path / "ckpt", mmap="r", dv_mapfile=tmp_path / "c")


def test_a_directory_that_is_not_ours_is_refused(topic_docs, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    model = Doc2Vec(**(SETTINGS | dict(dv_mapfile=str(tmp_path / "mine"))))
    with pytest.raises(FileExistsError, match="did not write"):
        model.build_vocab(topic_docs)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        Doc2Vec(**(SETTINGS | dict(dv_mapfile=str(tmp_path / "file")))).build_vocab(topic_docs)


def test_one_directory_one_live_model(topic_docs, tmp_path):
    """Two live models never share a directory; a model rebuilds into its own, and arrays of its earlier
    tables stay readable (the files are replaced, not truncated under them); once a model is gone its
    directory is free again."""
    path = str(tmp_path / "t")
    first = train(topic_docs, dv_mapfile=path)
    with pytest.raises(RuntimeError, match="another model"):
        Doc2Vec(**(SETTINGS | dict(dv_mapfile=path))).build_vocab(topic_docs)
    old = first.dv.vectors
    kept = np.array(old)
    first.build_vocab(topic_docs)  # the same model again: its own directory
    np.testing.assert_array_equal(old, kept)
    del first, old
    gc.collect()
    second = train(topic_docs, dv_mapfile=path)
    assert second.doc_tables is not None


def test_dv_mapfile_is_validated():
    with pytest.raises(ValueError, match="directory path or None"):
        Doc2Vec(dv_mapfile=3)
