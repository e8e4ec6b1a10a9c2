"""Checkpoints: exact round trips, training resumes where it stopped, and every damage is refused clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from attn_doc2vec import Doc2Vec, checkpoint
from attn_doc2vec.checkpoint import CONFIG_FILE, FORMAT_VERSION, TENSORS_FILE, VOCAB_FILE, CheckpointError


def assert_same_model(a: Doc2Vec, b: Doc2Vec) -> None:
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    assert a.config == b.config
    assert a.wv.index_to_key == b.wv.index_to_key and a.dv.index_to_key == b.dv.index_to_key
    for attr in ("count", "sample_int"):
        np.testing.assert_array_equal(a.wv.expandos[attr], b.wv.expandos[attr])
    np.testing.assert_array_equal(a.vocab.cum_table, b.vocab.cum_table)
    np.testing.assert_array_equal(a.dv.vectors, b.dv.vectors)
    np.testing.assert_array_equal(a.wv.vectors, b.wv.vectors)


@pytest.fixture
def saved(small_model, tmp_path):
    path = tmp_path / "model"
    small_model.save(path)
    return small_model, path


def test_save_load_round_trip(saved) -> None:
    model, path = saved
    loaded = Doc2Vec.load(path)
    assert_same_model(model, loaded)
    assert torch.allclose(loaded.module.layer.position_bias, model.module.layer.position_bias)
    assert torch.equal(loaded.module.pooled_docs, model.module.pooled_docs)
    assert loaded.epochs_trained == model.epochs_trained == 2
    assert loaded.loss_history == model.loss_history
    assert (loaded.corpus_count, loaded.corpus_total_words) == (model.corpus_count, model.corpus_total_words)
    first = model.wv.index_to_key[0]
    assert loaded.wv.get_vecattr(first, "count") == model.wv.get_vecattr(first, "count")
    assert loaded.dv.most_similar(0, topn=3) == model.dv.most_similar(0, topn=3)
    assert Doc2Vec.load(path / CONFIG_FILE).epochs_trained == 2  # a file inside the checkpoint works too
    assert Doc2Vec.load(path, device="cpu").device == torch.device("cpu")


def test_checkpoint_is_data_with_a_version(saved) -> None:
    _, path = saved
    assert sorted(os.listdir(path)) == sorted([CONFIG_FILE, VOCAB_FILE, TENSORS_FILE])
    meta = json.loads((path / CONFIG_FILE).read_text())
    assert meta["format"] == "attn_doc2vec" and meta["format_version"] == FORMAT_VERSION
    assert {"attn_doc2vec", "torch", "gensim", "numpy"} <= set(meta["versions"])
    assert meta["config"]["vector_size"] == 8 and meta["config"]["context"] == "attention"
    assert not any(name.endswith((".pkl", ".pt", ".pickle")) for name in os.listdir(path))


def test_training_continues_exactly_after_loading(saved, topic_docs) -> None:
    model, path = saved
    loaded = Doc2Vec.load(path)
    before = loaded.dv.vectors.copy()
    model.train(topic_docs[:20], epochs=2)
    loaded.train(topic_docs[:20], epochs=2)
    assert not np.allclose(loaded.dv.vectors, before)
    assert_same_model(model, loaded)  # the random stream resumed where it stopped
    assert loaded.epochs_trained == 4 and len(loaded.loss_history) == 4


def test_checkpoint_loads_in_a_fresh_process(saved, tmp_path) -> None:
    model, path = saved
    out = tmp_path / "out.npz"
    script = textwrap.dedent(f"""
        import numpy as np
        from attn_doc2vec import Doc2Vec
        model = Doc2Vec.load({str(path)!r})
        np.savez({str(out)!r}, dv=model.dv.vectors, wv=model.wv.vectors,
                 scores=model.module.layer.row_salience.numpy(),
                 inferred=model.infer_vector(["fruit1", "the2"], epochs=3))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with np.load(out) as arrays:
        np.testing.assert_array_equal(arrays["dv"], model.dv.vectors)
        np.testing.assert_array_equal(arrays["wv"], model.wv.vectors)
        np.testing.assert_array_equal(arrays["scores"], model.module.layer.row_salience.numpy())
        # inference starts from a stable hash of the words, not Python's per-process salted hash()
        np.testing.assert_array_equal(arrays["inferred"], model.infer_vector(["fruit1", "the2"], epochs=3))


def test_saving_again_replaces_the_checkpoint_cleanly(saved, topic_docs) -> None:
    model, path = saved
    model.train(topic_docs[:20], epochs=1)
    model.save(path)
    assert Doc2Vec.load(path).epochs_trained == 3
    assert sorted(os.listdir(path.parent)) == ["model"]  # no staging or old copies left behind


# ------------------------------------------------------------------------------------------------
# Damage


def test_missing_checkpoint(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="No checkpoint at .*nowhere"):
        Doc2Vec.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        Doc2Vec.load(tmp_path / "empty")


def test_truncated_tensors_are_refused(saved) -> None:
    _, path = saved
    data = (path / TENSORS_FILE).read_bytes()
    (path / TENSORS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"Corrupt checkpoint .*model.safetensors does not match the checksum.*"
                                              r"restore it from a backup or re-train"):
        Doc2Vec.load(path)
    # without the checksum, safetensors' own check still refuses it clearly
    meta = json.loads((path / CONFIG_FILE).read_text())
    del meta["sha256"]
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="Corrupt or incompatible checkpoint"):
        Doc2Vec.load(path)


def test_garbage_config_is_refused(saved) -> None:
    _, path = saved
    (path / CONFIG_FILE).write_bytes(b"\x00\xffnot json{")
    with pytest.raises(CheckpointError, match=r"Corrupt checkpoint .*config.json is not valid JSON"):
        Doc2Vec.load(path)
    (path / CONFIG_FILE).write_text('{"hello": "world"}')
    with pytest.raises(CheckpointError, match="is not an attn_doc2vec checkpoint"):
        Doc2Vec.load(path)


def test_missing_or_modified_vocabulary_is_refused(saved) -> None:
    _, path = saved
    words = json.loads((path / VOCAB_FILE).read_text())
    words["words"][0] = "tampered"
    (path / VOCAB_FILE).write_text(json.dumps(words))
    with pytest.raises(CheckpointError, match="vocab.json does not match the checksum"):
        Doc2Vec.load(path)
    (path / VOCAB_FILE).unlink()
    with pytest.raises(CheckpointError, match="vocab.json is missing"):
        Doc2Vec.load(path)


@pytest.mark.parametrize("version, words", [(99, r"format version 99, but this attn_doc2vec reads version 2: upgrade"),
                                            (0, r"format version 0.*re-train, or load it with the release")])
def test_unknown_format_version_is_refused(saved, version: int, words: str) -> None:
    _, path = saved
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["format_version"] = version
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=words):
        Doc2Vec.load(path)


def test_version_1_checkpoint_loads_its_attention_as_wordpos(topic_docs, tmp_path) -> None:
    """Format version 1 named the word x position design "attention": it loads as today's "wordpos"."""
    model = Doc2Vec(topic_docs[:20], context="wordpos", vector_size=8, epochs=2, min_count=1, device="cpu", seed=3)
    path = tmp_path / "old"
    model.save(path)
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["format_version"], meta["config"]["context"] = 1, "attention"
    for key in ("pool_share", "pool_sample", "context_dropout", "uniform_attention"):  # unknown to version 1
        del meta["config"][key]
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    loaded = Doc2Vec.load(path)
    assert loaded.config.context == "wordpos"
    assert torch.equal(loaded.module.word_scores, model.module.word_scores)
    np.testing.assert_array_equal(loaded.dv.vectors, model.dv.vectors)


def test_unknown_config_key_is_refused(saved) -> None:
    _, path = saved
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["config"]["warp_factor"] = 9
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"Unknown configuration keys \['warp_factor'\].*upgrade"):
        Doc2Vec.load(path)


def test_save_refuses_to_overwrite_other_files(small_model, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not an attn_doc2vec checkpoint; choose another path"):
        small_model.save(tmp_path / "notes.txt")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "data.csv").write_text("keep me")
    with pytest.raises(FileExistsError):
        small_model.save(tmp_path / "dir")
    assert (tmp_path / "dir" / "data.csv").read_text() == "keep me"


def test_save_before_build_vocab_names_the_fix(tmp_path) -> None:
    with pytest.raises(RuntimeError, match=r"Cannot save before the vocabulary is built: call model.build_vocab"):
        Doc2Vec(vector_size=8).save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------------------------
# Interrupted saves


def test_save_interrupted_while_writing_keeps_the_previous_checkpoint(saved, topic_docs, monkeypatch) -> None:
    model, path = saved
    previous = Doc2Vec.load(path)
    model.train(topic_docs[:20], epochs=1)

    def half_written(tensors, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert_same_model(Doc2Vec.load(path), previous)
    assert sorted(os.listdir(path.parent)) == ["model"]


def test_save_interrupted_while_swapping_keeps_the_previous_checkpoint(saved, topic_docs, monkeypatch) -> None:
    model, path = saved
    previous = Doc2Vec.load(path)
    model.train(topic_docs[:20], epochs=1)
    real_replace, calls = os.replace, []

    def fail_second_rename(src, dst):  # the old checkpoint has been moved aside, the new one not yet in
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("interrupted")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", fail_second_rename)
    with pytest.raises(OSError, match="interrupted"):
        model.save(path)
    monkeypatch.undo()
    assert_same_model(Doc2Vec.load(path), previous)
    assert sorted(os.listdir(path.parent)) == ["model"]


def test_crash_between_renames_points_to_the_intact_copy(saved) -> None:
    """A process killed between the two renames leaves the previous checkpoint aside; load says where."""
    model, path = saved
    aside = path.with_name(".model.old-1234abcd")
    os.replace(path, aside)
    with pytest.raises(FileNotFoundError, match=r"save was interrupted; the previous checkpoint is intact at .*"
                                                r"\.model\.old-1234abcd: rename it to"):
        Doc2Vec.load(path)
    os.replace(aside, path)
    assert_same_model(Doc2Vec.load(path), model)
