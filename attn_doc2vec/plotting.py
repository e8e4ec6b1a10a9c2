"""Seaborn figures of attention. Each function takes extracted data and returns a matplotlib Figure.

Nothing here computes weights (see :mod:`attn_doc2vec.attention`), and matplotlib and
seaborn are imported inside the functions, so importing the package stays light. Figures are
built on matplotlib's Agg canvas without pyplot: they work headless, are never shown in a
window nor kept alive by pyplot, display in a notebook when returned, and save with
``fig.savefig(path)``. Pass ``pyplot=True`` to create them through pyplot instead (for
``plt.show()``). Darker always means more weight.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attn_doc2vec.attention import DocumentAttention

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CELL = 0.32  # inches per heatmap cell
MAX_ANNOTATED = 14  # write the numbers in the cells up to this many columns


def new_figure(width: float, height: float, pyplot: bool = False) -> Figure:
    """A figure on the Agg canvas (or a pyplot figure when ``pyplot`` is True).

    It has no layout engine yet: seaborn draws the whole figure once per heatmap, and constrained
    layout would be solved at each of those draws. Call :func:`finish_layout` when it is complete.
    """
    if pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=(width, height))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def finish_layout(fig: Figure) -> Figure:
    """Switch on constrained layout once every artist is in place."""
    fig.set_layout_engine("constrained")
    return fig


def heatmap(ax, values, xlabels: list[str] | None, ylabels: list[str] | None, **kwargs):
    """``seaborn.heatmap`` with every tick label set afterwards, so that seaborn's own draw stays cheap."""
    import seaborn as sns

    sns.heatmap(values, ax=ax, xticklabels=False, yticklabels=False, **kwargs)
    rows, cols = np.shape(values)
    if xlabels is not None:
        ax.set_xticks(np.arange(cols) + 0.5, labels=xlabels, rotation=90)
    if ylabels is not None:
        ax.set_yticks(np.arange(rows) + 0.5, labels=ylabels, rotation=0)
    return ax


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, PNG by default), creating the folder."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    logger.info("wrote %s", path)
    return path


def attention_map(att: DocumentAttention, start: int = 0, length: int | None = 40, kind: str = "attention",
                  cmap: str = "Blues", vmin: float | None = 0.0, annot: bool | None = None, title: str | None = None,
                  pyplot: bool = False) -> Figure:
    """Heatmap of target words x context words (the window band), with a per-token importance strip below.

    Parameters
    ----------
    att : DocumentAttention
        Extracted attention of one document.
    start, length : int
        Targets ``[start, start + length)`` are drawn (``length=None``: to the end); the columns are
        the context words of those targets. Keep ``length`` small for long documents and page with ``start``.
    kind : str
        ``"attention"`` (softmax over the context words, rows sum to 1) or ``"weights"`` (the forward
        pass's combination weights, which leave the rest of each row to the document vector).
    cmap : str
        Sequential colormap; darker means higher.
    vmin : float or None
        Lower end of the color scale (None: the smallest value shown).
    annot : bool or None
        Write the values in the cells (None: when there are at most 14 columns).
    title : str, optional
        Figure title (default: the document's label and the slice).
    pyplot : bool
        Create the figure through pyplot.

    Returns
    -------
    matplotlib.figure.Figure
        Axes labelled (``Axes.get_label``) ``"attention"`` (the map, blank outside the window band and on
        the target itself) and ``"importance"`` (the strip), plus their colorbars; for designs that pool the
        document's words (``context="attention"``) also ``"document attention"`` (each token's weight in the
        document's representation, relative to uniform).
    """
    if len(att) == 0:
        raise ValueError(f"Document {att.label!r} has no in-vocabulary words: there is no attention to draw.")
    stop = len(att) if length is None else start + length
    values, rows, cols = att.matrix(start, stop, kind)
    row_tokens, col_tokens = att.tokens[rows.start:rows.stop], att.tokens[cols.start:cols.stop]
    annot = len(cols) <= MAX_ANNOTATED if annot is None else annot
    label_space = 0.075 * max(len(t) for t in col_tokens)  # inches taken by the rotated column labels
    width = max(4.5, 1.2 + 0.075 * max(len(t) for t in row_tokens) + CELL * len(cols) + 0.9)
    height = max(3.8, 1.0 + CELL * (len(rows) + 1) + 2 * label_space + 0.4)
    pooled = att.document_attention is not None
    fig = new_figure(width, height + (CELL + 0.3 if pooled else 0.0), pyplot)
    grid = fig.add_gridspec(3 if pooled else 2, 2, height_ratios=[len(rows), 1.0] + [1.0] * pooled,
                            width_ratios=[len(cols), 0.6])
    ax, cax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    strip, scax = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    heatmap(ax, values, col_tokens, row_tokens, cbar_ax=cax, cmap=cmap, vmin=vmin, linewidths=0.5,
            linecolor="white", annot=annot, fmt=".2f", annot_kws={"fontsize": 7})
    ax.set_label("attention")
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("context word")
    ax.set_ylabel("target word")
    cax.set_ylabel("attention p" if kind == "attention" else "weight a")
    heatmap(strip, att.importance[cols.start:cols.stop][None, :], col_tokens, ["importance"], cbar_ax=scax,
            cmap="Oranges", linewidths=0.5, linecolor="white", annot=annot, fmt=".2f", annot_kws={"fontsize": 7})
    strip.set_label("importance")
    scax.set_ylabel("vs uniform")
    if pooled:  # the design's attention over the document's own words, relative to uniform (1/L)
        dstrip, dcax = fig.add_subplot(grid[2, 0]), fig.add_subplot(grid[2, 1])
        relative = att.document_attention[cols.start:cols.stop] * len(att)
        heatmap(dstrip, relative[None, :], col_tokens, ["in document"], cbar_ax=dcax, cmap="Greens",
                linewidths=0.5, linecolor="white", annot=annot, fmt=".2f", annot_kws={"fontsize": 7})
        dstrip.set_label("document attention")
        dcax.set_ylabel("vs uniform")
    span = "" if (rows.start, rows.stop) == (0, len(att)) else f", targets {rows.start}-{rows.stop - 1} of {len(att)}"
    fig.suptitle(title if title is not None else f"Attention in {_name(att.label)}{span}")
    return finish_layout(fig)


def importance_text(att: DocumentAttention, start: int = 0, length: int | None = None, per_line: int = 12,
                    cmap: str = "Oranges", title: str | None = None, pyplot: bool = False) -> Figure:
    """The document's text, token by token on lines of ``per_line``, each cell shaded by its importance.

    Parameters
    ----------
    att : DocumentAttention
        Extracted attention of one document.
    start, length : int
        Tokens ``[start, start + length)`` (``length=None``: to the end).
    per_line : int
        Tokens per line of text.
    cmap : str
        Sequential colormap; darker means more attention received (relative to uniform).
    title : str, optional
        Figure title.
    pyplot : bool
        Create the figure through pyplot.

    Returns
    -------
    matplotlib.figure.Figure
        One axes labelled ``"importance"`` (lines x ``per_line`` cells) plus its colorbar.
    """
    if len(att) == 0:
        raise ValueError(f"Document {att.label!r} has no in-vocabulary words: there is nothing to draw.")
    stop = len(att) if length is None else min(len(att), start + length)
    tokens = list(att.tokens[start:stop])
    n_lines = -(-len(tokens) // per_line)
    pad = n_lines * per_line - len(tokens)
    values = np.concatenate([att.importance[start:stop], np.full(pad, np.nan)]).reshape(n_lines, per_line)
    labels = np.asarray(tokens + [""] * pad, dtype=object).reshape(n_lines, per_line)
    cell = max(0.6, 0.075 * max(len(t) for t in tokens) + 0.15)
    fig = new_figure(1.8 + per_line * cell, 1.2 + 0.32 * n_lines, pyplot)
    grid = fig.add_gridspec(1, 2, width_ratios=[per_line * cell, 0.25])
    ax, cax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    heatmap(ax, values, None, [str(start + i * per_line) for i in range(n_lines)], cbar_ax=cax, cmap=cmap,
            annot=labels, fmt="", annot_kws={"fontsize": 8}, linewidths=0.5, linecolor="white")
    cax.set_ylabel("importance (1 = uniform)")
    ax.set_label("importance")
    ax.set_ylabel("token")
    fig.suptitle(title if title is not None else f"Attention received per token in {_name(att.label)}")
    return finish_layout(fig)


def attention_history(history: pd.DataFrame, doc: str | None = None, start: int = 0, length: int | None = 40,
                      cmap: str = "Oranges", pyplot: bool = False) -> Figure:
    """How per-token importance and attention entropy changed over training.

    Parameters
    ----------
    history : pandas.DataFrame
        :func:`~attn_doc2vec.attention.history_frame` of the snapshots.
    doc : str, optional
        Document whose tokens are drawn (default: the first in ``history``).
    start, length : int
        Tokens ``[start, start + length)`` of that document.
    cmap : str
        Sequential colormap; darker means more attention received.
    pyplot : bool
        Create the figure through pyplot.

    Returns
    -------
    matplotlib.figure.Figure
        Axes ``"importance"`` (epochs x tokens heatmap) and ``"entropy"`` (mean normalized entropy of each
        tracked document per epoch; 1 is uniform attention).
    """
    import seaborn as sns

    if history.empty:
        raise ValueError("The attention history is empty: train with callbacks=[model.compute_weights] first.")
    docs = list(dict.fromkeys(history["doc"]))
    doc = docs[0] if doc is None else str(doc)
    if doc not in docs:
        raise ValueError(f"Document {doc!r} is not in the attention history; tracked documents are {docs}.")
    mine = history[history["doc"] == doc]
    stop = np.inf if length is None else start + length
    mine = mine[(mine["position"] >= start) & (mine["position"] < stop)]
    grid = mine.pivot(index="epoch", columns="position", values="importance")
    tokens = mine.drop_duplicates("position").set_index("position")["token"].reindex(grid.columns)
    epochs = list(grid.index)
    step = max(1, len(epochs) // 20)  # at most ~20 epoch labels
    map_height = max(1.5, min(6.0, 0.12 * len(epochs)))
    fig = new_figure(max(5.0, 2.5 + CELL * grid.shape[1]), map_height + 4.5, pyplot)
    gs = fig.add_gridspec(2, 2, height_ratios=[map_height + 1.0, 2.5], width_ratios=[grid.shape[1], 0.6])
    ax, cax, ent_ax = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, :])
    heatmap(ax, grid.to_numpy(), list(tokens), None, cbar_ax=cax, cmap=cmap)
    cax.set_ylabel("importance (1 = uniform)")
    ax.set_yticks(np.arange(0, len(epochs), step) + 0.5, labels=[str(e) for e in epochs[::step]], rotation=0)
    ax.set_label("importance")
    ax.set_ylabel("epoch")
    ax.set_title(f"Attention received per token in {_name(doc)}, by epoch")
    per_epoch = history.drop_duplicates(["epoch", "doc"])
    sns.lineplot(data=per_epoch, x="epoch", y="entropy", hue="doc", ax=ent_ax,
                 marker="o" if len(epochs) <= 30 else None)
    ent_ax.set_label("entropy")
    ent_ax.set_ylabel("normalized entropy")
    ent_ax.set_title("Mean attention entropy (1 = uniform)")
    return finish_layout(fig)


def _name(label: str) -> str:
    """``"document 3"`` for a tag, the label itself for an untagged ``"doc <i>"``."""
    return label if label.startswith("doc ") else f"document {label}"
