"""The Doc2Vec attention API: the issue's snippet as written, the snapshot callback, figures and files."""

from __future__ import annotations

import numpy as np
import pytest

from attn_doc2vec import Doc2Vec, TaggedDocument
from attn_doc2vec.explain import save_attention_map

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def axes_named(fig, name):
    (ax,) = [a for a in fig.axes if a.get_label() == name]
    return ax


def heatmap_shape(ax) -> tuple[int, int]:
    """Rows and columns of the seaborn heatmap drawn on ``ax``."""
    return ax.collections[0].get_array().reshape(len(ax.get_yticklabels()), -1).shape


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 2000


def test_issue_snippet_runs_unchanged_and_draws_the_heatmap(tmp_path, monkeypatch, caplog):
    """As a script on a machine without a display, the snippet saves its map and says where."""
    from attn_doc2vec import Doc2Vec, TaggedDocument

    monkeypatch.chdir(tmp_path)
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)

    documents = [TaggedDocument(words=['I', 'love', 'Gensim'], tags=['1']),
                 TaggedDocument(words=['Gensim', 'is', 'great'], tags=['2'])]
    model = Doc2Vec(window=2, min_count=1, epochs=100)
    model.build_vocab(documents)
    model.train(documents, total_examples=model.corpus_count, epochs=model.epochs,
                compute_loss=True, callbacks=[model.compute_weights])
    with caplog.at_level("WARNING", logger="attn_doc2vec.explain"):
        model.visualize_attention()
    assert_png(tmp_path / "attention-1.png")
    assert f"saved it to {tmp_path / 'attention-1.png'}" in caplog.text

    fig = model.visualize_attention(show=False)
    ax = axes_named(fig, "attention")
    assert heatmap_shape(ax) == (3, 3)  # 3 target words x 3 context words
    assert [t.get_text() for t in ax.get_yticklabels()] == ["I", "love", "Gensim"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["I", "love", "Gensim"]
    assert heatmap_shape(axes_named(fig, "importance")) == (1, 3)
    assert model.tracked_docs == ["1", "2"]
    assert len(model.attention_history) == 2 * 100
    assert [s["epoch"] for s in model.attention_history[:4]] == [1, 1, 2, 2]


def test_callback_records_one_snapshot_per_epoch_per_tracked_document(topic_docs):
    model = Doc2Vec(vector_size=8, min_count=1, epochs=4, device="cpu")
    model.build_vocab(topic_docs[:10])
    model.track_documents([3, 5, topic_docs[7].words[:20]])
    model.train(topic_docs[:10], total_examples=10, epochs=4, callbacks=[model.compute_weights])
    history = model.attention_history
    assert [(s["epoch"], s["doc"]) for s in history] == [(e, d) for e in range(1, 5) for d in ("3", "5", "doc 2")]
    snap = history[-3]
    assert snap["tag"] == 3 and snap["tokens"] == list(topic_docs[3].words)
    np.testing.assert_array_equal(snap["attention"], model.attention_weights(3).attention)  # the last epoch's
    frame = model.attention_history_frame()
    assert len(frame) == 4 * (60 + 60 + 20) and set(frame.epoch) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="same model"):
        Doc2Vec(vector_size=8).compute_weights(model)


def test_default_tracking_is_the_first_documents(topic_docs):
    model = Doc2Vec(vector_size=8, min_count=1, epochs=2, device="cpu")
    model.build_vocab(topic_docs[:12])
    model.track_documents(n=3)
    model.train(topic_docs[:12], total_examples=len(topic_docs[:12]), epochs=2, callbacks=[model.compute_weights])
    assert model.tracked_docs == [0, 1, 2] and len(model.attention_history) == 6


def test_visualize_writes_png_and_pages_long_documents(small_model, topic_docs, tmp_path):
    words = [w for d in topic_docs[:5] for w in d.words]  # 300 tokens
    fig = small_model.visualize_attention(words, path=tmp_path / "long.png", start=100, length=30)
    assert_png(tmp_path / "long.png")
    w = small_model.window
    assert heatmap_shape(axes_named(fig, "attention")) == (30, 30 + 2 * w)
    fig = small_model.visualize_attention(words[:80], kind="weights", length=None, annot=False, show=False)
    assert heatmap_shape(axes_named(fig, "attention")) == (80, 80)
    small_model.visualize_importance(0, path=tmp_path / "text.png", per_line=10)
    assert_png(tmp_path / "text.png")


def test_history_plot(tmp_path, topic_docs):
    model = Doc2Vec(vector_size=8, min_count=1, epochs=3, device="cpu")
    model.build_vocab(topic_docs[:6])
    with pytest.raises(RuntimeError, match="compute_weights"):
        model.plot_attention_history()
    model.train(topic_docs[:6], total_examples=len(topic_docs[:6]), epochs=3, callbacks=[model.compute_weights])
    fig = model.plot_attention_history(doc=1, path=tmp_path / "history.png", length=25)
    assert_png(tmp_path / "history.png")
    assert heatmap_shape(axes_named(fig, "importance")) == (3, 25)  # epochs x tokens


def test_loaded_model_needs_tokens_and_save_attention_map(small_model, topic_docs, tmp_path):
    written = save_attention_map(small_model, tmp_path / "ckpt-attention.png")
    assert written == tmp_path / "ckpt-attention.png"
    assert_png(written)
    small_model.save(tmp_path / "ckpt")
    loaded = Doc2Vec.load(tmp_path / "ckpt")
    with pytest.raises(RuntimeError, match="pass the document's tokens"):
        loaded.visualize_attention()
    np.testing.assert_array_equal(loaded.attention_weights(topic_docs[1].words).attention,
                                  small_model.attention_weights(1).attention)
    dbow = Doc2Vec(topic_docs[:4], vector_size=8, epochs=1, min_count=1, dm=0, device="cpu")
    assert save_attention_map(dbow, tmp_path / "dbow.png") is None and not (tmp_path / "dbow.png").exists()


def test_documents_named_every_way(small_model, topic_docs):
    doc = topic_docs[4]
    by_tagged = small_model.attention_weights(TaggedDocument(doc.words, doc.tags))
    assert by_tagged.label == "4" and by_tagged.tag == 4
    np.testing.assert_array_equal(by_tagged.attention, small_model.attention_weights(4).attention)
    with pytest.raises(TypeError, match="list of documents"):
        small_model.attention_weights_many("fruit1 fruit2")
    with pytest.raises(KeyError, match="not a document tag"):
        small_model.attention_weights(10_000)
