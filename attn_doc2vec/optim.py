"""Row-wise Adagrad for the autograd context designs: sparse, deterministic, state in the module.

The autograd designs differentiate their loss with respect to the *gathered* rows of a batch
(document, word and output vectors) and to the layer's own parameters. Each gathered gradient is
summed per table row, then applied with Adagrad (Duchi et al. 2011): a row's step is
``lr * g / sqrt(G)``, ``G`` being the running sum of the squared gradients. For the large tables
``G`` is one scalar per row (the mean over the row's components, "row-wise Adagrad", as in
embedding-heavy recommenders), so the optimizer adds one float per row; the layer's parameters
keep one accumulator per entry. A word that appears in many documents (and so gets many updates)
automatically takes smaller steps: what learned per-word attention scores need to train stably.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-10


def row_adagrad(table: Tensor, state: Tensor, rows: Tensor, grads: Tensor, lr: float) -> None:
    """``table[rows] -= lr * g / sqrt(state)`` with ``g`` the per-row sum of ``grads``, in place.

    Parameters
    ----------
    table : Tensor
        ``(n, D)`` the vectors.
    state : Tensor
        ``(n,)`` accumulated mean squared gradient of each row.
    rows : Tensor
        ``(E,)`` int64 row of each gradient; negative rows are ignored.
    grads : Tensor
        ``(E, D)`` gradients.
    lr : float
        Learning rate.
    """
    keep = rows >= 0
    rows, grads = rows[keep], grads[keep]
    unique, inverse = torch.unique(rows, return_inverse=True)
    summed = torch.zeros((unique.shape[0], grads.shape[1]), dtype=grads.dtype, device=grads.device)
    summed.index_add_(0, inverse, grads)
    state[unique] += summed.square().mean(dim=1)
    table[unique] -= lr * summed / (state[unique].sqrt() + EPS)[:, None]


def dense_adagrad(param: Tensor, state: Tensor, grad: Tensor, lr: float) -> None:
    """Elementwise Adagrad step for a small dense parameter, in place (zero gradients move nothing)."""
    state += grad.square()
    param -= lr * grad / (state.sqrt() + EPS)
