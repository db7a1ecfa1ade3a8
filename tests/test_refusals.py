"""Every bad input ends plain `mergekit-yaml` with one error line, a non-zero exit, and no
output folder (or the earlier one untouched). Each case runs the real console script."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from rv_merge.demo.toy_models import build_tokenizer
from tests.conftest import (
    OFFLINE_ENV,
    copy_model,
    load_tensors,
    mergekit_yaml,
    recipe_dict,
    save_tensors,
    write_recipe,
)


def assert_refused(result, out, fragment: str, names: str | None = None) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0], errors[0]
    if names:
        assert names in errors[0], errors[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".rv-staging-" in p.name]


# ------------------------------------------------------------------- recipe keys and values


def _rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


RECIPE_CASES = {
    "misspelled alpha": (lambda r: _rename(r["parameters"], "alpha", "alhpa"),
                         "unknown key `parameters.alhpa`; did you mean `alpha`?"),
    "misspelled top-level key": (lambda r: _rename(r, "dtype", "dtpye"),
                                 "unknown key `dtpye`; did you mean `dtype`?"),
    "unknown key in a model": (lambda r: r["models"][0].update(weight=1.0),
                               "unknown key `models.0.weight`"),
    "missing role": (lambda r: r["models"][1]["parameters"].pop("role"), "models[1] has role None"),
    "duplicated role": (lambda r: r["models"][1]["parameters"].update(role="sft"),
                        "`models` has roles ['sft', 'sft']"),
    "no base_model": (lambda r: r.pop("base_model"), "no `base_model`"),
    "third donor": (lambda r: r["models"].append(dict(r["models"][0])), "has roles ['sft', 'grpo', 'sft']"),
    "vector next to the pair": (lambda r: r["models"].append({"model": "v", "parameters": {"role": "vector"}}),
                                "has roles ['sft', 'grpo', 'vector']"),
    "sign 2": (lambda r: r["parameters"].update(sign=2), "sign must be the integer 1 (add the vector) or -1"),
    "sign 1.0 (a float)": (lambda r: r["parameters"].update(sign=1.0), "sign must be the integer 1"),
    "sign '1' (a string)": (lambda r: r["parameters"].update(sign="1"), "sign must be the integer 1"),
    "eval.think a string": (lambda r: r.update(eval={"think": "yes"}),
                            "key `eval.think`: Input should be a valid boolean, got 'yes'"),
    "eval.seed a string": (lambda r: r.update(eval={"seed": "42"}),
                           "key `eval.seed`: Input should be a valid integer, got '42'"),
    "sft and grpo the same folder": (lambda r: r["models"][1].update(model=r["models"][0]["model"]),
                                     "sft and grpo are the same folder"),
    "alpha not a number": (lambda r: r["parameters"].update(alpha="high"), "alpha must be a number"),
    "alpha NaN": (lambda r: r["parameters"].update(alpha=math.nan), "alpha must be finite"),
    "alpha Inf in a gradient": (lambda r: r["parameters"].update(alpha=[0.0, math.inf]),
                                "alpha[1] must be finite"),
    "alpha missing": (lambda r: r["parameters"].pop("alpha"), "missing required key `parameters.alpha`"),
    "out_dtype": (lambda r: r.update(out_dtype="float32"), "key `out_dtype`"),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_bad_recipe_is_refused_naming_file_and_key(toy, tmp_path, case):
    mutate, fragment = RECIPE_CASES[case]
    recipe = recipe_dict(toy["target"], toy["sft"], toy["grpo"])
    mutate(recipe)
    path = write_recipe(tmp_path / "recipe.yml", recipe)
    result = mergekit_yaml(path, tmp_path / "out")
    assert_refused(result, tmp_path / "out", fragment, names=str(path))


def test_duplicate_yaml_key_is_refused(toy, tmp_path):
    text = write_recipe(tmp_path / "x.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"])).read_text()
    path = write_recipe(tmp_path / "recipe.yml", text + "dtype: float32\n")
    assert_refused(mergekit_yaml(path, tmp_path / "out"), tmp_path / "out", "key `dtype` appears twice")


# ------------------------------------------------------------------- the models


def _edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _set_value(folder, name, value):
    tensors = load_tensors(folder)
    tensors[name].view(-1)[5] = value
    save_tensors(folder, tensors)


def case_architecture(trios, tmp):
    t = trios()
    sft = copy_model(t["sft"], tmp / "sft")
    _edit_config(sft, architectures=["Qwen2ForSequenceClassification"])
    return (t["target"], sft, t["grpo"]), "config `architectures` differs", "sft"


def case_layer_count(trios, tmp):
    t = trios()
    return (t["target"], trios(layers=3)["sft"], t["grpo"]), "config `num_hidden_layers` differs", "has 2, sft"


def case_shape(trios, tmp):
    t = trios()
    return (t["target"], t["sft"], trios(hidden_size=48)["grpo"]), "the models must have the same size", "shape"


def case_tensor_names(trios, tmp):
    t = trios()
    sft = copy_model(t["sft"], tmp / "sft")
    tensors = load_tensors(sft)
    del tensors["model.layers.0.self_attn.q_proj.bias"]
    save_tensors(sft, tensors)
    return (t["target"], sft, t["grpo"]), "lacks model.layers.0.self_attn.q_proj.bias", "tensor names differ"


def case_token_ids(trios, tmp):
    t = trios()
    sft = copy_model(t["sft"], tmp / "sft")
    build_tokenizer(sft, corpus_seed=1)  # same size, other merges: other token-to-id mapping
    return (t["target"], sft, t["grpo"]), "add `tokenizer_source: base`", "tokenizers differ"


def case_vocab_size(trios, tmp):
    t = trios()
    return (t["target"], trios(vocab_size=330)["sft"], t["grpo"]), "add `tokenizer_source: base`", "model.embed_tokens.weight"


def case_config_disagrees_with_weights(trios, tmp):
    u = trios(tied=False)
    target = copy_model(u["target"], tmp / "target")
    _edit_config(target, tie_word_embeddings=True)
    return (target, u["sft"], u["grpo"]), "config says tie_word_embeddings: true", "target"


def case_nan(trios, tmp):
    t = trios()
    grpo = copy_model(t["grpo"], tmp / "grpo")
    _set_value(grpo, "model.layers.1.mlp.up_proj.weight", float("nan"))
    return (t["target"], t["sft"], grpo), "contains NaN or Inf", "model.layers.1.mlp.up_proj.weight"


def case_inf(trios, tmp):
    t = trios()
    target = copy_model(t["target"], tmp / "target")
    _set_value(target, "model.norm.weight", float("inf"))
    return (target, t["sft"], t["grpo"]), "contains NaN or Inf", "model.norm.weight"


def case_missing_folder(trios, tmp):
    t = trios()
    return (t["target"], tmp / "nowhere", t["grpo"]), "does not exist", "nowhere"


def case_missing_tokenizer(trios, tmp):
    t = trios()
    sft = copy_model(t["sft"], tmp / "sft")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (sft / name).unlink()
    return (t["target"], sft, t["grpo"]), "cannot load its tokenizer", "sft"


def case_unreadable_tokenizer(trios, tmp):
    t = trios()
    grpo = copy_model(t["grpo"], tmp / "grpo")
    (grpo / "tokenizer.json").write_text("{not json")
    return (t["target"], t["sft"], grpo), "cannot load its tokenizer", "grpo"


def case_pickle(trios, tmp):
    t = trios()
    sft = copy_model(t["sft"], tmp / "sft")
    torch.save(load_tensors(sft), sft / "pytorch_model.bin")
    (sft / "model.safetensors").unlink()
    return (t["target"], sft, t["grpo"]), "only pickled weights (pytorch_model.bin)", "RV_MERGE_ALLOW_PICKLE=1"


def case_uncached_hub_id(trios, tmp):
    t = trios()
    return ("Qwen/Qwen2.5-1.5B-Instruct", t["sft"], t["grpo"]), "not in the Hugging Face cache", "offline"


MODEL_CASES = {f.__name__.removeprefix("case_"): f for f in [
    case_architecture, case_layer_count, case_shape, case_tensor_names, case_token_ids,
    case_vocab_size,
    case_config_disagrees_with_weights, case_nan, case_inf, case_missing_folder,
    case_missing_tokenizer, case_unreadable_tokenizer, case_pickle, case_uncached_hub_id,
]}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_incompatible_models_are_refused(trios, tmp_path, case):
    (target, sft, grpo), fragment, names = MODEL_CASES[case](trios, tmp_path)
    recipe = write_recipe(tmp_path / "recipe.yml", recipe_dict(target, sft, grpo))
    # The Hub id case gets an empty Hugging Face cache of its own: this machine's cannot answer it.
    env = {**OFFLINE_ENV, "HF_HOME": str(tmp_path / "hf-home")} if case == "uncached_hub_id" else None
    assert_refused(mergekit_yaml(recipe, tmp_path / "out", env=env), tmp_path / "out", fragment, names)


def test_failed_merge_leaves_the_earlier_output_untouched(trios, tmp_path):
    (target, sft, grpo), _, _ = case_nan(trios, tmp_path)
    good = trios()
    out = tmp_path / "out"
    earlier = mergekit_yaml(write_recipe(tmp_path / "good.yml", recipe_dict(good["target"], good["sft"], good["grpo"])),
                            out)
    assert earlier.returncode == 0, earlier.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = mergekit_yaml(write_recipe(tmp_path / "r.yml", recipe_dict(target, sft, grpo)), out)
    assert result.returncode != 0 and "NaN" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier merge, byte for byte
    assert not [p for p in tmp_path.iterdir() if ".rv-staging-" in p.name]


def test_token_alignment_is_an_explicit_opt_in(trios, tmp_path):
    (target, sft, grpo), _, _ = case_token_ids(trios, tmp_path)
    recipe = recipe_dict(target, sft, grpo)
    recipe["tokenizer_source"] = "base"
    result = mergekit_yaml(write_recipe(tmp_path / "r.yml", recipe), tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "tokenizer.json").is_file()


def test_pickled_weights_merge_when_opted_in(trios, tmp_path):
    (target, sft, grpo), _, _ = case_pickle(trios, tmp_path)
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(target, sft, grpo))
    result = mergekit_yaml(recipe, tmp_path / "out", env={**OFFLINE_ENV, "RV_MERGE_ALLOW_PICKLE": "1"})
    assert result.returncode == 0, result.stderr
    safe = trios()
    reference = mergekit_yaml(write_recipe(tmp_path / "s.yml", recipe_dict(safe["target"], safe["sft"], safe["grpo"])),
                              tmp_path / "safe")
    assert reference.returncode == 0
    merged, expected = load_tensors(tmp_path / "out"), load_tensors(tmp_path / "safe")
    assert all(torch.equal(merged[k], expected[k]) for k in expected)


def test_ambiguous_relative_path_is_refused(toy, tmp_path):
    os.symlink(toy["sft"].parent, tmp_path / "toy")
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(toy["target"], "toy/sft", toy["grpo"]))
    result = mergekit_yaml(recipe, tmp_path / "out", cwd=tmp_path)
    assert_refused(result, tmp_path / "out", "write `./toy/sft` for the folder")
