"""Doc2VecModule: attention weights, and the explicit gradients checked against autograd and finite differences."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from attn_doc2vec.model import Batch, Doc2VecModule

MODES = [(1, "wordpos"), (1, "mean"), (1, "sum"), (0, "wordpos")]  # dm=0 ignores context: PV-DBOW
N_WORDS, N_DOCS, DIM, WINDOW = 9, 5, 6, 2


def make_module(dm: int, context: str, seed: int = 0, dtype=torch.float64) -> Doc2VecModule:
    """A module with random values in every table (scores too, so the attention is far from uniform)."""
    module = Doc2VecModule(N_WORDS, N_DOCS, DIM, WINDOW, context, dm).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    for param in module.parameters():
        param.data.copy_(torch.randn(param.shape, generator=gen, dtype=dtype) * 0.7)
    return module


def make_batch(dm: int, seed: int = 1, n: int = 10, n_tags: int = 2, k: int = 4) -> Batch:
    """Random examples with every irregular case: padded tags, padded and empty windows, repeated
    rows (few words, so rows repeat across and within examples), negatives that drew the target."""
    gen = torch.Generator().manual_seed(seed)
    doc_slots = torch.randint(0, N_DOCS, (n, n_tags if dm else 1), generator=gen)
    if dm and n_tags > 1:
        doc_slots[::3, 1:] = -1
    s = 2 * WINDOW if dm else 0
    words = torch.randint(0, N_WORDS, (n, s), generator=gen)
    word_mask = torch.rand((n, s), generator=gen) < 0.7
    if dm:
        word_mask[0] = False  # a document with a single token: no context at all
        word_mask[1] = True
    positions = torch.arange(s).expand(n, s).clone()
    outputs = torch.randint(0, N_WORDS, (n, k), generator=gen)
    outputs[2, 1:3] = outputs[2, 0]
    output_mask = outputs != outputs[:, :1]
    output_mask[:, 0] = True
    return Batch(doc_slots=doc_slots, words=words, positions=positions, word_mask=word_mask,
                 outputs=outputs, output_mask=output_mask)


def autograd_tables(module: Doc2VecModule, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and d(summed loss)/d(table) of ``forward`` by autograd, for every table."""
    params = {name: p.detach().clone().requires_grad_(True) for name, p in module.named_parameters()}
    loss, _ = functional_call(module, params, (batch,))
    grads = torch.autograd.grad(loss.sum(), list(params.values()), allow_unused=True)  # PV-DBOW: no words
    pairs = zip(params, grads, strict=True)
    return loss.sum(), {name: torch.zeros_like(params[name]) if g is None else g for name, g in pairs}


def explicit_tables(module: Doc2VecModule, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The explicit per-slot gradients of ``gradients`` summed into table-shaped gradients."""
    g = module.gradients(batch)
    n_doc = batch.doc_slots.shape[1]
    out = {name: torch.zeros_like(p) for name, p in module.named_parameters()}
    out["doc_vectors"].index_put_((batch.doc_slots.clamp(min=0).reshape(-1),), g.slots[:, :n_doc].reshape(-1, DIM),
                                  accumulate=True)
    out["word_vectors"].index_put_((batch.words.reshape(-1),), g.slots[:, n_doc:].reshape(-1, DIM), accumulate=True)
    out["output_vectors"].index_put_((batch.outputs.reshape(-1),), g.outputs.reshape(-1, g.outputs.shape[2]),
                                     accumulate=True)
    if module.uses_attention:
        out["word_scores"].index_put_((batch.words.reshape(-1), batch.positions.reshape(-1)), g.scores.reshape(-1),
                                      accumulate=True)
        out["position_scores"].index_put_((batch.positions.reshape(-1),), g.scores.reshape(-1), accumulate=True)
    else:
        assert g.scores is None
    return g.loss, out


# ------------------------------------------------------------------------------------------------
# Attention weights


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_attention_sums_to_one_over_the_valid_words(scale: float) -> None:
    module = make_module(1, "wordpos")
    module.word_scores.data *= scale  # huge scores must not overflow the softmax
    batch = make_batch(1)
    p = module.attention(batch)
    has_words = batch.word_mask.any(dim=1)
    torch.testing.assert_close(p.sum(dim=1)[has_words], torch.ones(int(has_words.sum()), dtype=p.dtype))
    assert torch.all(p[~batch.word_mask] == 0)
    assert torch.all(p[~has_words] == 0)
    assert torch.isfinite(p).all()


@pytest.mark.parametrize("dm, context", [(1, "wordpos"), (1, "mean")])
def test_combination_weights_sum_to_one(dm: int, context: str) -> None:
    module = make_module(dm, context)
    batch = make_batch(dm)
    a = module.weights(batch)
    torch.testing.assert_close(a.sum(dim=1), torch.ones(a.shape[0], dtype=a.dtype))
    assert torch.all(a[~module.slot_mask(batch)] == 0)
    # every document slot keeps its mean-PV-DM share 1/n, whatever the attention
    n = module.slot_mask(batch).sum(dim=1, keepdim=True).to(a.dtype)
    doc_valid = batch.doc_slots >= 0
    torch.testing.assert_close(a[:, :2][doc_valid], (1 / n).expand(-1, 2)[doc_valid])


def test_sum_and_dbow_weights_are_one_per_valid_slot() -> None:
    for dm, context in [(1, "sum"), (0, "wordpos")]:
        module = make_module(dm, context)
        batch = make_batch(dm)
        assert torch.equal(module.weights(batch), module.slot_mask(batch).to(torch.float64))


def test_untrained_attention_is_gensims_mean() -> None:
    attention, mean = make_module(1, "wordpos"), make_module(1, "mean")
    attention.word_scores.data.zero_()
    attention.position_scores.data.zero_()
    batch = make_batch(1)
    torch.testing.assert_close(attention.weights(batch), mean.weights(batch))
    torch.testing.assert_close(attention(batch)[0], mean(batch)[0])


def test_a_higher_score_moves_weight_to_that_word() -> None:
    module = make_module(1, "wordpos")
    batch = make_batch(1)
    before = module.attention(batch)
    module.word_scores.data[batch.words[1, 0], 0] += 3.0  # example 1 has all its words
    after = module.attention(batch)
    assert after[1, 0] > before[1, 0]
    others = batch.words[1, 1:] != batch.words[1, 0]
    assert torch.all(after[1, 1:][others] < before[1, 1:][others])
    module.position_scores.data[3] += 5.0  # the last position gains in every example that has it
    gained = module.attention(batch)[:, 3] > after[:, 3]
    partial = batch.word_mask[:, 3] & (batch.word_mask.sum(dim=1) > 1)
    assert torch.equal(gained, partial)


def test_masked_negatives_and_padding_do_not_change_the_loss() -> None:
    module = make_module(1, "wordpos")
    batch = make_batch(1)
    loss = module(batch)[0]
    changed = make_batch(1)
    changed.words = torch.where(batch.word_mask, batch.words, (batch.words + 1) % N_WORDS)  # padding rows
    torch.testing.assert_close(module(changed)[0], loss)
    # negatives equal to the target are skipped, as gensim does
    h = torch.einsum("bs,bsd->bd", module.weights(batch), module.slot_vectors(batch))
    z = torch.einsum("bd,bkd->bk", h, module.output_vectors[batch.outputs])
    expected = torch.nn.functional.softplus(-z[:, 0]) + (torch.nn.functional.softplus(z[:, 1:])
                                                         * batch.output_mask[:, 1:]).sum(dim=1)
    torch.testing.assert_close(loss, expected)
    assert not batch.output_mask[2, 1:3].any()


def test_reset_parameters_is_word2vecs_initialization() -> None:
    module = Doc2VecModule(50, 20, 8, 3, "wordpos", 1)
    module.reset_parameters(torch.Generator().manual_seed(5))
    for table in (module.word_vectors, module.doc_vectors):
        assert table.abs().max() <= 0.5 / 8
        assert table.std() > 0.01
    assert torch.all(module.output_vectors == 0)
    assert torch.all(module.word_scores == 0) and torch.all(module.position_scores == 0)
    again = Doc2VecModule(50, 20, 8, 3, "wordpos", 1)
    again.reset_parameters(torch.Generator().manual_seed(5))
    assert torch.equal(again.word_vectors, module.word_vectors)
    assert torch.equal(again.doc_vectors, module.doc_vectors)


def test_score_tables_exist_only_for_attentive_pvdm() -> None:
    assert Doc2VecModule(4, 2, 3, 2, "wordpos", 1).uses_attention
    for dm, context in [(1, "mean"), (1, "sum"), (0, "wordpos")]:
        module = Doc2VecModule(4, 2, 3, 2, context, dm)
        assert not module.uses_attention
        assert "word_scores" not in dict(module.named_parameters())


# ------------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("dm, context", MODES)
def test_explicit_gradients_equal_autograd(dm: int, context: str) -> None:
    module = make_module(dm, context)
    batch = make_batch(dm)
    loss, reference = autograd_tables(module, batch)
    explicit_loss, explicit = explicit_tables(module, batch)
    torch.testing.assert_close(explicit_loss, loss)
    assert set(explicit) == set(reference)
    for name in reference:
        used = dm == 1 or name != "word_vectors"
        assert (reference[name].abs().max() > 0) == used, name  # the check must exercise every table it can
        torch.testing.assert_close(explicit[name], reference[name], rtol=1e-10, atol=1e-12, msg=name)
    torch.testing.assert_close(module.gradients(batch).weights, module.weights(batch))


@pytest.mark.parametrize("dm, context", MODES)
def test_explicit_gradients_equal_autograd_with_labelled_outputs(dm: int, context: str) -> None:
    """Hierarchical softmax's outputs carry a label each (1 - code on the Huffman path): any 0/1 pattern."""
    module = make_module(dm, context)
    batch = make_batch(dm, k=7)
    gen = torch.Generator().manual_seed(3)
    batch.output_labels = (torch.rand(batch.outputs.shape, generator=gen) < 0.5).to(torch.float32)
    batch.output_mask = torch.rand(batch.outputs.shape, generator=gen) < 0.8  # padding of short paths
    loss, reference = autograd_tables(module, batch)
    explicit_loss, explicit = explicit_tables(module, batch)
    torch.testing.assert_close(explicit_loss, loss)
    for name in reference:
        torch.testing.assert_close(explicit[name], reference[name], rtol=1e-10, atol=1e-12, msg=name)
    # labelled as negative sampling lays them out, the loss is negative sampling's
    batch.output_labels = torch.zeros(batch.outputs.shape)
    batch.output_labels[:, 0] = 1.0
    labelled = module.forward(batch)[0]
    batch.output_labels = None
    torch.testing.assert_close(labelled, module.forward(batch)[0])


@pytest.mark.parametrize("dm, context", MODES)
def test_explicit_gradients_with_a_separate_document_matrix(dm: int, context: str) -> None:
    """Inference passes its own document matrix: gradients must be taken at those vectors."""
    module = make_module(dm, context)
    batch = make_batch(dm)
    docs = torch.randn(N_DOCS, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).requires_grad_()
    loss = module(batch, docs)[0].sum()
    (reference,) = torch.autograd.grad(loss, [docs])
    g = module.gradients(batch, docs.detach())
    explicit = torch.zeros_like(reference)
    n_doc = batch.doc_slots.shape[1]
    explicit.index_put_((batch.doc_slots.clamp(min=0).reshape(-1),), g.slots[:, :n_doc].reshape(-1, DIM),
                        accumulate=True)
    torch.testing.assert_close(g.loss, loss.detach())
    torch.testing.assert_close(explicit, reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dm, context", MODES)
def test_forward_passes_gradcheck(dm: int, context: str) -> None:
    """Autograd of the forward pass agrees with finite differences, in float64, for every table."""
    module = make_module(dm, context)
    batch = make_batch(dm, n=6)
    names = [name for name, _ in module.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())

    def loss(*tables):
        return functional_call(module, dict(zip(names, tables, strict=True)), (batch,))[0].sum()

    assert torch.autograd.gradcheck(loss, values, eps=1e-6, atol=1e-6)


def test_explicit_score_gradients_match_finite_differences() -> None:
    """The attention layer's explicit gradient, checked directly against central differences."""
    module = make_module(1, "wordpos")
    batch = make_batch(1)
    _, explicit = explicit_tables(module, batch)
    eps = 1e-6
    for name in ("position_scores", "word_scores"):
        table = getattr(module, name).data
        numeric = torch.zeros_like(table)
        for index in [tuple(i) for i in torch.nonzero(explicit[name] != 0)]:
            saved = table[index].item()
            table[index] = saved + eps
            up = module(batch)[0].sum()
            table[index] = saved - eps
            down = module(batch)[0].sum()
            table[index] = saved
            numeric[index] = (up - down) / (2 * eps)
        assert numeric.abs().max() > 1e-3
        torch.testing.assert_close(explicit[name], numeric, rtol=1e-5, atol=1e-8, msg=name)


def test_gradients_are_zero_on_padding() -> None:
    module = make_module(1, "wordpos")
    batch = make_batch(1)
    g = module.gradients(batch)
    valid = module.slot_mask(batch)
    assert torch.all(g.slots[~valid] == 0)
    assert torch.all(g.scores[~batch.word_mask] == 0)
    assert torch.all(g.outputs[~batch.output_mask] == 0)
    assert torch.isfinite(g.slots).all() and torch.isfinite(g.scores).all()


@pytest.mark.parametrize("context", ["wordpos", "mean"])
def test_doc_share_fixes_the_document_weight_and_keeps_gradients_exact(context: str) -> None:
    module = make_module(1, context)
    module.doc_share = 0.3
    batch = make_batch(1)
    a = module.weights(batch)
    torch.testing.assert_close(a.sum(dim=1), torch.ones(a.shape[0], dtype=a.dtype))
    n_doc = batch.doc_slots.shape[1]
    has_words = batch.word_mask.any(dim=1)
    doc_total = a[:, :n_doc].sum(dim=1)
    torch.testing.assert_close(doc_total[has_words], torch.full_like(doc_total[has_words], 0.3))
    # no context words: the whole weight goes to the document
    torch.testing.assert_close(doc_total[~has_words], torch.ones_like(doc_total[~has_words]))
    loss_a, auto = autograd_tables(module, batch)
    loss_e, explicit = explicit_tables(module, batch)
    torch.testing.assert_close(loss_e, loss_a)
    for name in auto:
        torch.testing.assert_close(explicit[name], auto[name], msg=name)


def test_concat_input_is_the_documents_then_the_window_and_its_gradients_equal_autograd() -> None:
    """gensim's dm_concat: h = [d, x_-W .. x_-1, x_1 .. x_W] (one tag here); an example whose document has
    another number of tags is skipped (no loss, no gradient), as gensim skips the document."""
    module = Doc2VecModule(N_WORDS, N_DOCS, DIM, WINDOW, "concat", 1).to(torch.float64)
    assert module.output_vectors.shape == (N_WORDS, (1 + 2 * WINDOW) * DIM)
    gen = torch.Generator().manual_seed(0)
    for param in module.parameters():
        param.data.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64) * 0.7)
    batch = make_batch(1)
    batch.word_mask = torch.ones_like(batch.word_mask)  # the sampler fills every slot (null word past the ends)
    h, valid = module.concat_input(batch)
    b = int(torch.nonzero(valid)[0])
    expected = torch.cat([module.doc_vectors[batch.doc_slots[b, 0]]] + [module.word_vectors[w] for w in batch.words[b]])
    torch.testing.assert_close(h[b], expected)
    assert valid.tolist() == ((batch.doc_slots >= 0).sum(1) == 1).tolist() and not valid.all()  # two-tag rows skip
    loss, reference = autograd_tables(module, batch)
    explicit_loss, explicit = explicit_tables(module, batch)
    torch.testing.assert_close(explicit_loss, loss)
    for name in reference:
        torch.testing.assert_close(explicit[name], reference[name], rtol=1e-10, atol=1e-12, msg=name)
    assert float(module.forward(batch)[0][~valid].abs().sum()) == 0.0
