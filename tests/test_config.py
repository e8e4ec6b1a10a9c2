"""Doc2VecConfig: defaults, validation messages that echo the bad value, dict round trips."""

from __future__ import annotations

import json
import re

import pytest

from attn_doc2vec.config import Doc2VecConfig, config_fields


def test_defaults_are_gensims() -> None:
    cfg = Doc2VecConfig().validate()
    assert (cfg.vector_size, cfg.dm, cfg.window, cfg.min_count, cfg.sample, cfg.negative) == (100, 1, 5, 5, 1e-3, 5)
    assert (cfg.ns_exponent, cfg.min_alpha, cfg.epochs) == (0.75, 0.0001, 10)
    assert cfg.context == "attention"
    # alpha: gensim's 0.025 for the SGD designs; 0.1 for the designs trained with row-wise Adagrad
    assert cfg.alpha == 0.1
    assert Doc2VecConfig(context="mean").validate().alpha == Doc2VecConfig(dm=0).validate().alpha == 0.025
    assert Doc2VecConfig(alpha=0.3).validate().alpha == 0.3


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("window", 0, r"'window' parameter must be an int >= 1\. Got 0 instead"),
        ("vector_size", -1, r"'vector_size' parameter must be an int >= 1\. Got -1 instead"),
        ("vector_size", 16.0, r"'vector_size'.*int.*Got 16\.0 instead"),
        ("vector_size", True, r"'vector_size'.*Got True instead"),
        ("dm", 2, r"'dm' parameter must be 1 \(PV-DM\) or 0 \(PV-DBOW\)\. Got 2 instead"),
        ("context", "max", r"'context' parameter must be one of 'attention', 'docquery', 'docloss', 'mean', 'sum', "
                    r"'wordpos', 'concat'\. Got 'max' "),
        ("alpha", 0, r"'alpha' parameter must be a number > 0.*Got 0 instead"),
        ("alpha", float("nan"), r"'alpha'.*Got nan instead"),
        ("negative", 0, r"either 'hs' or 'negative' to be positive.*nothing predicts the target"),
        ("negative", -2, r"'negative' parameter must be an int >= 0\. Got -2 instead"),
        ("hs", 2, r"'hs' parameter must be 0 \(negative sampling\) or 1 \(hierarchical softmax\)\. Got 2 instead"),
        ("dm_tag_count", 0, r"'dm_tag_count' parameter must be an int >= 1\. Got 0 instead"),
        ("shrink_windows", 1, r"'shrink_windows' parameter must be True or False\. Got 1 instead"),
        ("batch_words", 0, r"'batch_words' parameter must be an int >= 1\. Got 0 instead"),
        ("dbow_words", 2, r"'dbow_words' parameter must be 0 or 1 \(1: also train word vectors.*Got 2 instead"),
        ("sorted_vocab", "yes", r"'sorted_vocab' parameter must be 0 or 1.*Got 'yes' instead"),
        ("comment", 3, r"'comment' parameter must be a string or None\. Got 3 instead"),
        ("min_count", 0, r"'min_count'.*Got 0 instead"),
        ("sample", -0.1, r"'sample'.*>= 0.*Got -0\.1 instead"),
        ("epochs", 0, r"'epochs'.*Got 0 instead"),
        ("seed", -5, r"'seed'.*Got -5 instead"),
        ("batch_size", 0, r"'batch_size'.*Got 0 instead"),
        ("max_vocab_size", 0, r"'max_vocab_size'.*or None.*Got 0 instead"),
        ("max_final_vocab", "10", r"'max_final_vocab'.*Got '10' instead"),
        ("workers", 0, r"'workers'.*Got 0 instead"),
        ("ns_exponent", "x", r"'ns_exponent'.*number.*Got 'x' instead"),
        ("attention_alpha", -1.0, r"'attention_alpha'.*Got -1\.0 instead"),
        ("device", "", r"'device'.*Got '' instead"),
        ("backend", "jax", r"'backend' parameter must be one of 'auto', 'torch', 'numba'\. Got 'jax' instead"),
        ("row_update_cap", 0, r"'row_update_cap'.*int >= 1\. Got 0 instead"),
        ("pool_exclude", "token", r"'pool_exclude' parameter must be 'position' or 'word'\. Got 'token' instead"),
        ("pool_exclude", "word", r"pool_exclude='word'.*pool_group=8 shares one sample.*set pool_group=1"),
        ("pool_values", "separate", r"'pool_values' parameter must be 'shared' or 'own'\. Got 'separate' instead"),
    ],
)
def test_invalid_value_is_named_and_echoed(name: str, value, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Doc2VecConfig(**{name: value}).validate()


@pytest.mark.parametrize("other, words", [
    (dict(update_rule="example"), r"pool_values='own' needs update_rule='batch'.*set update_rule='batch'"),
    (dict(context_scores="shared"), r"pool_values='own'.*context_scores='shared'.*use context_scores='word'"),
])
def test_own_pool_values_refuse_what_they_cannot_train(other: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Doc2VecConfig(pool_values="own", **other).validate()
    Doc2VecConfig(pool_values="shared", **other).validate()


def test_gensims_switches_take_bools_and_are_stored_as_ints() -> None:
    cfg = Doc2VecConfig(dm=0, dbow_words=True, sorted_vocab=False, comment="run 3").validate()
    assert (cfg.dbow_words, cfg.sorted_vocab, cfg.comment) == (1, 0, "run 3")
    assert type(cfg.dbow_words) is int and type(cfg.sorted_vocab) is int
    assert Doc2VecConfig(dm=1, dbow_words=1).validate().dbow_words == 1  # accepted and ignored, as gensim


def test_min_alpha_above_alpha_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'min_alpha' parameter must not exceed 'alpha' \(0\.01\)\. Got 0\.1 instead"):
        Doc2VecConfig(alpha=0.01, min_alpha=0.1).validate()


def test_optional_limits_accept_none_and_negative_ns_exponent() -> None:
    cfg = Doc2VecConfig(max_vocab_size=None, max_final_vocab=None, workers=None, ns_exponent=-0.5).validate()
    assert cfg.ns_exponent == -0.5


def test_dict_round_trip_through_json() -> None:
    cfg = Doc2VecConfig(vector_size=7, context="sum", window=3, max_final_vocab=50, device="cpu").validate()
    again = Doc2VecConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert list(cfg.to_dict()) == [f.name for f in config_fields()]


def test_from_dict_refuses_unknown_keys_and_bad_values() -> None:
    values = Doc2VecConfig().to_dict() | {"temperature": 2.0}
    with pytest.raises(ValueError, match=re.escape("Unknown configuration keys ['temperature']") + ".*upgrade"):
        Doc2VecConfig.from_dict(values)
    with pytest.raises(ValueError, match="Got 0 instead"):
        Doc2VecConfig.from_dict(Doc2VecConfig().to_dict() | {"window": 0})


def test_replace_validates_and_leaves_the_original() -> None:
    cfg = Doc2VecConfig()
    assert cfg.replace(window=2).window == 2
    assert cfg.window == 5
    with pytest.raises(ValueError, match="'window'.*Got -3 instead"):
        cfg.replace(window=-3)
