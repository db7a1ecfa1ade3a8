"""The tokenizer check loads each distinct set of tokenizer files once, and only byte-identical
files count as the same: a difference outside tokenizer.json still gets its own load."""

from __future__ import annotations

import json

import pytest

from rv_merge.errors import CompatibilityError
from rv_merge.recipe.vocabulary_check import check_tokenizers
from tests.conftest import copy_model


@pytest.fixture
def loads(monkeypatch):
    """The folders AutoTokenizer.from_pretrained was called on, in order."""
    from transformers import AutoTokenizer

    called = []
    original = AutoTokenizer.from_pretrained
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda path, **kwargs: called.append(path)
                        or original(path, **kwargs))
    return called


def test_a_pair_with_the_targets_tokenizer_files_is_checked_with_one_load(toy, loads):
    line = check_tokenizers({"target": toy["target"], "sft": toy["sft"], "grpo": toy["grpo"]}, "r.yml", False)
    assert line == "ok   tokenizers load and map all 320 tokens to the same ids"
    assert loads == [toy["target"]]


def test_an_added_token_in_tokenizer_config_alone_is_seen(toy, loads, tmp_path):
    """Same tokenizer.json, one more special token declared in tokenizer_config.json: the SFT
    model's ids differ from the target's (one token more), and the check must say so."""
    sft = copy_model(toy["sft"], tmp_path / "sft")
    config = json.loads((sft / "tokenizer_config.json").read_text())
    config["extra_special_tokens"] = ["<|rv_extra|>"]
    (sft / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(CompatibilityError, match=r"token '<\|rv_extra\|>' is id None in target but 320 in sft"):
        check_tokenizers({"target": toy["target"], "sft": sft, "grpo": toy["grpo"]}, "r.yml", False)
    assert loads == [toy["target"], sft]
