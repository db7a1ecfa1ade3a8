"""Vectors as files: extract, apply, compress, LoRA export, info and in-memory alpha sweeps.

References are computed here independently (numpy float64, numpy SVD, peft's own merge).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rv_merge.cli import main
from rv_merge.recipe.vector_folder import dense_tensor, read_metadata
from tests.conftest import load_tensors, mergekit_yaml, recipe_dict, rv, write_recipe
from tests.test_numerics import round_bf16_reference

pytestmark = pytest.mark.xdist_group("vectors")
REPO = Path(__file__).resolve().parents[1]


def vector_recipe(target: Path, vector: Path, alpha=1.0, sign=1, dtype="bfloat16") -> dict:
    return {"merge_method": "reasoning_vector", "base_model": str(target),
            "models": [{"model": str(vector), "parameters": {"role": "vector"}}],
            "parameters": {"alpha": alpha, "sign": sign}, "dtype": dtype}


def float64_difference(pair: dict, name: str) -> np.ndarray:
    sft, grpo = load_tensors(pair["sft"])[name], load_tensors(pair["grpo"])[name]
    return grpo.double().numpy() - sft.double().numpy()


@pytest.fixture(scope="module")
def vectors(trios, tmp_path_factory):
    """The default (bfloat16, tied) and a float32 untied trio, each with its exact vector."""
    root = tmp_path_factory.mktemp("vectors")
    built = {}
    for name, pair in (("bf16", trios()), ("f32", trios(tied=False, dtype=torch.float32))):
        result = rv("vector", "extract", "--sft", pair["sft"], "--grpo", pair["grpo"], "--out", root / name)
        assert result.returncode == 0, result.stderr
        built[name] = (pair, root / name)
    return root, built


@pytest.mark.parametrize("which", ["bf16", "f32"])
def test_extract_stores_the_float64_difference_exactly(vectors, which):
    _, built = vectors
    pair, vector = built[which]
    metadata = read_metadata(vector)
    assert metadata["rounding"]["exact"] and metadata["formula"] == "grpo - sft"
    assert set(metadata["sources"]) == {"sft", "grpo"} and metadata["sources"]["grpo"]["fingerprint"]
    names = set(load_tensors(pair["sft"]))
    assert set(metadata["tensors"]) == names
    for name in names:
        assert np.array_equal(dense_tensor(vector, name).numpy(), float64_difference(pair, name)), name
    # exact, yet about the size of float32: only the values float32 cannot hold go to float64
    elements = sum(t.numel() for t in load_tensors(pair["sft"]).values())
    assert (vector / "vector.safetensors").stat().st_size < 1.25 * 4 * elements + 65536


def test_extract_streams_one_tensor_pair_at_a_time(vectors, tmp_path, monkeypatch):
    """Memory is bounded by the largest tensor: never more than two source pairs are alive."""
    import gc
    import weakref

    from rv_merge.vectors import extract

    pair, _ = vectors[1]["f32"]
    alive, most = weakref.WeakSet(), [0]
    original = extract.load_weight

    def tracked(files, name):
        gc.collect()
        most[0] = max(most[0], len(alive) + 1)
        tensor = original(files, name)
        alive.add(tensor)
        return tensor

    monkeypatch.setattr(extract, "load_weight", tracked)
    extract.extract_vector(pair["sft"], pair["grpo"], tmp_path / "v", progress=False)
    assert len(read_metadata(tmp_path / "v")["tensors"]) > 20
    assert most[0] <= 4


@pytest.mark.parametrize("which,alpha,sign,dtype", [("bf16", 0.7, -1, "bfloat16"), ("bf16", 1.3, 1, "float32"),
                                                     ("f32", 0.55, 1, "float32"), ("f32", 2.0, -1, "float32")])
def test_applying_the_exact_vector_gives_the_pairs_merge_bit_for_bit(vectors, tmp_path, which, alpha, sign, dtype):
    # (A recipe dtype narrower than the pair's makes mergekit round SFT and GRPO before
    # subtracting; the vector keeps their exact difference, so there the two differ.)
    _, built = vectors
    pair, vector = built[which]
    by_pair = write_recipe(tmp_path / "pair.yml", recipe_dict(pair["target"], pair["sft"], pair["grpo"],
                                                               alpha=alpha, sign=sign, dtype=dtype))
    by_vector = write_recipe(tmp_path / "vector.yml", vector_recipe(pair["target"], vector, alpha, sign, dtype))
    for recipe, out in ((by_pair, tmp_path / "a"), (by_vector, tmp_path / "b")):
        result = mergekit_yaml(recipe, out)  # plain mergekit-yaml for both
        assert result.returncode == 0, result.stderr[-2000:]
    a, b = load_tensors(tmp_path / "a"), load_tensors(tmp_path / "b")
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype == getattr(torch, dtype), name
        assert torch.equal(a[name].view(torch.int16 if dtype != "float32" else torch.int32),
                           b[name].view(torch.int16 if dtype != "float32" else torch.int32)), name


def test_narrower_storage_records_the_rounding_error(vectors, tmp_path):
    _, built = vectors
    pair, _ = built["f32"]
    assert main(["vector", "extract", "--sft", str(pair["sft"]), "--grpo", str(pair["grpo"]),
                 "--out", str(tmp_path / "v16"), "--dtype", "bfloat16"]) == 0
    metadata = read_metadata(tmp_path / "v16")
    error_sq = norm_sq = 0.0
    for name, info in metadata["tensors"].items():
        exact = float64_difference(pair, name)
        stored = dense_tensor(tmp_path / "v16", name).numpy()
        assert info["dtype"] == "bfloat16"
        assert info["rounding"]["inexact"] == int((stored != exact).sum())
        assert math.isclose(info["rounding"]["max_abs_error"], float(np.abs(stored - exact).max()))
        error_sq += float(((stored - exact) ** 2).sum())
        norm_sq += float((exact**2).sum())
    assert not metadata["rounding"]["exact"]
    assert math.isclose(metadata["rounding"]["relative_error"], math.sqrt(error_sq / norm_sq), rel_tol=1e-9)


# ------------------------------------------------------------------ compression


def relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


def compressed(vector: Path, out: Path, *flags: str) -> dict:
    """Run `rv vector compress VECTOR --out OUT FLAGS...`; return OUT's metadata."""
    assert main(["vector", "compress", str(vector), "--out", str(out), *flags]) == 0
    return read_metadata(out)


def test_magnitude_pruning_against_a_direct_computation(vectors, tmp_path):
    _, built = vectors
    pair, vector = built["f32"]
    metadata = compressed(vector, tmp_path / "m", "--method", "magnitude", "--keep", "0.1")
    for name, info in metadata["tensors"].items():
        exact = float64_difference(pair, name)
        kept = math.ceil(0.1 * exact.size)
        expected = np.zeros(exact.size)
        order = np.argsort(-np.abs(exact.reshape(-1)), kind="stable")[:kept]
        expected[order] = exact.reshape(-1)[order].astype(np.float32)
        rebuilt = dense_tensor(tmp_path / "m", name).numpy().reshape(-1)
        assert info["kept"] == kept
        assert np.array_equal(np.sort(np.abs(rebuilt)), np.sort(np.abs(expected))), name
        assert math.isclose(info["relative_error"], relative_error(rebuilt, exact.reshape(-1)), rel_tol=1e-9)
        assert info["bytes"] == kept * 8  # int32 index + float32 value
    on_disk = (tmp_path / "m" / "vector.safetensors").stat().st_size
    assert on_disk < 0.25 * (vector / "vector.safetensors").stat().st_size


def test_dare_drops_at_random_and_rescales(vectors, tmp_path):
    _, built = vectors
    pair, vector = built["f32"]
    for seed, out in ((0, "d0"), (0, "d0b"), (1, "d1")):
        assert main(["vector", "compress", str(vector), "--out", str(tmp_path / out), "--method", "dare",
                     "--keep", "0.3", "--seed", str(seed)]) == 0
    name = "model.layers.0.mlp.up_proj.weight"
    exact = float64_difference(pair, name).reshape(-1)
    rebuilt = {out: dense_tensor(tmp_path / out, name).numpy().reshape(-1) for out in ("d0", "d0b", "d1")}
    assert np.array_equal(rebuilt["d0"], rebuilt["d0b"]) and not np.array_equal(rebuilt["d0"], rebuilt["d1"])
    kept = rebuilt["d0"] != 0
    assert abs(kept.mean() - 0.3) < 0.05
    np.testing.assert_allclose(rebuilt["d0"][kept], (exact[kept] / 0.3).astype(np.float32), rtol=0)
    info = read_metadata(tmp_path / "d0")["tensors"][name]
    assert math.isclose(info["relative_error"], relative_error(rebuilt["d0"], exact), rel_tol=1e-9)


def test_lowrank_error_is_the_eckart_young_tail(vectors, tmp_path):
    _, built = vectors
    pair, vector = built["f32"]
    metadata = compressed(vector, tmp_path / "r4", "--method", "lowrank", "--rank", "4")
    for name, info in metadata["tensors"].items():
        exact = float64_difference(pair, name)
        if exact.ndim == 1:  # norms and biases stay dense and exact
            assert info["encoding"] == "dense" and info["relative_error"] == 0.0
            assert np.array_equal(dense_tensor(tmp_path / "r4", name).numpy(), exact), name
            continue
        singular = np.linalg.svd(exact, compute_uv=False)
        tail = math.sqrt(float((singular[4:] ** 2).sum()) / float((singular**2).sum()))
        assert info["rank"] == 4
        assert abs(info["relative_error"] - tail) < 1e-5, name  # float32 factors cost ~1e-7
        assert math.isclose(info["relative_error"], relative_error(dense_tensor(tmp_path / "r4", name).numpy(), exact),
                            rel_tol=1e-9)
    for name, info in compressed(vector, tmp_path / "e", "--method", "lowrank", "--energy", "0.9")["tensors"].items():
        if info["encoding"] == "lowrank":
            share = np.cumsum(np.linalg.svd(float64_difference(pair, name), compute_uv=False) ** 2)
            share /= share[-1]
            assert info["rank"] == int(np.searchsorted(share, 0.9) + 1), name


def test_ties_against_a_direct_computation(vectors, tmp_path):
    _, built = vectors
    pair, vector = built["f32"]
    assert main(["vector", "compress", str(vector), "--out", str(tmp_path / "dare"), "--method", "dare",
                 "--keep", "0.5"]) == 0
    assert main(["vector", "combine", str(vector), str(tmp_path / "dare"), "--out", str(tmp_path / "ties"),
                 "--keep", "0.3"]) == 0
    name = "model.layers.1.self_attn.o_proj.weight"
    inputs = [dense_tensor(vector, name).numpy().reshape(-1), dense_tensor(tmp_path / "dare", name).numpy().reshape(-1)]
    trimmed = []
    for v in inputs:
        keep = np.zeros_like(v)
        top = np.argsort(-np.abs(v), kind="stable")[:math.ceil(0.3 * v.size)]
        keep[top] = v[top]
        trimmed.append(keep)
    stacked = np.stack(trimmed)
    sign = np.sign(stacked.sum(0))
    agree = (np.sign(stacked) == sign) & (stacked != 0)
    expected = np.where(agree, stacked, 0).sum(0) / np.maximum(agree.sum(0), 1)
    rebuilt = dense_tensor(tmp_path / "ties", name).numpy().reshape(-1)
    np.testing.assert_allclose(rebuilt, expected.astype(np.float32), rtol=0, atol=0)
    info = read_metadata(tmp_path / "ties")["tensors"][name]
    assert math.isclose(info["relative_error"], relative_error(rebuilt, (inputs[0] + inputs[1]) / 2), rel_tol=1e-9)


# ------------------------------------------------------------------ LoRA export


def test_lora_export_loads_in_peft_and_matches_the_low_rank_vector(vectors, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, built = vectors
    pair, vector = built["f32"]
    assert main(["vector", "compress", str(vector), "--out", str(tmp_path / "r3"), "--method", "lowrank",
                 "--rank", "3"]) == 0
    assert main(["vector", "lora", str(tmp_path / "r3"), "--out", str(tmp_path / "adapter"), "--scale", "-0.5"]) == 0
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 3
    readme = (tmp_path / "adapter" / "README.md").read_text()
    for left_out in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                     "model.layers.0.self_attn.q_proj.bias"):
        assert f"`{left_out}`" in readme

    target = AutoModelForCausalLM.from_pretrained(pair["target"], dtype=torch.float32)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    merged = PeftModel.from_pretrained(target, str(tmp_path / "adapter")).merge_and_unload().state_dict()
    metadata = read_metadata(tmp_path / "r3")
    changed = 0
    for name, info in metadata["tensors"].items():
        if info["encoding"] == "lowrank" and not name.endswith(("embed_tokens.weight", "lm_head.weight")):
            expected = before[name].double() - 0.5 * dense_tensor(tmp_path / "r3", name)
            torch.testing.assert_close(merged[name].double(), expected, rtol=0, atol=1e-6)
            changed += 1
        else:
            assert torch.equal(merged[name], before[name]), f"{name} must not be in the adapter"
    assert changed == 2 * 7  # 2 layers x q, k, v, o, gate, up, down


# ------------------------------------------------------------------ info


def test_info_norms_cosine_and_sign_agreement(vectors, tmp_path, capsys):
    _, built = vectors
    pair, vector = built["f32"]
    assert main(["vector", "compress", str(vector), "--out", str(tmp_path / "m"), "--method", "magnitude",
                 "--keep", "0.2"]) == 0
    capsys.readouterr()
    assert main(["vector", "info", str(vector), "--compare", str(tmp_path / "m"), "--target", str(pair["target"]),
                 "--json", "--plot", str(tmp_path / "info.png")]) == 0
    out = capsys.readouterr().out
    info = json.loads(out[:out.rindex("}") + 1])
    names = list(read_metadata(vector)["tensors"])
    v = np.concatenate([dense_tensor(vector, n).numpy().reshape(-1) for n in names])
    w = np.concatenate([dense_tensor(tmp_path / "m", n).numpy().reshape(-1) for n in names])
    t = np.concatenate([load_tensors(pair["target"])[n].double().numpy().reshape(-1) for n in names])
    assert math.isclose(info["total"]["norm"], float(np.linalg.norm(v)), rel_tol=1e-12)
    assert math.isclose(info["total"]["relative_to_target"], float(np.linalg.norm(v) / np.linalg.norm(t)), rel_tol=1e-12)
    assert math.isclose(info["total"]["cosine"], float(v @ w / np.linalg.norm(v) / np.linalg.norm(w)), rel_tol=1e-12)
    both = (v != 0) & (w != 0)
    assert info["total"]["sign_agreement"] == float(((v > 0) == (w > 0))[both].mean()) == 1.0
    layer0 = [n for n in names if n.startswith("model.layers.0.")]
    v0 = np.concatenate([dense_tensor(vector, n).numpy().reshape(-1) for n in layer0])
    assert math.isclose(info["layers"]["0"]["norm"], float(np.linalg.norm(v0)), rel_tol=1e-12)
    assert (tmp_path / "info.png").stat().st_size > 1000
    # what each output dtype rounds away, against numpy's own conversions (bfloat16: bit reference)
    for label, rounding in (("float32", lambda x: x.astype(np.float32)), ("float16", lambda x: x.astype(np.float16)),
                            ("bfloat16", lambda x: round_bf16_reference(x).float().numpy())):
        lost = (v != 0) & (rounding(t + v) == rounding(t))
        assert math.isclose(info["rounding_loss"][label]["entries"], lost.sum() / (v != 0).sum(), rel_tol=1e-12)
        assert math.isclose(info["rounding_loss"][label]["norm_sq"], (v[lost] ** 2).sum() / (v ** 2).sum(),
                            rel_tol=1e-9, abs_tol=1e-15)
    assert info["rounding_loss"]["bfloat16"]["entries"] > info["rounding_loss"]["float32"]["entries"]


def test_check_says_how_much_of_the_vector_the_recipes_dtype_rounds_away(vectors, tmp_path, capsys):
    _, built = vectors
    pair, _ = built["f32"]
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(pair["target"], pair["sft"], pair["grpo"], alpha=0.5,
                                                          sign=-1, dtype="bfloat16"))
    assert main(["check", str(recipe), "--rounding"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("rounding:")]
    t, s, g = (load_tensors(pair[role]) for role in ("target", "sft", "grpo"))
    lost = nonzero = 0
    lost_sq = total_sq = 0.0
    for name in t:
        v = -0.5 * (g[name].double().numpy() - s[name].double().numpy()).reshape(-1)
        base = t[name].double().numpy().reshape(-1)
        gone = (v != 0) & (round_bf16_reference(base + v).view(torch.int16) == round_bf16_reference(base).view(
            torch.int16)).numpy()
        lost, nonzero = lost + gone.sum(), nonzero + (v != 0).sum()
        lost_sq, total_sq = lost_sq + (v[gone] ** 2).sum(), total_sq + (v ** 2).sum()
    assert line == [f"rounding: written in bfloat16, target + vector (alpha 0.5, sign -1) equals the rounded target "
                    f"in {lost / nonzero:.1%} of the entries where the vector is non-zero, which hold "
                    f"{lost_sq / total_sq:.1%} of its squared norm: that much of the vector is rounded away"]


# ------------------------------------------------------------------ refusals


def test_bad_vector_commands_are_refused_before_any_work(vectors, tmp_path):
    _, built = vectors
    pair, vector = built["f32"]
    result = rv("vector", "extract", "--sft", pair["sft"], "--grpo", pair["grpo"], "--out", vector)
    assert result.returncode == 2 and "exists; pass --force" in result.stderr
    result = rv("vector", "compress", vector, "--out", tmp_path / "x", "--method", "lowrank")
    assert result.returncode == 2 and "exactly one of --rank N or --energy F" in result.stderr
    result = rv("vector", "compress", pair["sft"], "--out", tmp_path / "x", "--method", "magnitude", "--keep", "0.1")
    assert result.returncode == 2 and "not a vector folder" in result.stderr
    result = rv("vector", "lora", vector, "--out", tmp_path / "x")
    assert result.returncode == 2 and "no low-rank tensors" in result.stderr
    result = rv("vector", "extract", "--sft", pair["sft"], "--grpo", built["bf16"][0]["grpo"], "--out", tmp_path / "x")
    assert result.returncode == 2 and "store different tensors" in result.stderr
    assert not (tmp_path / "x").exists()


def rewrite_vector(source: Path, out: Path, change) -> Path:
    """A copy of a vector folder whose tensors and metadata `change(tensors, metadata)` edits."""
    import shutil

    from safetensors.torch import load_file

    from rv_merge.recipe.vector_folder import FILE, SafetensorsStream, as_header

    shutil.copytree(source, out)
    tensors, metadata = load_file(str(source / FILE)), read_metadata(source)
    change(tensors, metadata)
    stream = SafetensorsStream(out / FILE)
    for name, tensor in tensors.items():
        stream.add(name, tensor)
    stream.finish(as_header(metadata))
    return out


def test_nan_in_a_vector_file_is_refused_by_every_command(vectors, tmp_path):
    _, built = vectors
    _, vector = built["f32"]
    name = next(n for n, info in read_metadata(vector)["tensors"].items() if n.endswith("proj.weight"))

    def poison(tensors, _metadata):
        tensors[name].view(-1)[3] = math.nan

    bad = rewrite_vector(vector, tmp_path / "nan", poison)
    for command in (["compress", bad, "--out", tmp_path / "c", "--method", "magnitude", "--keep", "0.5"],
                    ["info", bad], ["combine", bad, vector, "--out", tmp_path / "t"]):
        result = rv("vector", *command)
        assert result.returncode == 2 and f"tensor {name} holds NaN or Inf" in result.stderr, (command, result.stderr)
    low_rank = tmp_path / "lowrank"
    assert rv("vector", "compress", vector, "--out", low_rank, "--method", "lowrank", "--rank", "2").returncode == 0

    def poison_factor(tensors, _metadata):
        tensors[f"{name}.lora_A"].view(-1)[0] = math.inf

    bad_low_rank = rewrite_vector(low_rank, tmp_path / "bad-lowrank", poison_factor)
    result = rv("vector", "lora", bad_low_rank, "--out", tmp_path / "adapter")
    assert result.returncode == 2 and f"tensor {name} holds NaN or Inf" in result.stderr
    assert not any((tmp_path / n).exists() for n in ("c", "t", "adapter"))


def test_combining_vectors_of_different_shapes_is_refused(vectors, tmp_path):
    _, built = vectors
    _, vector = built["f32"]
    name = next(n for n, info in read_metadata(vector)["tensors"].items()
                if len(info["shape"]) == 2 and info["shape"][0] != info["shape"][1])

    def transpose(tensors, metadata):
        tensors[name] = tensors[name].t().contiguous()
        metadata["tensors"][name]["shape"] = list(tensors[name].shape)

    other = rewrite_vector(vector, tmp_path / "transposed", transpose)
    result = rv("vector", "combine", vector, other, "--out", tmp_path / "ties")
    assert result.returncode == 2 and f"tensor {name}: shape" in result.stderr, result.stderr
    assert not (tmp_path / "ties").exists()


def test_a_zero_vector_is_refused(vectors, tmp_path):
    _, built = vectors
    pair, _ = built["f32"]
    result = rv("vector", "extract", "--sft", pair["grpo"], "--grpo", pair["grpo"], "--out", tmp_path / "zero")
    assert result.returncode == 2 and "identical weights: GRPO - SFT is zero everywhere" in result.stderr
    assert not (tmp_path / "zero").exists()


def test_a_vectors_baselines_must_be_the_models_it_was_extracted_from(vectors, tmp_path):
    import shutil

    from rv_merge.errors import RecipeError
    from rv_merge.evaluate.conditions import _vector_source
    from rv_merge.recipe.loading import validate_recipe

    _, built = vectors
    pair, _ = built["f32"]
    sft, grpo = shutil.copytree(pair["sft"], tmp_path / "sft"), shutil.copytree(pair["grpo"], tmp_path / "grpo")
    assert rv("vector", "extract", "--sft", sft, "--grpo", grpo, "--out", tmp_path / "v").returncode == 0
    recipe = validate_recipe(vector_recipe(pair["target"], tmp_path / "v"), "v.yml")
    assert _vector_source(recipe, "v.yml", "sft") == str(sft.resolve())
    config = json.loads((sft / "config.json").read_text())
    (sft / "config.json").write_text(json.dumps({**config, "note": "retrained"}))
    with pytest.raises(RecipeError, match="changed since vector .* was extracted from it"):
        _vector_source(recipe, "v.yml", "sft")
