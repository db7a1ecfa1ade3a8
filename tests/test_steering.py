"""Per-layer steering vectors on tiny random Llama and Qwen2 models: hooks and folding agree,
a zero vector changes nothing, layer indices survive every export, bad input is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rv_merge.demo.toy_models import build_tokenizer
from rv_merge.errors import CompatibilityError, DataError, VectorFileError
from rv_merge.steering.apply import fold_into_model, steered
from rv_merge.steering.artifact import load_vectors, new_vectors, save_vectors
from rv_merge.steering.exports import export_control_vector, export_lm_eval_steered, export_numpy
from rv_merge.steering.extract import extract_increments

LAYERS, HIDDEN = 4, 32
PROMPTS = ["Q: Ana has 3 apples and buys 4 more. How many?\nA:", "Q: 12 + 7?\nA:", "Q: Ben reads 5 pages.\nA:"]


def _build(folder: Path, kind: str = "llama", seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(folder)
    sizes = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = (LlamaForCausalLM(LlamaConfig(**sizes)) if kind == "llama" else Qwen2ForCausalLM(Qwen2Config(**sizes)))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("steer") / "llama")


def _random_vectors(model: Path, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return new_vectors(model, 0.5 * torch.randn(LAYERS, HIDDEN, generator=generator), {"method": "test"})


def _logits(folder: Path, steering=None, scale=1.0, layers=None) -> torch.Tensor:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = AutoTokenizer.from_pretrained(folder)(PROMPTS[0], return_tensors="pt")
    with torch.inference_mode():
        if steering is None:
            return model(**ids).logits
        with steered(model, steering, scale, layers):
            return model(**ids).logits


def test_folded_and_hooked_logits_agree(llama, tmp_path):
    steering = _random_vectors(llama)
    for scale, layers in ((1.0, None), (-0.7, (1, 2))):
        out = tmp_path / f"folded{scale}"
        fold_into_model(llama, steering, out, scale, layers)
        hooked, folded = _logits(llama, steering, scale, layers), _logits(out)
        assert torch.allclose(hooked, folded, atol=1e-4, rtol=0), float((hooked - folded).abs().max())
        assert not torch.allclose(hooked, _logits(llama), atol=1e-3)  # the vectors do something


def test_a_zero_vector_leaves_the_model_bit_identical(llama, tmp_path):
    zero = new_vectors(llama, torch.zeros(LAYERS, HIDDEN), {"method": "test"})
    plain = _logits(llama)
    assert torch.equal(_logits(llama, zero), plain)
    fold_into_model(llama, zero, tmp_path / "folded", 1.0)
    assert torch.equal(_logits(tmp_path / "folded"), plain)


def test_the_artifact_round_trips_and_refuses_bad_vectors(llama, tmp_path):
    steering = _random_vectors(llama)
    save_vectors(steering, tmp_path / "v", llama)
    again = load_vectors(tmp_path / "v")
    assert torch.equal(again.vectors, steering.vectors) and again.metadata == steering.metadata
    assert again.metadata["layers"] == LAYERS and "model.layers[l]" in again.metadata["layer_indexing"]
    assert (tmp_path / "v" / "config.json").is_file()
    with pytest.raises(VectorFileError, match="do not fit"):
        new_vectors(llama, torch.zeros(LAYERS + 1, HIDDEN), {})
    with pytest.raises(VectorFileError, match="NaN"):
        new_vectors(llama, torch.full((LAYERS, HIDDEN), float("nan")), {})


def test_layer_indices_survive_every_export(llama, tmp_path):
    from gguf import GGUFReader

    steering = _random_vectors(llama)
    notes = export_control_vector(steering, tmp_path / "v.gguf", scale=2.0)
    assert notes and "layer 0" in notes[0]
    reader = GGUFReader(str(tmp_path / "v.gguf"))
    fields = {name: field for name, field in reader.fields.items()}
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "controlvector"
    assert int(fields["controlvector.layer_count"].parts[-1][0]) == LAYERS - 1
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert sorted(tensors) == [f"direction.{i}" for i in range(1, LAYERS)]
    for i in range(1, LAYERS):
        assert np.array_equal(tensors[f"direction.{i}"], (2.0 * steering.vectors[i].double()).float().numpy())

    export_numpy(steering, tmp_path / "v.npy")
    assert np.array_equal(np.load(tmp_path / "v.npy"), steering.vectors.numpy())

    export_lm_eval_steered(steering, tmp_path / "v.pt", scale=-0.5)
    config = torch.load(tmp_path / "v.pt", weights_only=True)
    assert sorted(config) == sorted(f"layers.{i}" for i in range(LAYERS))
    assert all(torch.equal(config[f"layers.{i}"]["steering_vector"], steering.vectors[i]) for i in range(LAYERS))


def test_lm_eval_steered_model_matches_our_hooks(llama, tmp_path):
    """lm-eval's own `steered` model, loading our export, computes what rv's hooks compute."""
    from lm_eval.models.hf_steered import SteeredModel

    steering = _random_vectors(llama)
    export_lm_eval_steered(steering, tmp_path / "v.pt", scale=0.8)
    lm = SteeredModel(pretrained=str(llama), steer_path=str(tmp_path / "v.pt"), device="cpu", dtype="float32")
    ids = lm.tokenizer(PROMPTS[1], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        theirs = lm._model_call(ids)
    assert torch.allclose(theirs, _logits_for(llama, steering, 0.8, PROMPTS[1]), atol=1e-5, rtol=0)


def _logits_for(folder, steering, scale, prompt):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = AutoTokenizer.from_pretrained(folder)(prompt, return_tensors="pt")
    with torch.inference_mode(), steered(model, steering, scale):
        return model(**ids).logits


def test_qwen2_gets_hooks_and_a_clear_refusal_to_fold(tmp_path):
    qwen = _build(tmp_path / "qwen", "qwen2")
    steering = _random_vectors(qwen)
    assert not torch.allclose(_logits(qwen, steering), _logits(qwen), atol=1e-3)
    with pytest.raises(CompatibilityError, match="no MLP bias"):
        fold_into_model(qwen, steering, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extracted_increments_move_the_base_toward_the_tuned_model(llama, tmp_path):
    from rv_merge.steering.extract import mean_layer_outputs

    shift = _random_vectors(llama, seed=3)
    fold_into_model(llama, shift, tmp_path / "tuned", 1.0)  # a known "tuning": a shift at each layer
    steering = extract_increments(llama, tmp_path / "tuned", PROMPTS)
    # layer 0 sees the same input in both models, so its increment is exactly the shift
    assert torch.allclose(steering.vectors[0], shift.vectors[0], atol=1e-5)
    fold_into_model(llama, steering, tmp_path / "steered", 1.0)
    tuned, base, moved = (mean_layer_outputs(tmp_path / name, PROMPTS) if name else mean_layer_outputs(llama, PROMPTS)
                          for name in ("tuned", "", "steered"))
    assert (moved - tuned).norm(dim=1).max() < 0.5 * (base - tuned).norm(dim=1).min()
    with pytest.raises(DataError, match="zero"):
        extract_increments(llama, llama, PROMPTS)


def test_rv_steer_commands_end_to_end(llama, tmp_path, capsys):
    import json

    from rv_merge.cli import main

    tuned = tmp_path / "tuned"
    fold_into_model(llama, _random_vectors(llama, seed=5), tuned, 1.0)
    prompts = tmp_path / "q.jsonl"
    prompts.write_text("".join(json.dumps({"question": p.split("\n")[0][3:]}) + "\n" for p in PROMPTS))
    out = tmp_path / "v"
    assert main(["steer", "extract", "--base", str(llama), "--tuned", str(tuned), "--prompts", str(prompts),
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["steer", "info", str(out), "--prompts", str(prompts), "--json", "--plot", str(tmp_path / "i.png")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in rows] == list(range(LAYERS))
    assert all(r["norm"] > 0 and r["relative_to_residual"] > 0 and len(r["top_tokens"]) == 5 for r in rows)
    assert rows[0]["cosine_with_previous"] is None and -1 <= rows[1]["cosine_with_previous"] <= 1
    assert main(["steer", "export", str(out), str(tmp_path / "v.gguf"), "--scale", "2"]) == 0
    assert main(["steer", "export", str(out), str(tmp_path / "v.gguf")]) == 2  # never overwrites
    assert main(["steer", "export", str(out), str(tmp_path / "v.txt")]) == 2
    assert main(["steer", "fold", str(out), str(llama), str(tmp_path / "folded"), "--layers", "1-2"]) == 0
    assert main(["steer", "fold", str(out), str(llama), str(tmp_path / "f2"), "--layers", "2-9"]) == 2
    assert not (tmp_path / "f2").exists()
    assert (tmp_path / "i.png").stat().st_size > 1000
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1 + 1?", "answer": "2"}\n')  # no "#### N"
    assert main(["steer", "train", "--model", str(llama), "--problems", str(bad), "--out", str(tmp_path / "t")]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err and not (tmp_path / "t").exists()


def test_training_moves_only_the_steering_vectors(llama, tmp_path):
    """Two GRPO steps on the tiny model with a reward that varies (completion length): the
    optimizer holds exactly L x d numbers, the vectors move, and the model's weights do not
    (train_steering checks both and raises otherwise)."""
    from safetensors.torch import load_file

    from rv_merge.steering.train import SteeringBudget, train_steering

    problems = [{"question": f"{a} + {a}?", "answer": f"#### {2 * a}"} for a in range(8)]
    before = load_file(str(llama / "model.safetensors"))
    steering = train_steering(llama, problems, SteeringBudget(steps=2, prompts_per_step=2, num_generations=4,
                                                              max_completion_length=8),
                              tmp_path / "work", reward=lambda completions, **_: [len(c) / 10 for c in completions])
    assert steering.metadata["made_by"]["trainable_parameters"] == LAYERS * HIDDEN
    assert bool(steering.vectors.any()) and torch.isfinite(steering.vectors).all()
    assert all(torch.equal(t, before[k]) for k, t in load_file(str(llama / "model.safetensors")).items())
