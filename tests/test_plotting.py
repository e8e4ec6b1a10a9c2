"""Figures: drawn from extracted data, headless, the right shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attn_doc2vec import plotting
from attn_doc2vec.attention import history_frame, snapshot

REPO = Path(__file__).resolve().parents[1]


def axes_named(fig, name):
    (ax,) = [a for a in fig.axes if a.get_label() == name]
    return ax


def test_attention_map_draws_the_extracted_numbers(small_model, topic_docs):
    att = small_model.attention_weights(topic_docs[0].words)
    fig = plotting.attention_map(att, start=5, length=8, annot=False)
    ax = axes_named(fig, "attention")
    values, rows, cols = att.matrix(5, 13)
    drawn = ax.collections[0].get_array()
    assert drawn.shape == (len(rows), len(cols))  # 8 targets x (8 + 2 * window) context words
    np.testing.assert_array_equal(np.ma.filled(drawn, np.nan), values)  # NaN (blank) outside the band
    assert [t.get_text() for t in ax.get_yticklabels()] == att.tokens[5:13]
    assert [t.get_text() for t in ax.get_xticklabels()] == att.tokens[cols.start:cols.stop]
    strip = axes_named(fig, "importance").collections[0].get_array()
    np.testing.assert_array_equal(np.ma.filled(strip, np.nan).ravel(), att.importance[cols.start:cols.stop])
    assert "targets 5-12" in fig._suptitle.get_text()
    # the default design pools the document's words: its attention over them is drawn too
    pooled = axes_named(fig, "document attention").collections[0].get_array()
    np.testing.assert_allclose(np.ma.filled(pooled, np.nan).ravel(),
                               att.document_attention[cols.start:cols.stop] * len(att), rtol=1e-6)


def test_attention_map_without_pooling_has_no_document_strip(topic_docs):
    from attn_doc2vec import Doc2Vec

    model = Doc2Vec(topic_docs[:6], context="wordpos", vector_size=8, epochs=1, min_count=1, device="cpu")
    fig = plotting.attention_map(model.attention_weights(0), length=6, annot=False)
    assert [a for a in fig.axes if a.get_label() == "document attention"] == []


def test_figures_are_headless_and_outside_pyplot(small_model, tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    att = small_model.attention_weights(0)
    fig = plotting.attention_map(att, length=10)
    assert type(fig.canvas).__name__ == "FigureCanvasAgg" and plt.get_fignums() == before
    path = plotting.save_figure(fig, tmp_path / "sub" / "map")
    assert path.suffix == ".png" and path.stat().st_size > 2000
    text = plotting.importance_text(att, per_line=7)
    cells = axes_named(text, "importance").collections[0].get_array()
    assert cells.shape == (-(-len(att) // 7), 7)
    with pytest.raises(ValueError, match="no in-vocabulary words"):
        plotting.attention_map(small_model.attention_weights(["unknown", "words"]))


def test_history_figure_has_one_row_per_epoch(small_model):
    atts = small_model.attention_weights_many([0, 1])
    history = history_frame([snapshot(a, epoch) for epoch in (1, 2, 3) for a in atts])
    fig = plotting.attention_history(history, doc="1", length=12)
    assert axes_named(fig, "importance").collections[0].get_array().shape == (3, 12)
    assert len(axes_named(fig, "entropy").get_lines()) >= 2  # one line per tracked document
    with pytest.raises(ValueError, match="tracked documents are"):
        plotting.attention_history(history, doc="nope")
