"""Checkpoints: exact round trips, training resumes where it stopped, and every damage is refused clearly."""

from __future__ import annotations

import json
import os
import re
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


def files(path) -> dict[str, str]:
    """The tensor and vocabulary file names that the checkpoint's config.json names."""
    return json.loads((path / CONFIG_FILE).read_text())["files"]


def as_version_2(path) -> None:
    """Rewrite a checkpoint in format 2's layout: fixed file names, no "files" entry."""
    meta = json.loads((path / CONFIG_FILE).read_text())
    names = meta.pop("files")
    os.replace(path / names["tensors"], path / TENSORS_FILE)
    os.replace(path / names["vocab"], path / VOCAB_FILE)
    meta["sha256"] = {TENSORS_FILE: meta["sha256"][names["tensors"]], VOCAB_FILE: meta["sha256"][names["vocab"]]}
    meta["format_version"] = 2
    (path / CONFIG_FILE).write_text(json.dumps(meta))


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
    names = files(path)
    assert sorted(os.listdir(path)) == sorted([CONFIG_FILE, names["tensors"], names["vocab"]])
    assert re.fullmatch(r"model\.[0-9a-f]{12}\.safetensors", names["tensors"])
    assert re.fullmatch(r"vocab\.[0-9a-f]{12}\.json", names["vocab"])
    meta = json.loads((path / CONFIG_FILE).read_text())
    assert meta["format"] == "attn_doc2vec" and meta["format_version"] == FORMAT_VERSION
    assert {"attn_doc2vec", "torch", "gensim", "numpy"} <= set(meta["versions"])
    assert meta["config"]["vector_size"] == 8 and meta["config"]["context"] == "attention"
    assert not any(name.endswith((".pkl", ".pt", ".pickle")) for name in os.listdir(path))


def test_training_continues_exactly_after_loading(saved, topic_docs) -> None:
    model, path = saved
    loaded = Doc2Vec.load(path)
    before = loaded.dv.vectors.copy()
    model.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=2)
    loaded.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=2)
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
    model.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=1)
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
    tensors = path / files(path)["tensors"]
    data = tensors.read_bytes()
    tensors.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"Corrupt checkpoint .*model\.\w+\.safetensors does not match the "
                                              r"checksum.*"
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
    vocab = path / files(path)["vocab"]
    words = json.loads(vocab.read_text())
    words["words"][0] = "tampered"
    vocab.write_text(json.dumps(words))
    with pytest.raises(CheckpointError, match=r"vocab\.\w+\.json does not match the checksum"):
        Doc2Vec.load(path)
    vocab.unlink()
    with pytest.raises(CheckpointError, match=r"vocab\.\w+\.json is missing"):
        Doc2Vec.load(path)


@pytest.mark.parametrize("version, words", [(99, r"format version 99, but this attn_doc2vec reads version 3: upgrade"),
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
    as_version_2(path)
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
    with pytest.raises(FileExistsError, match="is a file, not a checkpoint directory; choose another path"):
        small_model.save(tmp_path / "notes.txt")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "data.csv").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"not an attn_doc2vec checkpoint \(it holds data.csv\); nothing was"):
        small_model.save(tmp_path / "dir")
    assert os.listdir(tmp_path / "dir") == ["data.csv"]
    assert (tmp_path / "dir" / "data.csv").read_text() == "keep me"


def test_save_never_touches_another_tools_config_json(small_model, tmp_path) -> None:
    """A project folder with its own config.json is not a checkpoint: refused, every file intact."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"name": "my project"}')
    (project / "train.csv").write_text("a,b")
    with pytest.raises(FileExistsError, match="holds a config.json that is not an attn_doc2vec checkpoint's"):
        small_model.save(project)
    assert sorted(os.listdir(project)) == ["config.json", "train.csv"]
    assert (project / "config.json").read_text() == '{"name": "my project"}'
    assert os.listdir(tmp_path) == ["project"]


def test_files_a_user_puts_in_a_checkpoint_survive_saves(saved, topic_docs) -> None:
    model, path = saved
    (path / "NOTES.md").write_text("trained on the fruit corpus")
    (path / "plots").mkdir()
    (path / "plots" / "map.png").write_bytes(b"png")
    model.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=1)
    model.save(path)
    model.save(path)
    assert (path / "NOTES.md").read_text() == "trained on the fruit corpus"
    assert (path / "plots" / "map.png").read_bytes() == b"png"
    names = files(path)
    assert sorted(os.listdir(path)) == sorted([CONFIG_FILE, "NOTES.md", "plots", names["tensors"], names["vocab"]])
    assert Doc2Vec.load(path).epochs_trained == 3


def test_version_2_checkpoint_loads_and_is_replaced_cleanly(saved, topic_docs) -> None:
    model, path = saved
    as_version_2(path)
    (path / "NOTES.md").write_text("mine")
    loaded = Doc2Vec.load(path)
    assert_same_model(loaded, model)
    loaded.save(path)  # the fixed-name files of format 2 were ours: replaced; the user's file stays
    names = files(path)
    assert sorted(os.listdir(path)) == sorted([CONFIG_FILE, "NOTES.md", names["tensors"], names["vocab"]])
    assert_same_model(Doc2Vec.load(path), model)


def test_a_checkpoint_older_than_a_config_field_keeps_the_behaviour_it_was_trained_with(saved) -> None:
    """pool_group came with default 8 and pool_loss with 2 (8 today); a checkpoint written before them was trained
    with one sample per example and without the pooled words' own loss."""
    model, path = saved
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["config"].pop("pool_group")
    meta["config"].pop("pool_loss")
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    loaded = Doc2Vec.load(path)
    assert (loaded.config.pool_group, loaded.config.pool_loss, loaded.module.layer.pool_loss) == (1, 0.0, 0.0)
    fresh = Doc2Vec(vector_size=8)
    assert (fresh.config.pool_group, fresh.config.pool_loss) == (8, 8.0)


def test_save_before_build_vocab_names_the_fix(tmp_path) -> None:
    with pytest.raises(RuntimeError, match=r"Cannot save before the vocabulary is built: call model.build_vocab"):
        Doc2Vec(vector_size=8).save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------------------------
# Interrupted saves


def test_save_interrupted_while_writing_keeps_the_previous_checkpoint(saved, topic_docs, monkeypatch) -> None:
    model, path = saved
    previous = Doc2Vec.load(path)
    model.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=1)

    def half_written(tensors, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert_same_model(Doc2Vec.load(path), previous)
    assert sorted(os.listdir(path.parent)) == ["model"]


def test_save_interrupted_at_the_commit_keeps_the_previous_checkpoint(saved, topic_docs, monkeypatch) -> None:
    model, path = saved
    previous, listing = Doc2Vec.load(path), sorted(os.listdir(path))
    model.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=1)

    def fail(src, dst):  # the new files are written, config.json not yet replaced
        raise OSError("interrupted")

    monkeypatch.setattr(checkpoint.os, "replace", fail)
    with pytest.raises(OSError, match="interrupted"):
        model.save(path)
    monkeypatch.undo()
    assert_same_model(Doc2Vec.load(path), previous)
    assert sorted(os.listdir(path)) == listing


def test_debris_of_a_killed_save_is_cleaned_by_the_next_one(saved) -> None:
    model, path = saved
    (path / "model.0123456789ab.safetensors").write_bytes(b"\x00" * 10)  # what a kill mid-write leaves
    (path / "config.json.0123456789ab.tmp").write_text("{")
    (path / ".staging-0123456789ab").mkdir()  # safetensors' own temporary file, inside our staging folder
    (path / ".staging-0123456789ab" / ".tmp8nsa8X").write_bytes(b"\x00" * 10)
    (path / "model.safetensors.bak").write_text("not ours")  # similar name, not our pattern: kept
    assert_same_model(Doc2Vec.load(path), model)
    model.save(path)
    names = files(path)
    assert sorted(os.listdir(path)) == sorted([CONFIG_FILE, "model.safetensors.bak", names["tensors"],
                                               names["vocab"]])


def test_format_2_crash_between_renames_loads_the_intact_copy(saved, caplog) -> None:
    """Format 1-2 saves swapped directories: a kill between the renames left the checkpoint aside.
    load finds the newest complete copy by itself, and the next save cleans every leftover."""
    model, path = saved
    as_version_2(path)
    aside = path.with_name(".model.old-1234abcd")
    os.replace(path, aside)
    stale = path.with_name(".model.partial-9876fedc")
    stale.mkdir()
    (stale / CONFIG_FILE).write_text("{")  # a half-written staging directory
    with caplog.at_level("WARNING", logger="attn_doc2vec.checkpoint"):
        loaded = Doc2Vec.load(path)
    assert_same_model(loaded, model)
    assert "earlier save was interrupted" in caplog.text and ".model.old-1234abcd" in caplog.text
    loaded.save(path)
    assert sorted(os.listdir(path.parent)) == ["model"]
    assert_same_model(Doc2Vec.load(path), model)


def test_tuple_and_numpy_tags_and_surrogate_tokens_round_trip(tmp_path) -> None:
    from attn_doc2vec import TaggedDocument

    odd = "caf\u00e9\ud800"  # a lone surrogate, as produced by os.fsdecode of undecodable bytes
    docs = [TaggedDocument(["apple", "pear", odd, "fig"] * 3, [("a", i), np.int64(i)]) for i in range(4)]
    model = Doc2Vec(docs, vector_size=8, min_count=1, epochs=2, device="cpu", seed=2)
    model.save(tmp_path / "m")
    loaded = Doc2Vec.load(tmp_path / "m")
    assert_same_model(loaded, model)
    assert ("a", 2) in loaded.dv.key_to_index and odd in loaded.wv.key_to_index
    np.testing.assert_array_equal(loaded.dv.get_vector(("a", 2)), model.dv.get_vector(("a", 2)))
    np.testing.assert_array_equal(loaded.infer_vector([odd, "fig"], epochs=2), model.infer_vector([odd, "fig"],
                                                                                                  epochs=2))


def test_tags_that_cannot_be_saved_are_refused_at_build_vocab() -> None:
    from attn_doc2vec import TaggedDocument

    for tag in (object(), b"bytes", float("nan"), ("a", None)):
        with pytest.raises(TypeError, match=r"tags must be str, int, float or tuples of these.*tags=\[str\(tag\)\]"):
            Doc2Vec([TaggedDocument(["a", "b"], [tag])], vector_size=4, min_count=1, epochs=1, device="cpu")


# ------------------------------------------------------------------------------------------------
# Real kills and real concurrency

SAVER = r"""
import sys
from attn_doc2vec import Doc2Vec, TaggedDocument
docs = [TaggedDocument([f"w{(i * 7 + j) % 50}" for j in range(40)], [i]) for i in range(200)]
model = Doc2Vec(docs, vector_size=32, min_count=1, epochs=1, device="cpu", seed=int(sys.argv[2]))
model.save(sys.argv[1])  # one whole save before "ready": a kill after it always has a checkpoint to keep
print("ready", flush=True)
for _ in range(int(sys.argv[3]) - 1):
    model.save(sys.argv[1])
print("done", flush=True)
"""


def _start_saver(tmp_path, path, seed: int, saves: int) -> subprocess.Popen:
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(seed), str(saves)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def test_killed_saves_always_leave_a_loadable_checkpoint(tmp_path) -> None:
    """SIGKILL a process that saves in a loop, at random moments: the path always loads, and the next
    save leaves nothing behind but the checkpoint."""
    import random
    import time

    path = tmp_path / "ckpt"
    rng = random.Random(0)
    for kill in range(4):
        proc = _start_saver(tmp_path, path, seed=kill, saves=10_000)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        proc.wait()
        loaded = Doc2Vec.load(path)  # the old or the new checkpoint, never a damaged one
        assert loaded.config.seed in range(kill + 1)
    loaded.save(path)
    names = files(path)
    listing = sorted(os.listdir(path))
    assert listing == sorted([CONFIG_FILE, names["tensors"], names["vocab"]]), listing
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".ckpt")]


def test_concurrent_saves_and_loads_never_fail(tmp_path) -> None:
    """Two processes save to one path while this one loads it over and over."""
    import time

    path = tmp_path / "ckpt"
    savers = [_start_saver(tmp_path, path, seed=s, saves=15) for s in (1, 2)]
    loads = 0
    while any(p.poll() is None for p in savers) or loads == 0:
        if (path / CONFIG_FILE).exists():
            assert Doc2Vec.load(path).config.seed in (1, 2)
            loads += 1
        else:
            time.sleep(0.01)
    for proc in savers:
        out, err = proc.communicate()
        assert proc.returncode == 0 and "done" in out, err[-2000:]
    names = files(path)
    assert sorted(os.listdir(path)) == sorted([CONFIG_FILE, names["tensors"], names["vocab"]])
    assert loads >= 3


# ------------------------------------------------------------------------------------------------
# Resume, interrupts, refusals


def _resume_model(topic_docs, **extra) -> Doc2Vec:
    settings = dict(vector_size=8, min_count=1, epochs=4, sample=0.0, batch_size=256, device="cpu", seed=5)
    model = Doc2Vec(**{**settings, **extra})
    model.build_vocab(topic_docs[:30])
    return model


@pytest.mark.parametrize("context", ["attention", "mean"])
def test_resume_from_an_epoch_checkpoint_is_exact(topic_docs, tmp_path, context) -> None:
    """train(4) == train(4) saved after epoch 2, loaded in a new model and resumed: bit for bit."""
    docs = topic_docs[:30]
    full = _resume_model(topic_docs, context=context)
    full.train(docs, total_examples=len(docs), epochs=4)
    saving = _resume_model(topic_docs, context=context)
    path = tmp_path / "every-epoch"

    def save_after_second(model) -> None:
        if model.epochs_trained == 2:
            model.save(path)

    saving.train(docs, total_examples=len(docs), epochs=4, callbacks=[save_after_second])
    resumed = Doc2Vec.load(path)
    assert (resumed.schedule.epoch, resumed.schedule.batch, resumed.schedule.epochs) == (2, 0, 4)
    resumed.resume_training(docs)
    assert_same_model(resumed, full)
    assert resumed.epochs_trained == 4 and resumed.loss_history == full.loss_history
    with pytest.raises(RuntimeError, match=r"Nothing to resume: the latest train\(\) call finished all its 4 epochs"):
        resumed.resume_training(docs)


@pytest.mark.parametrize("extra", [{}, dict(dm=0, dbow_words=1), dict(epoch_block=200, sample=1e-2)],
                         ids=["default", "dbow_words", "blocks"])
def test_ctrl_c_stops_between_batches_and_resumes_exactly(topic_docs, tmp_path, extra) -> None:
    """A real SIGINT in the middle of epoch 2: training stops after the current batch, the saved
    checkpoint records the position, and resuming it gives the uninterrupted model (dbow_words: the
    interrupted epoch's skip-gram pairs drawn again; blocks: the epoch's blocks dealt again, the first one
    skipped, the second downsampled and shuffled again)."""
    import signal

    from attn_doc2vec.training import TrainingInterrupted

    docs = topic_docs[:30]
    full = _resume_model(topic_docs, **extra)
    full.train(docs, total_examples=len(docs), epochs=4)
    model = _resume_model(topic_docs, **extra)

    class CtrlC:
        def on_epoch_begin(self, m) -> None:
            if m.epochs_trained == 1:
                os.kill(os.getpid(), signal.SIGINT)

    # a process started in the background by a shell without job control inherits SIGINT ignored; Ctrl-C
    # is then off on purpose and training keeps it so: give this test the handler a terminal gives
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        handler = signal.getsignal(signal.SIGINT)
        with pytest.raises(TrainingInterrupted, match=r"interrupted at epoch 2/4, batch 1"):
            model.train(docs, total_examples=len(docs), epochs=4, callbacks=[CtrlC()])
        assert signal.getsignal(signal.SIGINT) is handler  # restored
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert (model.schedule.epoch, model.schedule.batch) == (1, 1) and model.epochs_trained == 1
    model.save(tmp_path / "interrupted")
    resumed = Doc2Vec.load(tmp_path / "interrupted")
    resumed.resume_training(docs)
    assert_same_model(resumed, full)


def test_a_diverged_model_does_not_replace_a_good_checkpoint(saved) -> None:
    model, path = saved
    before = sorted(os.listdir(path))
    broken = Doc2Vec.load(path)
    broken.module.word_vectors.data[3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"Not saved: the model has NaN or infinite weights in word_vectors.*"
                                         r"force=True"):
        broken.save(path)
    assert sorted(os.listdir(path)) == before
    assert_same_model(Doc2Vec.load(path), model)
    broken.save(path, force=True)
    assert torch.isnan(Doc2Vec.load(path).module.word_vectors[3, 0])


def test_the_finiteness_check_reads_every_chunk() -> None:
    """save's check for NaN and infinity works a chunk at a time (no table-sized temporaries) and misses none."""
    from attn_doc2vec.doc2vec import _all_finite

    table = torch.zeros(7, 5)
    assert _all_finite(table, chunk=4)
    for bad in (float("nan"), float("inf"), -float("inf")):
        for index in ((0, 0), (3, 2), (6, 4)):  # the first chunk, one in the middle, the short last one
            broken = table.clone()
            broken[index] = bad
            assert not _all_finite(broken, chunk=4), (bad, index)


@pytest.mark.parametrize("kwargs, words", [({"alpha": float("nan")}, r"'alpha' parameter must be a finite number"),
                                           ({"alpha": -1.0}, r"'alpha' parameter \(learning rate\) must be > 0"),
                                           ({"min_alpha": 0.5}, r"'min_alpha' parameter must be in \[0, alpha="),
                                           ({"epochs": 0}, r"'epochs' parameter of inference must be an int >= 1")])
def test_inference_blames_bad_arguments(small_model, kwargs, words) -> None:
    with pytest.raises(ValueError, match=words):
        small_model.infer_vector(["fruit1"], **kwargs)


def test_an_interrupt_right_after_the_commit_keeps_the_new_checkpoint(saved, topic_docs, monkeypatch) -> None:
    """Ctrl-C landing between the commit (config.json replaced) and the end of save: the new files stay."""
    model, path = saved
    model.train(topic_docs[:20], total_examples=len(topic_docs[:20]), epochs=1)

    def interrupted(directory) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_fsync_dir", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    monkeypatch.undo()
    assert_same_model(Doc2Vec.load(path), model)
