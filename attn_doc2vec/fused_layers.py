"""The CPU backend of the autograd context designs: one Numba kernel, exact hand-written gradients.

:class:`LayerFusedStep` runs the step of :class:`~attn_doc2vec.training.AutogradStep` (the design's
forward pass, its gradient, row-wise Adagrad) under one of two rules (``Doc2VecConfig.update_rule``):

* ``"batch"`` (the default): every example's gradient is computed from the tables as they were at the
  start of the batch, summed per row (document, word, output, attention score), and each row takes
  one Adagrad step: exactly AutogradStep's rule, so both backends give the same model up to float
  rounding (``tests/test_context.py`` holds them equal on whole batches).
* ``"example"``: example after example, in batch order: example ``b + 1`` sees the updates of example
  ``b``, as in gensim's SGD; equal to the PyTorch reference run with one example per batch.

Within an example, a row used several times (a word in the context and in the document sample, a
repeated negative) gets its gradients summed first, as the reference does.

Designs (``DESIGNS``): ``attention`` (pooled document words), ``docquery``, ``docloss``; the
gradients are written out in the comments of :func:`_example`. Under the batch rule the examples'
gradients are computed on all threads (pass 1, the tables only read); one thread gives every record entry
its row slot in batch order (pass 2, integers and a few small sums); then each thread sums and steps the
slots it owns, each in batch order (pass 3). So a seed gives the same tables on any number of threads. The
example rule is serial.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

from attn_doc2vec.config import UPDATE_RULES
from attn_doc2vec.fused import _table, call_kernel, parallel_launch
from attn_doc2vec.model import Batch, Doc2VecModule

POOLED, DOCQUERY, DOCLOSS = 0, 1, 2
WORD_POSITION, WORD, SHARED = 0, 1, 2  # how the attention design scores context words
CONTEXT_MODES = {"word+position": WORD_POSITION, "word": WORD, "shared": SHARED}
DESIGNS = {"attention": POOLED, "docquery": DOCQUERY, "docloss": DOCLOSS}
EPS = np.float32(1e-10)
FASTMATH = {"reassoc", "contract"}


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x > -30.0 else 0.0


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _softplus(x):
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


@njit(fastmath=FASTMATH, cache=True)
def _row_step(table, state, row, grad, lr, dim):
    """Row-wise Adagrad of one row with its summed gradient (attn_doc2vec.optim.row_adagrad)."""
    sq = np.float32(0.0)
    for k in range(dim):
        sq += grad[k] * grad[k]
    state[row] += sq / dim
    scale = lr / (math.sqrt(state[row]) + EPS)
    for k in range(dim):
        table[row, k] -= scale * grad[k]


@njit(fastmath=FASTMATH, cache=True)
def _scalar_step(param, state, i, g, lr):
    """Elementwise Adagrad of one entry (attn_doc2vec.optim.dense_adagrad)."""
    if g != 0.0:
        state[i] += g * g
        param[i] -= lr * g / (math.sqrt(state[i]) + EPS)


@njit(cache=True, inline="always")
def _slot(slot_of, rows, row, n_used):
    """The batch rule's slot of ``row`` (a fresh one if the batch has not touched it), and the slots used."""
    slot = slot_of[row]
    if slot >= 0:
        return slot, n_used
    slot_of[row] = n_used
    rows[n_used] = row
    return n_used, n_used + 1


@njit(cache=True, inline="always")
def _record_slot(rows, j, n_used, row):
    """Record ``j``'s slot of ``row`` among its ``n_used`` distinct rows (a new one at the end if absent), and
    the rows used: an example sums the gradients of a row it uses several times."""
    for u in range(n_used):
        if rows[j, u] == row:
            return u, n_used
    rows[j, n_used] = row
    return n_used, n_used + 1


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _slot_step(table, state, row, buf, slot, lr, dim):
    """:func:`_row_step` of ``row`` with the gradient in ``buf[slot]`` (no row view: threads share ``buf``)."""
    sq = np.float32(0.0)
    for k in range(dim):
        sq += buf[slot, k] * buf[slot, k]
    state[row] += sq / dim
    scale = lr / (math.sqrt(state[row]) + EPS)
    for k in range(dim):
        table[row, k] -= scale * buf[slot, k]


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _softmax_pool(e, mask, rows, r, wv, out):
    """``e`` (scores where ``mask[r]``) becomes their softmax in place (0 elsewhere), and ``out`` the weighted
    sum of the rows' vectors ``sum_i e[i] wv[rows[r, i]]`` (no row views of the shared ``mask``/``rows``)."""
    top = np.float32(-1e30)
    for i in range(e.shape[0]):
        if mask[r, i]:
            top = max(top, e[i])
    norm = np.float32(0.0)
    for i in range(e.shape[0]):
        if mask[r, i]:
            e[i] = math.exp(e[i] - top)
            norm += e[i]
        else:
            e[i] = 0.0
    for k in range(out.shape[0]):
        out[k] = 0.0
    for i in range(e.shape[0]):
        if mask[r, i]:
            e[i] /= norm
            w = rows[r, i]
            for k in range(out.shape[0]):
                out[k] += e[i] * wv[w, k]


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _softmax_pool_heads(q, r, mask, rows, salience, wv, out):
    """The document pooling of sample ``r`` with ``H = salience.shape[1]`` heads: ``q[r, i, h]`` becomes the
    softmax over the valid words of their scores ``salience[rows[r, i], h]`` (0 elsewhere) and slice ``h`` of
    ``out[r]`` (``D / H`` components) the sum ``sum_i q[r, i, h] wv[rows[r, i], slice h]``. One head: the same
    operations in the same order as :func:`_softmax_pool`. (Indexed, no row views: threads share ``q``/``out``.)"""
    heads = q.shape[2]
    width = out.shape[1] // heads
    for k in range(out.shape[1]):
        out[r, k] = 0.0
    for h in range(heads):
        top = np.float32(-1e30)
        for i in range(q.shape[1]):
            if mask[r, i]:
                top = max(top, salience[rows[r, i], h])
        norm = np.float32(0.0)
        for i in range(q.shape[1]):
            if mask[r, i]:
                q[r, i, h] = math.exp(salience[rows[r, i], h] - top)
                norm += q[r, i, h]
            else:
                q[r, i, h] = 0.0
        for i in range(q.shape[1]):
            if mask[r, i]:
                q[r, i, h] /= norm
                w = rows[r, i]
                for k in range(h * width, (h + 1) * width):
                    out[r, k] += q[r, i, h] * wv[w, k]


@njit(cache=True, inline="always")
def _owned(own, owners, n):
    """The slots ``[lo, hi)`` of ``n`` that thread ``own`` of ``owners`` sums and steps (contiguous ranges)."""
    return (own * n + owners - 1) // owners, ((own + 1) * n + owners - 1) // owners


@njit(cache=True, inline="always")
def _filled(a, value):
    """``a`` (a fresh C-contiguous array) with every entry set to ``value``: ``np.zeros``/``np.full`` without their
    cost in a ``parallel=True`` kernel, where each is a parallel region of its own (about 0.2 ms a call)."""
    flat = a.reshape(-1)
    for i in range(flat.shape[0]):
        flat[i] = value
    return a


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _add_combination(buf, slot, a, c, vecs, b, dim):
    """``buf[slot] += a vecs[b, 0] + c vecs[b, 1]``: a record entry's gradient (the second term skipped when ``c``
    is 0, as it is for the default's context words)."""
    if c == 0.0:
        for k in range(dim):
            buf[slot, k] += a * vecs[b, 0, k]
    else:
        for k in range(dim):
            buf[slot, k] += a * vecs[b, 0, k] + c * vecs[b, 1, k]


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _own_loss(y, weight, b, outputs, output_mask, ov, gq, gy):
    """``weight`` times the negative-sampling loss of the vector ``y`` alone predicting example ``b``'s target
    (a document loss of its own); writes each output's coefficient to ``gq``, adds ``dL/dy`` to ``gy``."""
    total = 0.0
    for jj in range(outputs.shape[1]):
        if not output_mask[b, jj]:
            continue
        o = outputs[b, jj]
        acc = np.float32(0.0)
        for k in range(y.shape[0]):
            acc += y[k] * ov[o, k]
        total += weight * (_softplus(-acc) if jj == 0 else _softplus(acc))
        gq[jj] = weight * (_sigmoid(acc) - (1.0 if jj == 0 else 0.0))
        for k in range(y.shape[0]):
            gy[k] += gq[jj] * ov[o, k]
    return total


@njit(fastmath=FASTMATH, cache=True)
def _example(b, j, design, shares, doc_slots, words, positions, word_mask, outputs, output_mask, pool_words,
             pool_mask, pool_index, docs, wv, ov, salience, context, bias, query, scores, ctx_mode, row_pool, prow,
             nrow, vec, p, ga, q, gp, z, g, gq, gd, n_us, urows, ucoef, wvec, uscore, ucontext, dectx, n_os, orows,
             ocoef, ovec, gpool, gqd, dvec):
    """The loss of example ``b`` and its gradients at the current tables, written to record ``j``.

    Record ``j`` of ``gd`` (document), ``urows``/``ucoef``/``uscore``/``ucontext`` (its distinct word rows,
    ``n_us[j]`` of them, with summed coefficients), ``dectx`` (each context slot's score gradient), ``orows``/
    ``ocoef`` (distinct output rows), ``gpool`` (``dL/d(pooled)``, for a shared pool row), ``gqd``/``dvec``
    (docquery's ``dL/d(Qd)`` and ``d``). Every word row's gradient is ``ucoef[j, u, 0] wvec[j, 0] +
    ucoef[j, u, 1] wvec[j, 1]`` and every output row's ``ocoef[j, u, 0] ovec[j, 0] + ocoef[j, u, 1] ovec[j, 1]``:
    the record keeps two vectors per example and two coefficients per row, not a gradient row per row. ``vec``
    holds eight ``(D,)`` scratch rows. ``shares`` is ``(s_d, s_c, s_p, pool_loss)``. Returns the loss.
    """
    n_tags = doc_slots.shape[1]
    n_ctx, n_out, n_pool = words.shape[1], outputs.shape[1], pool_words.shape[1]
    dim = docs.shape[1]
    f32 = np.float32
    d, ctx, pooled, h, gh, qd, gP = vec[0], vec[1], vec[2], vec[3], vec[4], vec[5], vec[6]
    inv_sqrt = f32(1.0 / math.sqrt(dim))
    total = 0.0
    # ---- forward -------------------------------------------------------------------------
    n_doc = 0
    for k in range(dim):
        d[k] = 0.0
    free = design != POOLED or shares[0] != 0  # the default has no free vector: its rows are never read
    for t in range(n_tags):
        r = doc_slots[b, t]
        if r >= 0:
            n_doc += 1
            if free:
                for k in range(dim):
                    d[k] += docs[r, k]
    if n_doc > 0:
        for k in range(dim):
            d[k] /= n_doc
    if design == DOCQUERY:
        for i in range(dim):
            acc = f32(0.0)
            for k in range(dim):
                acc += query[i, k] * d[k]
            qd[i] = acc
    # context attention p = softmax(e) over the valid words
    m = 0
    for s in range(n_ctx):
        if word_mask[b, s]:
            m += 1
            w = words[b, s]
            e = bias[positions[b, s]] if ctx_mode == WORD_POSITION else f32(0.0)
            if design == POOLED:
                e += salience[w, 0] if ctx_mode == SHARED else context[w]  # "shared": one head
            elif design == DOCLOSS:
                e += scores[w, positions[b, s]]
            else:
                acc = f32(0.0)
                for k in range(dim):
                    acc += qd[k] * wv[w, k]
                e += acc * inv_sqrt
            p[s] = e
    _softmax_pool(p, word_mask, words, b, wv, ctx)
    n_p = 0
    for k in range(dim):
        pooled[k] = 0.0
    pr = pool_index[b]  # the example's document sample
    if row_pool:
        n_p = nrow[pr]
        for k in range(dim):
            pooled[k] = prow[pr, k]
    elif design == POOLED:
        for i in range(n_pool):
            if pool_mask[pr, i]:
                n_p += 1
                q[i] = salience[pool_words[pr, i], 0]  # the example rule: one head
        _softmax_pool(q, pool_mask, pool_words, pr, wv, pooled)
    # shares of (document, context, pool); a missing part gives its share away
    s_d = shares[0] if n_doc > 0 else f32(0.0)
    s_c = shares[1] if m > 0 else f32(0.0)
    s_p = shares[2] if n_p > 0 else f32(0.0)
    if design != POOLED and m == 0:
        s_d = f32(1.0) if n_doc > 0 else f32(0.0)
    s_sum = s_d + s_c + s_p
    if s_sum > 0:
        s_d, s_c, s_p = s_d / s_sum, s_c / s_sum, s_p / s_sum
    for k in range(dim):
        h[k] = s_d * d[k] + s_c * ctx[k] + s_p * pooled[k]
    # ---- loss and dL/dh: negative sampling (target first) ---------------------------------
    # pool_loss: the document's representation alone also predicts the target, PV-DBOW's loss on
    # y = (s_d d + s_p pooled) / (s_d + s_p) (model.dv's mix; y = pooled without a free vector). Without a free
    # vector (the default) both losses share one pass over each output row (two dot products, two sums).
    pool_loss = design == POOLED and shares[3] > 0 and s_d + s_p > 0
    fused = pool_loss and s_d == 0
    weight = shares[3]
    gy = vec[7]
    for k in range(dim):
        gh[k] = 0.0
        gd[j, k] = 0.0
        gy[k] = 0.0
    for jj in range(n_out):
        if not output_mask[b, jj]:
            continue
        o = outputs[b, jj]
        label = 1.0 if jj == 0 else 0.0
        acc = f32(0.0)
        acc_y = f32(0.0)
        if fused:
            for k in range(dim):
                acc += h[k] * ov[o, k]
                acc_y += pooled[k] * ov[o, k]
        else:
            for k in range(dim):
                acc += h[k] * ov[o, k]
        z[jj] = acc
        total += _softplus(-acc) if jj == 0 else _softplus(acc)
        g[jj] = _sigmoid(acc) - label
        if fused:
            total += weight * (_softplus(-acc_y) if jj == 0 else _softplus(acc_y))
            gq[jj] = weight * (_sigmoid(acc_y) - label)
            for k in range(dim):
                gh[k] += g[jj] * ov[o, k]
                gy[k] += gq[jj] * ov[o, k]
        else:
            for k in range(dim):
                gh[k] += g[jj] * ov[o, k]
    if design == DOCLOSS:
        # the document alone predicts the target, weighted by what the context missed (no gradient)
        total += _own_loss(d, 1.0 - _sigmoid(z[0]), b, outputs, output_mask, ov, gq, gd[j])
    # dL/d(pooled) = s_p gh (+ dL/dy's part, with pool_loss)
    for k in range(dim):
        gP[k] = s_p * gh[k] + gy[k]
    y = pooled
    if pool_loss and not fused:  # dL/dy splits between the free vector and the pooled words by their shares of y
        y = qd
        y_d = s_d / (s_d + s_p)
        for k in range(dim):
            y[k] = y_d * d[k] + (1 - y_d) * pooled[k]
            gy[k] = 0.0
        total += _own_loss(y, weight, b, outputs, output_mask, ov, gq, gy)
        for k in range(dim):
            gP[k] += (1 - y_d) * gy[k]
            gd[j, k] += y_d * gy[k]
    # output rows: dL/dv_j = g_j h (+ gq_j d, or gq_j y), the coefficients summed over repeats of a row
    second = design == DOCLOSS or pool_loss
    for k in range(dim):
        ovec[j, 0, k] = h[k]
        ovec[j, 1, k] = d[k] if design == DOCLOSS else y[k]
    n_o = 0
    for jj in range(n_out):
        if not output_mask[b, jj]:
            continue
        slot, n_new = _record_slot(orows, j, n_o, outputs[b, jj])
        if n_new > n_o:
            n_o = n_new
            ocoef[j, slot, 0] = 0.0
            ocoef[j, slot, 1] = 0.0
        ocoef[j, slot, 0] += g[jj]
        if second:
            ocoef[j, slot, 1] += gq[jj]
    n_os[j] = n_o
    # ---- backward into the inputs -------------------------------------------------------
    # h = s_d d + s_c sum_j p_j x_j + s_p sum_i q_i x_i
    # dL/dd += s_d gh;  dL/dx_j = s_c p_j gh;  de_j = s_c p_j (gh.x_j - sum_i p_i gh.x_i)
    # pooled words: dL/dx_i = q_i gP;  de_i = q_i (gP.x_i - sum_l q_l gP.x_l), gP = dL/d(pooled)
    for k in range(dim):
        gd[j, k] += s_d * gh[k]
    mean_ga = f32(0.0)
    for s in range(n_ctx):
        if word_mask[b, s]:
            w = words[b, s]
            acc = f32(0.0)
            for k in range(dim):
                acc += gh[k] * wv[w, k]
            ga[s] = acc
            mean_ga += p[s] * acc
    mean_gp = f32(0.0)
    if row_pool:  # the shared sample's gradient, spread over its words once per batch
        for k in range(dim):
            gpool[j, k] = gP[k]
    elif design == POOLED:
        for i in range(n_pool):
            if pool_mask[pr, i]:
                w = pool_words[pr, i]
                acc = f32(0.0)
                for k in range(dim):
                    acc += gP[k] * wv[w, k]
                gp[i] = acc
                mean_gp += q[i] * acc
    for k in range(dim):
        gqd[j, k] = 0.0
        dvec[j, k] = d[k]
        # a word row's gradient: a gh + c X, X the pooled words' gP (a sample of the example's own) or docquery's
        # Qd / sqrt(D) (context words)
        wvec[j, 0, k] = gh[k]
        wvec[j, 1, k] = qd[k] * inv_sqrt if design == DOCQUERY else gP[k]
    n_u = 0
    for s in range(n_ctx if row_pool else n_ctx + n_pool):
        in_ctx = s < n_ctx
        if in_ctx:
            if not word_mask[b, s]:
                dectx[j, s] = 0.0
                continue
            w = words[b, s]
            coef = s_c * p[s]
            de = s_c * p[s] * (ga[s] - mean_ga)
            dectx[j, s] = de
        else:
            i = s - n_ctx
            if design != POOLED or not pool_mask[pr, i]:
                continue
            w = pool_words[pr, i]
            coef = q[i]
            de = q[i] * (gp[i] - mean_gp)
        slot, n_new = _record_slot(urows, j, n_u, w)
        if n_new > n_u:
            n_u = n_new
            uscore[j, slot] = 0.0
            ucontext[j, slot] = 0.0
            ucoef[j, slot, 0] = 0.0
            ucoef[j, slot, 1] = 0.0
        ucoef[j, slot, 0 if in_ctx else 1] += coef
        if in_ctx:
            if design == DOCQUERY:
                # e_j = (Q d).x_j / sqrt(D): dx_j += de Qd / sqrt(D), d(Qd) += de x_j / sqrt(D)
                ucoef[j, slot, 1] += de
                for k in range(dim):
                    gqd[j, k] += de * wv[w, k] * inv_sqrt
            elif design == POOLED and ctx_mode == SHARED:
                uscore[j, slot] += de
            elif design == POOLED:
                ucontext[j, slot] += de
        else:
            uscore[j, slot] += de
    n_us[j] = n_u
    if design == DOCQUERY:  # d(Qd)/dd = Q^T .
        for i in range(dim):
            for k in range(dim):
                gd[j, k] += query[i, k] * gqd[j, i]
    return total


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _run(design, shares, doc_slots, words, positions, word_mask, outputs, output_mask, pool_words, pool_mask,
        pool_index, docs, doc_state, wv, word_state, ov, out_state, pv, pool_state, split, salience, salience_state,
        context,
        context_state, bias, bias_state, query, query_state, scores, scores_state, lr, lr_layer, update_shared,
        learn_pool, learn_context, ctx_mode, batched, doc_slot, doc_rows, dbuf, word_slot, word_rows, wbuf,
        wscore, wcontext, out_slot, out_rows, obuf, gscores, rec_gd, rec_nu, rec_urows, rec_ucoef, rec_wvec,
        rec_uscore, rec_ucontext, rec_dectx, rec_no, rec_orows, rec_ocoef, rec_ovec, rec_gpool, rec_gqd, rec_dvec,
        rec_loss, rec_dslot, rec_uslot, rec_oslot, threads):
    """One batch: ``batched`` (the batch rule) computes every example's record in parallel from the batch-start
    tables (:func:`_example`), gives each record entry its row slot in batch order, then sums the records per
    slot (each thread the slots it owns, in batch order) and steps each row once, so the result does not
    depend on the thread count; otherwise (the example rule) example after example, each stepping its rows
    at once.

    ``pv`` is the table the document pooling averages: ``wv`` itself, or with ``split`` (``pool_values="own"``,
    batch rule) a table of its own with Adagrad state ``pool_state``, whose rows take slots keyed ``V + w``
    beside the word rows' ``w`` (``word_slot`` then holds ``2 V`` entries)."""
    n_batch, n_tags = doc_slots.shape
    n_words = wv.shape[0]
    pool_key = n_words if split else 0  # slot key of pool row w: w + pool_key
    n_ctx, n_pool = words.shape[1], pool_words.shape[1]
    dim = docs.shape[1]
    f32 = np.float32
    # batch rule: each document sample (pool row) is pooled once from the batch-start tables; the examples
    # that share it sum their gradient with respect to it, spread over its words after the batch
    row_pool = batched and design == POOLED
    n_rows = pool_words.shape[0] if row_pool else 1
    heads = salience.shape[1]  # of the document pooling; head h pools components [h * width, (h + 1) * width)
    width = dim // heads
    qrow = _filled(np.empty((n_rows, n_pool, heads), f32), 0.0)
    prow = _filled(np.empty((n_rows, dim), f32), 0.0)
    nrow = _filled(np.empty(n_rows, np.int64), 0)
    grow = _filled(np.empty((n_rows, dim), f32), 0.0)
    if row_pool:
        for r in prange(n_rows):
            for i in range(n_pool):
                if pool_mask[r, i]:
                    nrow[r] += 1
            _softmax_pool_heads(qrow, r, pool_mask, pool_words, salience, pv, prow)
    gbias = _filled(np.empty(bias.shape[0], f32), 0.0)
    # without a free vector (the default) the document rows get no gradient: no slot, no sum, no step
    free = design != POOLED or shares[0] != 0
    gquery = _filled(np.empty((dim, dim) if design == DOCQUERY else (1, 1), f32), 0.0)
    total = 0.0
    if batched:
        # ---- pass 1: every example's record, in parallel (the tables are only read) ----
        n_chunks = max(1, min(n_batch, 4 * threads))  # (numba.get_num_threads() here would defeat the disk cache)
        for c in prange(n_chunks):
            vec = np.empty((8, dim), f32)
            p, ga = np.empty(n_ctx, f32), np.empty(n_ctx, f32)
            q, gp = np.empty(n_pool, f32), np.empty(n_pool, f32)
            z, g, gq = np.empty(outputs.shape[1], f32), np.empty(outputs.shape[1], f32), np.empty(outputs.shape[1], f32)
            for b in range(c * n_batch // n_chunks, (c + 1) * n_batch // n_chunks):
                rec_loss[b] = _example(b, b, design, shares, doc_slots, words, positions, word_mask, outputs,
                                       output_mask, pool_words, pool_mask, pool_index, docs, wv, ov, salience, context,
                                       bias, query, scores, ctx_mode, row_pool, prow, nrow, vec, p, ga, q, gp, z, g, gq,
                                       rec_gd, rec_nu, rec_urows, rec_ucoef, rec_wvec, rec_uscore, rec_ucontext,
                                       rec_dectx, rec_no, rec_orows, rec_ocoef, rec_ovec, rec_gpool, rec_gqd, rec_dvec)
        # ---- pass 2: every record entry's row slot, in batch order (integers only), and the small sums ----
        n_dt = 0  # rows touched so far in the batch (documents, words, outputs)
        n_wt = 0
        n_ot = 0
        for b in range(n_batch):
            total += rec_loss[b]
            for t in range(n_tags):
                r = doc_slots[b, t]
                if r >= 0 and free:
                    rec_dslot[b, t], n_dt = _slot(doc_slot, doc_rows, r, n_dt)
            for s in range(n_ctx):
                if word_mask[b, s]:
                    if ctx_mode == WORD_POSITION or design != POOLED:
                        gbias[positions[b, s]] += rec_dectx[b, s]
                    if design == DOCLOSS and update_shared and learn_context:
                        gscores[words[b, s], positions[b, s]] += rec_dectx[b, s]
            if design == DOCQUERY:
                for i in range(dim):
                    for k in range(dim):
                        gquery[i, k] += rec_gqd[b, i] * rec_dvec[b, k]
            if row_pool:
                pr = pool_index[b]
                for k in range(dim):
                    grow[pr, k] += rec_gpool[b, k]
            if not update_shared:
                continue
            for u in range(rec_nu[b]):
                rec_uslot[b, u], n_wt = _slot(word_slot, word_rows, rec_urows[b, u], n_wt)
            for u in range(rec_no[b]):
                rec_oslot[b, u], n_ot = _slot(out_slot, out_rows, rec_orows[b, u], n_ot)
        pool_rows = row_pool and update_shared
        pslot = _filled(np.empty((n_rows if pool_rows else 1, n_pool), np.int64), -1)
        gpr = _filled(np.empty((n_rows if pool_rows else 1, n_pool, heads), f32), 0.0)
        if pool_rows:
            for r in range(n_rows):
                for i in range(n_pool):
                    if pool_mask[r, i]:
                        pslot[r, i], n_wt = _slot(word_slot, word_rows, pool_words[r, i] + pool_key, n_wt)
            # each sample's summed gradient G over its words: pooled = sum_i q_i x_i gives (per head, over its
            # slice) dL/dx_i = q_i G and dL/dr_i = q_i (G.x_i - sum_j q_j G.x_j)
            for r in prange(n_rows):
                for h in range(heads):
                    mean_gp = f32(0.0)
                    for i in range(n_pool):
                        if pool_mask[r, i]:
                            w = pool_words[r, i]
                            acc = f32(0.0)
                            for k in range(h * width, (h + 1) * width):
                                acc += grow[r, k] * pv[w, k]
                            gpr[r, i, h] = acc
                            mean_gp += qrow[r, i, h] * acc
                    for i in range(n_pool):
                        if pool_mask[r, i]:
                            gpr[r, i, h] = qrow[r, i, h] * (gpr[r, i, h] - mean_gp)
        # ---- pass 3: the sums, each thread the slots it owns, each slot in batch order ----
        # (a contiguous range of each table's slots: with slot % owners the threads wrote the same cache lines of
        # the small per-slot sums, wscore and wcontext, at every entry)
        owners = max(1, min(threads, n_dt + n_wt + n_ot))
        for own in prange(owners):
            d_lo, d_hi = _owned(own, owners, n_dt)
            w_lo, w_hi = _owned(own, owners, n_wt)
            o_lo, o_hi = _owned(own, owners, n_ot)
            for slot in range(d_lo, d_hi):
                for k in range(dim):
                    dbuf[slot, k] = 0.0
            for slot in range(w_lo, w_hi):
                for h in range(heads):
                    wscore[slot, h] = 0.0
                wcontext[slot] = 0.0
                for k in range(dim):
                    wbuf[slot, k] = 0.0
            for slot in range(o_lo, o_hi):
                for k in range(dim):
                    obuf[slot, k] = 0.0
            for b in range(n_batch):
                n_doc = 0
                for t in range(n_tags):
                    if doc_slots[b, t] >= 0:
                        n_doc += 1
                for t in range(n_tags):
                    if free and doc_slots[b, t] >= 0 and d_lo <= rec_dslot[b, t] < d_hi:
                        slot = rec_dslot[b, t]
                        for k in range(dim):
                            dbuf[slot, k] += rec_gd[b, k] / n_doc
                if not update_shared:
                    continue
                for u in range(rec_nu[b]):
                    slot = rec_uslot[b, u]
                    if w_lo <= slot < w_hi:
                        _add_combination(wbuf, slot, rec_ucoef[b, u, 0], rec_ucoef[b, u, 1], rec_wvec, b, dim)
                        wscore[slot, 0] += rec_uscore[b, u]  # context words ("shared" scores: one head)
                        wcontext[slot] += rec_ucontext[b, u]
                for u in range(rec_no[b]):
                    slot = rec_oslot[b, u]
                    if o_lo <= slot < o_hi:
                        _add_combination(obuf, slot, rec_ocoef[b, u, 0], rec_ocoef[b, u, 1], rec_ovec, b, dim)
            if pool_rows:
                for r in range(n_rows):
                    for i in range(n_pool):
                        slot = pslot[r, i]
                        if slot >= 0 and w_lo <= slot < w_hi:
                            for h in range(heads):
                                for k in range(h * width, (h + 1) * width):
                                    wbuf[slot, k] += qrow[r, i, h] * grow[r, k]
                                wscore[slot, h] += gpr[r, i, h]
            # ---- one Adagrad step per owned row with the batch's summed gradient (AutogradStep's rule) ----
            for slot in range(d_lo, d_hi):
                _slot_step(docs, doc_state, doc_rows[slot], dbuf, slot, lr, dim)
                doc_slot[doc_rows[slot]] = -1
            for slot in range(w_lo, w_hi):
                key = word_rows[slot]
                pool_row = split and key >= n_words  # a row of the pooling's own table
                w = key - n_words if pool_row else key
                if pool_row:
                    _slot_step(pv, pool_state, w, wbuf, slot, lr, dim)
                else:
                    _slot_step(wv, word_state, w, wbuf, slot, lr, dim)
                if design == POOLED:
                    # split: the document scores step with the pool row, the context's with the word row
                    if learn_pool and (pool_row or not split):
                        for h in range(heads):
                            _scalar_step(salience.reshape(-1), salience_state.reshape(-1), w * heads + h,
                                         wscore[slot, h], lr_layer)
                    if learn_context and not pool_row:
                        _scalar_step(context, context_state, w, wcontext[slot], lr_layer)
                word_slot[key] = -1
            for slot in range(o_lo, o_hi):
                _slot_step(ov, out_state, out_rows[slot], obuf, slot, lr, dim)
                out_slot[out_rows[slot]] = -1
        if update_shared and learn_context:
            for i in range(bias.shape[0]):
                _scalar_step(bias, bias_state, i, gbias[i], lr_layer)
            if design == DOCQUERY:
                flat, flat_state = query.reshape(-1), query_state.reshape(-1)
                gflat = gquery.reshape(-1)
                for i in range(flat.shape[0]):
                    _scalar_step(flat, flat_state, i, gflat[i], lr_layer)
            if design == DOCLOSS:
                flat, flat_state, gflat = scores.reshape(-1), scores_state.reshape(-1), gscores.reshape(-1)
                for i in range(flat.shape[0]):
                    if gflat[i] != 0.0:
                        _scalar_step(flat, flat_state, i, gflat[i], lr_layer)
                        gflat[i] = 0.0
        return total
    # ---- example rule: each example's rows stepped at once (row-wise Adagrad, each row once per example) ----
    vec = np.empty((8, dim), f32)
    p, ga = np.empty(n_ctx, f32), np.empty(n_ctx, f32)
    q, gp = np.empty(n_pool, f32), np.empty(n_pool, f32)
    z, g, gq = np.empty(outputs.shape[1], f32), np.empty(outputs.shape[1], f32), np.empty(outputs.shape[1], f32)
    gh = np.empty(dim, f32)
    for b in range(n_batch):
        total += _example(b, 0, design, shares, doc_slots, words, positions, word_mask, outputs, output_mask,
                          pool_words, pool_mask, pool_index, docs, wv, ov, salience, context, bias, query, scores,
                          ctx_mode, False, prow, nrow, vec, p, ga, q, gp, z, g, gq, rec_gd, rec_nu, rec_urows,
                          rec_ucoef, rec_wvec, rec_uscore, rec_ucontext, rec_dectx, rec_no, rec_orows, rec_ocoef,
                          rec_ovec, rec_gpool, rec_gqd, rec_dvec)
        n_doc = 0
        for t in range(n_tags):
            if doc_slots[b, t] >= 0:
                n_doc += 1
        for t in range(n_tags):
            r = doc_slots[b, t]
            if r >= 0 and free:
                for k in range(dim):
                    gh[k] = rec_gd[0, k] / n_doc
                _row_step(docs, doc_state, r, gh, lr, dim)
        if not update_shared:
            continue
        if design == DOCLOSS and learn_context:  # each context slot's (word, position) score
            for s in range(n_ctx):
                if word_mask[b, s]:
                    _scalar_step(scores.reshape(-1), scores_state.reshape(-1),
                                 words[b, s] * scores.shape[1] + positions[b, s], rec_dectx[0, s], lr_layer)
        for u in range(rec_nu[0]):
            for k in range(dim):
                gh[k] = rec_ucoef[0, u, 0] * rec_wvec[0, 0, k] + rec_ucoef[0, u, 1] * rec_wvec[0, 1, k]
            _row_step(wv, word_state, rec_urows[0, u], gh, lr, dim)
        for u in range(rec_no[0]):
            for k in range(dim):
                gh[k] = rec_ocoef[0, u, 0] * rec_ovec[0, 0, k] + rec_ocoef[0, u, 1] * rec_ovec[0, 1, k]
            _row_step(ov, out_state, rec_orows[0, u], gh, lr, dim)
        if design == POOLED:
            for u in range(rec_nu[0]):
                if learn_pool:
                    _scalar_step(salience.reshape(-1), salience_state.reshape(-1), rec_urows[0, u], rec_uscore[0, u],
                                 lr_layer)  # the example rule: one head
                if learn_context:
                    _scalar_step(context, context_state, rec_urows[0, u], rec_ucontext[0, u], lr_layer)
        if learn_context:
            for i in range(bias.shape[0]):
                gbias[i] = 0.0
            if ctx_mode == WORD_POSITION or design != POOLED:
                for s in range(n_ctx):
                    if word_mask[b, s]:
                        gbias[positions[b, s]] += rec_dectx[0, s]
            for i in range(bias.shape[0]):
                _scalar_step(bias, bias_state, i, gbias[i], lr_layer)
            if design == DOCQUERY:
                flat, flat_state = query.reshape(-1), query_state.reshape(-1)
                for i in range(dim):
                    for k in range(dim):
                        _scalar_step(flat, flat_state, i * dim + k, rec_gqd[0, i] * rec_dvec[0, k], lr_layer)
    return total



class LayerFusedStep:
    """The Numba step of an autograd design, ``step(batch, alpha) -> loss`` (see the module docstring).

    Parameters
    ----------
    module : Doc2VecModule
        A module with a :class:`~attn_doc2vec.context.ContextLayer` on the CPU, float32.
    docs : torch.Tensor
        The document matrix being trained (the module's, or a fresh one for inference).
    update_shared : bool
        Also update words, outputs and the layer (False during inference).
    attention_alpha : float
        Learning-rate multiplier for the layer's parameters.
    update_rule : {"batch", "example"}
        ``"batch"``: every gradient of the batch computed from the same tables, summed per row, one
        Adagrad step per row (:class:`~attn_doc2vec.training.AutogradStep`'s rule, equal to it up to float
        rounding); ``"example"``: example after example, each seeing the previous one's updates.
    threads : int or None
        Threads computing the batch rule's examples (None: Numba's default). The sums that follow run in
        batch order, so every thread count gives the same tables.
    """

    def __init__(self, module: Doc2VecModule, docs: torch.Tensor, update_shared: bool,
                 attention_alpha: float = 1.0, update_rule: str = "batch", threads: int | None = None) -> None:
        if update_rule not in UPDATE_RULES:
            raise ValueError(f"The 'update_rule' parameter must be one of {UPDATE_RULES}. Got {update_rule!r} instead.")
        layer = module.layer
        self.design = DESIGNS[layer.name]
        self.update_shared = update_shared
        self.attention_alpha = attention_alpha
        self.batched = update_rule == "batch"
        self.threads = min(threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)
        learnable = set(layer.learnable())
        self.ctx_mode = CONTEXT_MODES[getattr(layer, "context_scores", "word+position")]
        self.learn_pool = "row_salience" in learnable  # with "shared" scores, r learns from both attentions
        self.learn_context = bool(learnable - {"row_salience"})
        self.docs = _table(docs, "docs")
        own = docs.data_ptr() == module.doc_vectors.data_ptr()
        self.doc_state = module.adagrad_docs.numpy() if own else np.zeros(docs.shape[0], np.float32)
        self.tables = (_table(module.word_vectors.data, "word_vectors"), module.adagrad_words.numpy(),
                       _table(module.output_vectors.data, "output_vectors"), module.adagrad_outputs.numpy())
        split = module.own_pool_values  # the pooling's own table and Adagrad state
        if split and not self.batched:
            raise ValueError("pool_values='own' needs update_rule='batch'.")
        self.pool_tables = ((_table(module.pool_vectors.data, "pool_vectors"), module.adagrad_pool.numpy(), True)
                            if split else (self.tables[0], self.tables[1], False))
        empty1, empty2 = np.zeros(1, np.float32), np.zeros((1, 1), np.float32)

        def param(name, placeholder):
            if not hasattr(layer, name):
                return placeholder, placeholder.copy()
            return layer.get_parameter(name).data.numpy(), getattr(module, "adagrad_layer_" + name).numpy()

        salience, salience_state = param("row_salience", empty1)
        heads = getattr(layer, "pool_heads", 1)
        if heads > 1 and not self.batched:
            raise ValueError("pool_heads > 1 needs update_rule='batch'.")
        # (V, heads) views of the document scores and their Adagrad state (updates reach the layer's tensors)
        self.params = (salience.reshape(salience.shape[0], heads), salience_state.reshape(salience.shape[0], heads),
                       *param("row_context", empty1), *param("position_bias", empty1),
                       *param("query", empty2), *param("row_scores", empty2))
        if layer.name == "attention":
            shares = (*layer.shares, layer.pool_loss)
        else:
            shares = (layer.doc_share, 1.0 - layer.doc_share, 0.0, 0.0)
        self.shares = np.asarray(shares, np.float32)
        # batch rule: row -> slot maps (kept at -1 between steps) and per-slot gradient sums, grown on demand
        n_docs, n_words, dim = self.docs.shape[0], self.tables[0].shape[0], self.docs.shape[1]
        self._maps = (np.full(n_docs if self.batched else 1, -1, np.int64),
                      np.full((2 * n_words if split else n_words) if self.batched else 1, -1, np.int64),
                      np.full(n_words if self.batched else 1, -1, np.int64))
        self._sizes = (n_docs, 2 * n_words if split else n_words, dim)  # distinct rows: words (and pool rows)
        self._buffers: tuple[np.ndarray, ...] | None = None
        self._capacity = (0, 0, 0)
        self._records: tuple[np.ndarray, ...] | None = None
        scores = self.params[8]
        self._gscores = np.zeros_like(scores) if self.batched and layer.name == "docloss" else empty2.copy()

    def __call__(self, batch: Batch, alpha: float) -> float:
        """Apply the batch with learning rate ``alpha`` (see ``update_rule``); return its summed loss."""
        arrays = [np.ascontiguousarray(x.numpy()) for x in (batch.doc_slots, batch.words, batch.positions,
                                                              batch.word_mask, batch.outputs, batch.output_mask)]
        n = arrays[0].shape[0]
        if batch.pool_words is None:
            pool = (np.zeros((n, 0), np.int64), np.zeros((n, 0), np.bool_), np.arange(n, dtype=np.int64))
        else:
            index = np.arange(n, dtype=np.int64) if batch.pool_index is None else batch.pool_index.numpy()
            pool = (np.ascontiguousarray(batch.pool_words.numpy()), np.ascontiguousarray(batch.pool_mask.numpy()),
                    np.ascontiguousarray(index, dtype=np.int64))
        buffers = self._buffers_for(arrays[0].size, arrays[1].shape[0] * (arrays[1].shape[1] + pool[0].shape[1]),
                                    arrays[4].size)
        doc_slot, word_slot, out_slot = self._maps
        doc_rows, dbuf, word_rows, wbuf, wscore, wcontext, out_rows, obuf = buffers
        records = self._records_for(n if self.batched else 1, arrays[0].shape[1], arrays[1].shape[1], pool[0].shape[1],
                                    arrays[4].shape[1])
        with parallel_launch(self.threads if self.batched else 1):
            return call_kernel(_run, self.design, self.shares, *arrays, *pool,
                               self.docs, self.doc_state, *self.tables, *self.pool_tables, *self.params,
                               np.float32(alpha),
                               np.float32(alpha * self.attention_alpha), self.update_shared, self.learn_pool,
                               self.learn_context, self.ctx_mode, self.batched, doc_slot, doc_rows, dbuf, word_slot,
                               word_rows, wbuf, wscore, wcontext, out_slot, out_rows, obuf, self._gscores, *records,
                               self.threads if self.batched else 1)

    def _records_for(self, n: int, n_tags: int, n_ctx: int, n_pool: int, n_out: int) -> tuple[np.ndarray, ...]:
        """Per-example gradient records (see :func:`_example`) and their row slots, allocated once and reused."""
        dim = self._sizes[2]
        r = self._records
        if r is None or r[0].shape[0] < n or r[2].shape[1] != n_ctx + n_pool or r[9].shape[1] != n_out \
                or r[7].shape[1] != n_ctx or r[16].shape[1] != n_tags:
            n_u = n_ctx + n_pool
            r = self._records = (
                np.empty((n, dim), np.float32), np.empty(n, np.int64), np.empty((n, n_u), np.int64),
                np.empty((n, n_u, 2), np.float32), np.empty((n, 2, dim), np.float32), np.empty((n, n_u), np.float32),
                np.empty((n, n_u), np.float32), np.empty((n, n_ctx), np.float32), np.empty(n, np.int64),
                np.empty((n, n_out), np.int64), np.empty((n, n_out, 2), np.float32), np.empty((n, 2, dim), np.float32),
                np.empty((n, dim), np.float32), np.empty((n, dim), np.float32), np.empty((n, dim), np.float32),
                np.empty(n, np.float64), np.empty((n, n_tags), np.int64), np.empty((n, n_u), np.int64),
                np.empty((n, n_out), np.int64))
        return r

    def _buffers_for(self, n_doc: int, n_word: int, n_out: int) -> tuple[np.ndarray, ...]:
        """Per-slot gradient sums large enough for a batch's distinct rows (at most its entries, or the table)."""
        n_docs, n_words, dim = self._sizes
        n_outs = self.tables[2].shape[0]
        need = (min(n_doc, n_docs), min(n_word, n_words), min(n_out, n_outs)) if self.batched else (1, 1, 1)
        if self._buffers is None or any(n > c for n, c in zip(need, self._capacity, strict=True)):
            nd, nw, no = need
            self._capacity = need
            self._buffers = (np.empty(nd, np.int64), np.empty((nd, dim), np.float32), np.empty(nw, np.int64),
                             np.empty((nw, dim), np.float32), np.empty((nw, self.params[0].shape[1]), np.float32),
                             np.empty(nw, np.float32),
                             np.empty(no, np.int64), np.empty((no, dim), np.float32))
        return self._buffers


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _pool_documents(scores, wv, tokens, offsets, out):
    heads = scores.shape[1]  # head h pools components [h * width, (h + 1) * width)
    width = wv.shape[1] // heads
    for d in prange(offsets.shape[0] - 1):
        lo, hi = offsets[d], offsets[d + 1]
        if hi <= lo:
            continue
        for h in range(heads):
            top = np.float32(-1e30)
            for i in range(lo, hi):
                top = max(top, scores[tokens[i], h])
            norm = np.float32(0.0)
            for i in range(lo, hi):
                norm += math.exp(scores[tokens[i], h] - top)
            for i in range(lo, hi):
                w = tokens[i]
                a = np.float32(math.exp(scores[w, h] - top) / norm)
                for k in range(h * width, (h + 1) * width):
                    out[d, k] += a * wv[w, k]


def pooled_documents_cpu(layer, word_vectors: torch.Tensor, tokens: torch.Tensor, offsets: torch.Tensor,
                         threads: int | None = None) -> torch.Tensor:
    """:func:`attn_doc2vec.context.pooled_documents` on the CPU in one parallel pass over the documents
    (no gathered ``(N, D)`` copy of the tokens' vectors): the forward pass of inference and the end-of-epoch
    ``model.dv`` of the pooling designs."""
    scores = layer.pool_weights(torch.arange(word_vectors.shape[0])).to(torch.float32).numpy()
    scores = scores.reshape(scores.shape[0], -1)  # (V, heads)
    out = np.zeros((offsets.shape[0] - 1, word_vectors.shape[1]), np.float32)
    with parallel_launch(min(threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)):
        call_kernel(_pool_documents, np.ascontiguousarray(scores), _table(word_vectors.data, "word_vectors"),
                    np.ascontiguousarray(tokens.numpy()), np.ascontiguousarray(offsets.numpy()), out)
    return torch.from_numpy(out)
