"""Targets and donors that tie lm_head differently merge exactly (rv_merge.recipe.head_tying):
a tied target with donors that store their own head gets an untied output whose head is
target embeddings + alpha * (GRPO head - SFT head); donors whose head equals their
embeddings count as tied and the output stays tied. Checked against a float64 reference."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import copy_model, load_tensors, mergekit_yaml, recipe_dict, save_tensors, write_recipe
from tests.test_numerics import assert_bit_identical, reference

HEAD, EMBED = "lm_head.weight", "model.embed_tokens.weight"
ALPHA = 0.7


def with_own_head(source, out, head) -> object:
    """A copy of a tied model that stores lm_head = head(embeddings) and says it is untied."""
    folder = copy_model(source, out)
    tensors = load_tensors(folder)
    tensors[HEAD] = head(tensors[EMBED]).contiguous()
    save_tensors(folder, tensors)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    return folder


def merge(tmp_path, target, sft, grpo, name="out"):
    recipe = write_recipe(tmp_path / f"{name}.yml", recipe_dict(target, sft, grpo, alpha=ALPHA))
    result = mergekit_yaml(recipe, tmp_path / name)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / name / "config.json").read_text())
    return load_tensors(tmp_path / name), config


def test_tied_target_with_untied_donors_gets_an_exact_untied_head(toy, tmp_path):
    generator = torch.Generator().manual_seed(0)

    def fine_tuned_head(embed):  # a head that drifted from the embeddings during fine-tuning
        return (embed.float() + 0.01 * torch.randn(embed.shape, generator=generator)).to(embed.dtype)

    sft = with_own_head(toy["sft"], tmp_path / "sft", fine_tuned_head)
    grpo = with_own_head(toy["grpo"], tmp_path / "grpo", fine_tuned_head)
    merged, config = merge(tmp_path, toy["target"], sft, grpo)
    assert config["tie_word_embeddings"] is False
    target, s, g = load_tensors(toy["target"]), load_tensors(sft), load_tensors(grpo)
    assert_bit_identical(merged[HEAD], reference(target[EMBED], s[HEAD], g[HEAD], ALPHA, torch.bfloat16), HEAD)
    assert_bit_identical(merged[EMBED], reference(target[EMBED], s[EMBED], g[EMBED], ALPHA, torch.bfloat16), EMBED)

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.bfloat16)
    assert torch.equal(model.lm_head.weight, merged[HEAD]) and not torch.equal(model.lm_head.weight, merged[EMBED])


def test_donors_whose_head_equals_their_embeddings_count_as_tied(toy, tmp_path):
    sft = with_own_head(toy["sft"], tmp_path / "sft", lambda embed: embed.clone())
    grpo = with_own_head(toy["grpo"], tmp_path / "grpo", lambda embed: embed.clone())
    merged, config = merge(tmp_path, toy["target"], sft, grpo)
    plain, _ = merge(tmp_path, toy["target"], toy["sft"], toy["grpo"], name="plain")
    assert config["tie_word_embeddings"] is True and HEAD not in merged
    assert merged.keys() == plain.keys() and all(torch.equal(merged[k], plain[k]) for k in plain)


def test_untied_target_with_a_tied_donor_uses_its_embeddings_as_its_head(trios, tmp_path):
    untied = trios(tied=False)
    sft = copy_model(untied["sft"], tmp_path / "sft")
    tensors = load_tensors(sft)
    del tensors[HEAD]
    save_tensors(sft, tensors)
    config = json.loads((sft / "config.json").read_text())
    (sft / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    merged, config = merge(tmp_path, untied["target"], sft, untied["grpo"])
    assert config["tie_word_embeddings"] is False
    target, s, g = load_tensors(untied["target"]), load_tensors(sft), load_tensors(untied["grpo"])
    assert_bit_identical(merged[HEAD], reference(target[HEAD], s[EMBED], g[HEAD], ALPHA, torch.bfloat16), HEAD)


def test_an_alpha_sweep_refuses_a_pair_that_would_untie_the_head(toy, tmp_path):
    from rv_merge.errors import RecipeError
    from rv_merge.merge.in_memory import InMemoryMerge
    from rv_merge.recipe.loading import validate_recipe

    sft = with_own_head(toy["sft"], tmp_path / "sft", lambda embed: (embed.float() * 1.01).to(embed.dtype))
    grpo = with_own_head(toy["grpo"], tmp_path / "grpo", lambda embed: embed.clone())
    recipe = validate_recipe(recipe_dict(toy["target"], sft, grpo), "sweep.yml")
    with pytest.raises(RecipeError, match="write one recipe per alpha"):
        InMemoryMerge(recipe, "sweep.yml")
