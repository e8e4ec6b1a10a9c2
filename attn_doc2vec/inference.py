"""Vectors for new documents: many at once, in the same batched steps as training.

Words, output vectors and attention stay frozen; only a fresh matrix of document
vectors is trained, with gensim's ``infer_vector`` semantics (each document starts
from gensim's pseudo-random vector seeded by its words, then ``epochs`` passes with
the learning rate decaying from ``alpha`` to ``min_alpha``).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from attn_doc2vec.batching import Sampler
from attn_doc2vec.config import Doc2VecConfig
from attn_doc2vec.corpus import Vocabulary, encode_words
from attn_doc2vec.model import Doc2VecModule
from attn_doc2vec.training import Trainer, make_generator, pool_function, resolve_backend


def initial_vectors(word_lists: list[list[str]], vector_size: int) -> np.ndarray:
    """gensim's starting point for inference: a pseudo-random vector seeded by the document's words.

    gensim's ``pseudorandom_weak_vector`` with a stable hash (CRC32): gensim's ``hash()`` is salted per
    process and an empty document falls back to a shared random stream, so the same words would not
    give the same vector twice.
    """
    out = np.empty((len(word_lists), vector_size), dtype=np.float32)
    for i, words in enumerate(word_lists):  # one hash per document, not per token
        text = " ".join(map(str, words)).encode("utf-8", "surrogatepass")  # lone surrogates hash too
        once = np.random.Generator(np.random.SFC64(zlib.crc32(text)))
        out[i] = (once.random(vector_size).astype(np.float32) - 0.5) / vector_size
    return out


def infer(module: Doc2VecModule, vocab: Vocabulary, config: Doc2VecConfig, word_lists: list[list[str]],
          epochs: int, alpha: float, min_alpha: float, progress: bool | None = None) -> torch.Tensor:
    """Infer one vector per token list.

    Parameters
    ----------
    module : Doc2VecModule
        A trained network (left unchanged).
    vocab : Vocabulary
        Its vocabulary.
    config : Doc2VecConfig
        Its configuration (seed, batch size, window, negative).
    word_lists : list of list of str
        The documents.
    epochs : int
        Training passes over the documents.
    alpha, min_alpha : float
        Learning-rate schedule.
    progress : bool or None
        Show a progress bar (None: on a terminal).

    Returns
    -------
    torch.Tensor
        ``(len(word_lists), vector_size)`` on the module's device. Documents with no known word keep
        their (finite) starting vector.
    """
    device = module.word_vectors.device
    encoded = encode_words(word_lists, vocab)
    free_share = module.layer.document_shares()[0] if module.pools_documents else 1.0
    # gensim's starting vector where it is used: every document with a free vector; else (attention's default)
    # only the documents with no known word keep it, the others' vector being the forward pass alone
    start = np.arange(len(word_lists)) if free_share > 0 else np.flatnonzero(encoded.lengths() == 0)
    docs = torch.zeros((len(word_lists), config.vector_size), dtype=torch.float32, device=device)
    if len(start):
        docs[torch.as_tensor(start, device=device)] = torch.from_numpy(
            initial_vectors([word_lists[i] for i in start], config.vector_size)).to(device)
    if len(encoded.tokens) == 0:
        return docs
    if free_share > 0:  # with no free document vector (attention's default) inference is the forward pass alone
        sampler = Sampler.from_vocab(vocab, config, make_generator(config.seed, device))
        Trainer(module, sampler, config).run(encoded, epochs, alpha, min_alpha, doc_vectors=docs,
                                             progress=progress, desc="inferring")
    if module.pools_documents:  # the pooled words are a forward pass: no optimisation
        tokens = torch.as_tensor(encoded.tokens, device=device).to(torch.int32)  # as DeviceCorpus: same kernel
        offsets = torch.as_tensor(encoded.offsets, dtype=torch.int64, device=device)
        rows = torch.arange(len(word_lists), device=device)[:, None]
        pool = pool_function(resolve_backend(config.backend, device), config)
        pooled = module.pool_tags(tokens, offsets, rows, len(word_lists), pool=pool)
        docs = module.document_vectors(docs, pooled)
    return docs
