"""Training one model with several processes on torch.distributed (attn_doc2vec.distributed).

The multi-process tests spawn two processes joined by a gloo group on localhost, as ``torchrun`` would, train
a small model, and check what rank 0 saved in a single process.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp
from gensim.models.doc2vec import TaggedLineDocument
from gensim.test.utils import datapath

from attn_doc2vec import Doc2Vec, TaggedDocument
from attn_doc2vec.corpus import EncodedCorpus, encode
from attn_doc2vec.distributed import shard, shard_range, world

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lee_corpus() -> list[TaggedDocument]:
    return list(TaggedLineDocument(datapath("lee_background.cor")))


def _train_rank(rank: int, world_size: int, port: int, folder: str, scenario: str) -> None:
    """One process of a test run: joins the group, trains, writes its tables' digest (and rank 0 a checkpoint)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        if scenario == "mean":  # free document vectors, fitted by inference for unseen text
            corpus = lee_corpus()
            model = Doc2Vec(context="mean", vector_size=32, epochs=20, min_count=2, device="cpu", seed=3,
                            workers=1, alpha=0.05, sync_every=4)
            model.build_vocab(corpus)
            history = model.train(corpus, total_examples=model.corpus_count, epochs=model.epochs,
                                  callbacks=[lambda m: m.save(Path(folder) / "half") if m.epochs_trained == 10
                                             else None])
        else:  # the default design; a shared tag spans both shards; the last document is far longer
            corpus = [TaggedDocument(d.words, [d.tags[0], "all"]) for d in lee_corpus()[:60]]
            corpus.append(TaggedDocument([w for d in corpus for w in d.words], [len(corpus)]))
            model = Doc2Vec(vector_size=16, epochs=3, min_count=2, device="cpu", seed=3, workers=1,
                            batch_size=64, sync_every=3)
            model.build_vocab(corpus)
            history = model.train(corpus, total_examples=model.corpus_count, epochs=model.epochs)
        state = model.module.state_dict()
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in state.values())).hexdigest()
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps({"digest": digest, "world": list(world()),
                                                                  "sync_seconds": [h.sync_seconds for h in history]}))
        model.save(Path(folder) / "model")
    finally:
        dist.destroy_process_group()


def spawn_training(folder: Path, scenario: str) -> list[dict]:
    tmp.spawn(_train_rank, args=(2, free_port(), str(folder), scenario), nprocs=2)
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


# ------------------------------------------------------------------------------------------------- shards


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_shards_cover_every_document_once_with_about_equal_tokens(world_size):
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 200, size=101)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ranges = [shard_range(offsets, r, world_size) for r in range(world_size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == 101
    assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:], strict=True))  # contiguous, no gap, no overlap
    tokens = [offsets[last] - offsets[first] for first, last in ranges]
    assert max(tokens) - min(tokens) <= 2 * lengths.max()
    assert sum(tokens) == offsets[-1]


def test_more_processes_than_documents_leaves_some_shards_empty():
    offsets = np.array([0, 10, 12])
    ranges = [shard_range(offsets, r, 4) for r in range(4)]
    assert sorted(i for first, last in ranges for i in range(first, last)) == [0, 1]


def test_a_shard_views_the_corpus_arrays_without_copying_tokens():
    corpus = lee_corpus()
    vocab_model = Doc2Vec(min_count=2, vector_size=8, device="cpu")
    vocab_model.build_vocab(corpus)
    encoded = encode(corpus, vocab_model.vocab)
    part = shard(encoded, 1, 2)
    first, last = shard_range(encoded.offsets, 1, 2)
    assert isinstance(part, EncodedCorpus) and part.n_docs == last - first
    assert np.shares_memory(part.tokens, encoded.tokens)
    np.testing.assert_array_equal(part.tokens[part.offsets[3]:part.offsets[4]],
                                  encoded.tokens[encoded.offsets[first + 3]:encoded.offsets[first + 4]])
    np.testing.assert_array_equal(part.tags, encoded.tags[first:last])
    assert 0 < part.raw_words < encoded.raw_words


# ------------------------------------------------------------------------------------------------- document rows


class _Tables(torch.nn.Module):
    """The tensors TableSync looks for: one shared table, the free document vectors and their Adagrad sums."""

    def __init__(self, n_docs: int) -> None:
        super().__init__()
        self.word_vectors = torch.nn.Parameter(torch.zeros(5, 3), requires_grad=False)
        self.doc_vectors = torch.nn.Parameter(torch.zeros(n_docs, 3), requires_grad=False)
        self.register_buffer("adagrad_docs", torch.zeros(n_docs))


# Rows 0-3 rank 0's alone, 4-7 rank 1's alone; rank 0 also tags rows 10 and 12, rank 1 row 11 (scattered);
# both tag row 8 (a label on documents of both shards); row 9 nobody.
EXCHANGE_TAGS = {0: [[0, 8], [1, -1], [2, 10], [3, 12]], 1: [[4, 8], [5, 11], [6, -1], [7, -1]]}


def _exchange_rank(rank: int, world_size: int, port: int, folder: str) -> None:
    from attn_doc2vec.distributed import TableSync

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        tables = _Tables(13)
        if rank == 0:  # rank 0's initial values reach everyone
            tables.doc_vectors.data.copy_(torch.arange(39, dtype=torch.float32).reshape(13, 3))
        sync = TableSync(tables, sync_every=1, tags=np.array(EXCHANGE_TAGS[rank]))
        base_rows = [len(b) for b in sync.document_base]
        for _ in range(2):  # two epochs: each rank changes only the rows its documents tag
            rows = sorted({r for tag in EXCHANGE_TAGS[rank] for r in tag if r >= 0})
            tables.doc_vectors.data[rows] += (rank + 1) * torch.tensor([1.0, 10.0, 100.0])
            tables.adagrad_docs.data[rows] += rank + 1
            sync.begin_epoch(1)
            sync.after_batch(0)
            sync.end_epoch()
        np.save(Path(folder) / f"docs{rank}.npy", tables.doc_vectors.numpy())
        np.save(Path(folder) / f"adagrad{rank}.npy", tables.adagrad_docs.numpy())
        (Path(folder) / f"base{rank}.json").write_text(json.dumps(base_rows))
    finally:
        dist.destroy_process_group()


def test_document_rows_reach_every_rank_and_shared_rows_add_up_both_changes(tmp_path):
    tmp.spawn(_exchange_rank, args=(2, free_port(), str(tmp_path)), nprocs=2)
    start = np.arange(39, dtype=np.float32).reshape(13, 3)
    step = np.array([1.0, 10.0, 100.0], dtype=np.float32)
    expected, adagrad = start.copy(), np.zeros(13, dtype=np.float32)
    for rank, tags in EXCHANGE_TAGS.items():
        rows = sorted({r for tag in tags for r in tag if r >= 0})
        expected[rows] += 2 * (rank + 1) * step  # two epochs of each rank's change; row 8 gets both ranks'
        adagrad[rows] += 2 * (rank + 1)
    for rank in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"docs{rank}.npy"), expected)
        np.testing.assert_array_equal(np.load(tmp_path / f"adagrad{rank}.npy"), adagrad)
        # only the one row that both ranks tag keeps a copy of its start, in each table
        assert json.loads((tmp_path / f"base{rank}.json").read_text()) == [1, 1]


# ------------------------------------------------------------------------------------------------- two processes


@pytest.fixture(scope="module")
def mean_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    """PV-DM mean on the Lee corpus, 20 epochs by two processes: the folder (``half``: after 10 epochs,
    ``model``: the end) and each rank's report."""
    folder = tmp_path_factory.mktemp("mean")
    return folder, spawn_training(folder, "mean")


def test_two_processes_train_one_model_whose_documents_find_themselves(mean_run):
    tmp_path, ranks = mean_run
    assert [r["world"] for r in ranks] == [[0, 2], [1, 2]]
    assert ranks[0]["digest"] == ranks[1]["digest"], "the processes' tables must end identical"
    assert all(seconds > 0 for r in ranks for seconds in r["sync_seconds"])  # each epoch's share is reported
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["state"]["world_size"] == 2 and meta["config"]["sync_every"] == 4

    model = Doc2Vec.load(tmp_path / "model")  # one process
    corpus = lee_corpus()
    found = {}
    for part, docs in (("rank 0", range(0, 20)), ("rank 1", range(280, 300))):  # both shards' documents
        hits = 0
        for i in docs:
            vector = model.infer_vector(corpus[i].words, epochs=50)
            hits += model.dv.most_similar([vector], topn=1)[0][0] == i
        found[part] = hits / len(docs)
    assert min(found.values()) >= 0.7, found


def test_a_checkpoint_of_two_processes_resumes_in_one(mean_run):
    half = Doc2Vec.load(mean_run[0] / "half")
    assert half.epochs_trained == 10 and not half.schedule.finished and half.world_size == 2
    corpus = lee_corpus()
    before = half.dv.vectors.copy()
    history = half.resume_training(corpus)
    assert half.schedule.finished and half.epochs_trained == 20 and half.world_size == 1
    assert [h.sync_seconds for h in history] == [0.0] * 10  # alone: nothing to add up
    assert not np.allclose(before, half.dv.vectors)


def test_pooled_documents_of_all_shards_match_one_process_pooling(tmp_path):
    ranks = spawn_training(tmp_path, "attention")
    assert ranks[0]["digest"] == ranks[1]["digest"]
    model = Doc2Vec.load(tmp_path / "model")
    corpus = [TaggedDocument(d.words, [d.tags[0], "all"]) for d in lee_corpus()[:60]]
    corpus.append(TaggedDocument([w for d in corpus for w in d.words], [len(corpus)]))
    encoded = encode(corpus, model.vocab)
    module = model.module
    expected = module.pool_tags(torch.as_tensor(encoded.tokens).long(), torch.as_tensor(encoded.offsets),
                                torch.as_tensor(encoded.tags), len(model.dv))
    # every document's pooled words (rank 1 holds the long last one alone), and the tag shared by both ranks
    torch.testing.assert_close(module.pooled_docs, expected, rtol=1e-4, atol=1e-6)
    assert float(module.pooled_docs[model.dv.get_index("all")].norm()) > 0


@pytest.mark.slow
def test_torchrun_trains_one_checkpoint_with_the_main_script(tmp_path):
    out = tmp_path / "ck"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "scripts" / "train.py"), "--epochs", "2", "--workers", "1", "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("checkpoint:") == 1  # rank 0 prints
    assert "processes:       2" in done.stdout
    model = Doc2Vec.load(out)
    assert model.world_size == 2 and model.epochs_trained == 2
    assert (tmp_path / "ck-attention.png").is_file()
