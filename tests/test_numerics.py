"""The arithmetic is exact: bit-identical to a float64 reference rounded once to the dtype.

The reference is computed here with numpy in float64 and rounded with numpy's own
float16/float32 conversions, or a bit-level round-to-nearest-even for bfloat16 (numpy has
no bfloat16), independently of the kernel.
"""

from __future__ import annotations

import json
import math
import subprocess
from fractions import Fraction

import numpy as np
import pytest
import torch

from rv_merge.merge.arithmetic import apply_vector, apply_vector_with_torch, block_elements, round_once
from rv_merge.merge.cpu_kernel import merge_into
from tests.conftest import BIN, OFFLINE_ENV, load_tensors, mergekit_yaml, recipe_dict, write_recipe

pytestmark = pytest.mark.xdist_group("numerics")  # one mergekit-multi run serves the module
INT_VIEW = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def round_bf16_reference(x: np.ndarray) -> torch.Tensor:
    """float64 -> bfloat16, round to nearest even on the bit pattern (normal numbers)."""
    assert np.all((x == 0) | (np.abs(x) > 2.0**-126)), "reference covers normal numbers only"
    bits = x.astype(np.float64).view(np.uint64)
    lsb = (bits >> np.uint64(45)) & np.uint64(1)
    rounded = ((bits + np.uint64((1 << 44) - 1) + lsb) >> np.uint64(45)) << np.uint64(45)
    # rounded now holds a value exactly representable in bfloat16: the cast below is exact
    return torch.from_numpy(rounded.view(np.float64)).to(torch.bfloat16)


def reference(target, sft, grpo, coefficient: float, dtype: torch.dtype) -> torch.Tensor:
    t, s, g = (x.to(torch.float64).numpy() for x in (target, sft, grpo))
    exact = t + coefficient * (g - s)
    if dtype == torch.bfloat16:
        return round_bf16_reference(exact)
    numpy_dtype = {torch.float16: np.float16, torch.float32: np.float32}[dtype]
    return torch.from_numpy(exact.astype(numpy_dtype))


def assert_bit_identical(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> None:
    assert actual.dtype == expected.dtype, name
    view = INT_VIEW[actual.dtype]
    differing = (actual.view(view) != expected.view(view)).sum().item()
    assert differing == 0, f"{name}: {differing} of {actual.numel()} values differ"


# ---------------------------------------------------------------- the kernel itself


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_tie_that_float32_double_rounding_gets_wrong(dtype):
    # 1 + half an ulp + a tiny bit: correct rounding goes up; rounding via float32 first
    # lands exactly on the tie and goes to even (down).
    ulp = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    target, sft = torch.tensor([1.0], dtype=dtype), torch.tensor([0.0], dtype=dtype)
    grpo = torch.tensor([ulp / 2], dtype=dtype)
    coefficient = 1 + 2.0**-32
    assert torch.tensor([1 + ulp / 2 * coefficient], dtype=torch.float64).to(dtype).item() == 1.0
    assert apply_vector(target, coefficient, grpo, sft).item() == 1 + ulp


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_random_tensors_match_reference(dtype):
    generator = torch.Generator().manual_seed(7)
    target, sft = (torch.randn(300, 70, generator=generator).to(dtype) for _ in range(2))
    grpo = (sft.double() + 1e-3 * torch.randn(300, 70, generator=generator, dtype=torch.float64)).to(dtype)
    for coefficient in (1.0, -1.0, 0.37, -2.5):
        assert_bit_identical(apply_vector(target, coefficient, grpo, sft),
                             reference(target, sft, grpo, coefficient, dtype), f"{coefficient}")


def test_blocks_cover_the_whole_tensor(monkeypatch):
    import rv_merge.merge.arithmetic

    monkeypatch.setattr(rv_merge.merge.arithmetic, "BLOCK_ELEMENTS", 1000)  # 21 blocks, last one partial
    generator = torch.Generator().manual_seed(3)
    target, sft, grpo = (torch.randn(207, 101, generator=generator).to(torch.bfloat16) for _ in range(3))
    assert_bit_identical(apply_vector(target, 0.8, grpo, sft),
                         reference(target, sft, grpo, 0.8, torch.bfloat16))


def test_alpha_zero_returns_target_bits_including_negative_zero():
    target = torch.tensor([-0.0, 1.5, -3.25], dtype=torch.bfloat16)
    sft = torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16)
    grpo = torch.tensor([2.0, 5.0, -1.0], dtype=torch.bfloat16)
    out = apply_vector(target, 0.0, grpo, sft)
    assert_bit_identical(out, target)
    assert torch.signbit(out[0])


def test_round_once_on_a_matrix_matches_the_bitwise_reference():
    values = torch.randn(300, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    values[::3] = values[::3].float().double() + 2.0**-30  # just past float32 values: ties are likely
    expected = round_bf16_reference(values.numpy())
    assert_bit_identical(round_once(values, torch.bfloat16), expected)


def test_round_once_matches_numpy_float16_on_many_values():
    values = torch.randn(200_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.from_numpy(values.numpy().astype(np.float16))
    assert_bit_identical(round_once(values, torch.float16), expected)


def nearest_bfloat16_by_search(values: np.ndarray) -> np.ndarray:
    """float64 -> bfloat16 bits by searching all 65,536 bfloat16 values for the nearest (ties
    to the even bit pattern; beyond the largest finite value plus half a step: infinity).
    Independent of the bit tricks: covers subnormals, overflow and exact ties."""
    patterns = np.arange(1 << 16, dtype=np.uint32)
    with np.errstate(invalid="ignore"):  # the NaN patterns
        floats = (patterns << 16).view(np.float32).astype(np.float64)
    finite = np.isfinite(floats) & ~((patterns & 0x7FFF) == 0) | (patterns == 0)  # one zero (+0)
    order = np.argsort(floats[finite], kind="stable")
    grid, bits = floats[finite][order], patterns[finite][order]
    upper = np.clip(np.searchsorted(grid, values), 1, len(grid) - 1)
    below, above = grid[upper - 1], grid[upper]
    pick_above = (values - below > above - values) | ((values - below == above - values) & (bits[upper] % 2 == 0))
    result = np.where(pick_above, bits[upper], bits[upper - 1]).astype(np.uint16)
    largest = grid[-1]
    result[values >= largest + 2.0**(127 - 8)] = 0x7F80
    result[values <= -(largest + 2.0**(127 - 8))] = 0xFF80
    result[(result == 0) & np.signbit(values)] = 0x8000  # a negative value rounded to zero is -0
    return result


def hard_values() -> torch.Tensor:
    """Random magnitudes from subnormal to overflow, bfloat16 midpoints and their neighbours."""
    generator = np.random.default_rng(11)
    mantissa = generator.uniform(1, 2, 40_000) * generator.choice([-1, 1], 40_000)
    spread = np.ldexp(mantissa, generator.integers(-140, 129, 40_000))
    with np.errstate(invalid="ignore"):
        grid = (np.arange(1 << 15, dtype=np.uint32) << 16).view(np.float32).astype(np.float64)
    grid = grid[np.isfinite(grid)]
    midpoints = (grid[:-1] + grid[1:]) / 2
    chosen = generator.choice(midpoints, 20_000)
    near = np.concatenate([chosen, np.nextafter(chosen, np.inf), np.nextafter(chosen, -np.inf), -chosen])
    return torch.from_numpy(np.concatenate([spread, near, [0.0, -0.0, 2.0**-126, 2.0**-134, 2.0**-133 * 1.5]]))


@pytest.mark.parametrize("path", ["cpu kernel", "torch", "round_once"])
def test_bfloat16_rounding_matches_a_search_of_all_bfloat16_values(path):
    values = hard_values()
    exact = values.numpy() if path == "round_once" else values.numpy() + 0.0  # the merge adds a +0 target
    expected = nearest_bfloat16_by_search(exact)
    zeros = torch.zeros(values.shape, dtype=torch.bfloat16)
    if path == "cpu kernel":
        actual = torch.empty(values.shape, dtype=torch.bfloat16)
        assert merge_into(actual, zeros, 1.0, values, None) is False  # some overflow, on purpose
    elif path == "torch":
        actual = apply_vector_with_torch(zeros, 1.0, values)
    else:
        actual = round_once(values, torch.bfloat16)
    differing = (actual.view(torch.int16).numpy().view(np.uint16) != expected).sum()
    assert differing == 0, f"{differing} of {values.numel()} values differ"


@pytest.mark.parametrize("bits", [0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0x7FF0000000000001])
def test_a_nan_of_any_payload_is_reported_not_rounded_into_a_number(bits):
    """A NaN whose payload is all ones would carry out of the bfloat16 rounding step and wrap
    around to a finite number (0 or -0) if the kernel treated it like any other value."""
    values = np.array([0.5, 0.0])
    values.view(np.uint64)[1] = bits
    vector = torch.from_numpy(values)
    out = torch.empty(2, dtype=torch.bfloat16)
    assert merge_into(out, torch.zeros(2, dtype=torch.bfloat16), 1.0, vector, None) is False
    assert out[0].item() == 0.5 and torch.isnan(out[1])


@pytest.mark.parametrize("bad", [1e39, -1e39, math.nan, math.inf])
def test_a_float32_result_that_overflows_or_is_nan_is_reported(bad):
    finite = torch.tensor([0.5, 3e38, -2.0], dtype=torch.float64)  # 3e38 still fits
    assert merge_into(torch.empty(3), torch.zeros(3), 1.0, finite, None) is True
    values = torch.tensor([0.5, 3e38, bad, -2.0], dtype=torch.float64)
    out = torch.empty(4, dtype=torch.float32)
    assert merge_into(out, torch.zeros(4), 1.0, values, None) is False
    assert out[0].item() == 0.5 and not math.isfinite(out[2].item())


@pytest.mark.parametrize("path", ["cpu kernel", "torch"])
def test_the_product_is_rounded_before_the_sum_never_fused(path):
    """target + c * v rounds c * v to float64 first, as the reference does. A fused
    multiply-add (which a compiler may emit when allowed to contract) keeps the product's
    exact value, here just above a bfloat16 tie, and rounds the other way."""
    wanted = 1 + 2.0**-9 + 2.0**-17  # 3 * v rounded: minus 1, it is a bfloat16 tie
    vector = torch.tensor([wanted / 3], dtype=torch.float64)
    assert vector.item() * 3 == wanted and Fraction(vector.item()) * 3 > wanted  # the product was rounded down
    target = torch.tensor([-1.0], dtype=torch.bfloat16)
    if path == "cpu kernel":
        out = torch.empty(1, dtype=torch.bfloat16)
        assert merge_into(out, target, 3.0, vector, None) is True
    else:
        out = apply_vector_with_torch(target, 3.0, vector)
    assert out.item() == 2.0**-9  # the tie, to even; fused: 2**-9 * (1 + 2**-7)


def test_parts_merged_on_several_threads_cover_the_tensor_and_report_overflow(monkeypatch):
    """The kernel cuts large tensors into parts for several cores: every part is written, with
    the reference's bits, and an overflow in any part (here the last, partial one) is seen."""
    from concurrent.futures import ThreadPoolExecutor

    from rv_merge.merge import cpu_kernel

    monkeypatch.setattr(cpu_kernel, "PART_ELEMENTS", 1000)
    monkeypatch.setattr(cpu_kernel, "_WORKERS", ThreadPoolExecutor(max_workers=3))
    generator = torch.Generator().manual_seed(11)
    target, sft = (torch.randn(10_001, generator=generator).to(torch.bfloat16) for _ in range(2))
    grpo = (sft.double() + 1e-3 * torch.randn(10_001, generator=generator, dtype=torch.float64)).to(torch.bfloat16)
    out = torch.full_like(target, float("nan"))
    assert merge_into(out, target, 0.37, grpo, sft) is True
    assert_bit_identical(out, reference(target, sft, grpo, 0.37, torch.bfloat16))
    grpo[-1] = 3e38
    assert merge_into(out, target, 2.0, grpo, sft) is False


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_torch_path_with_accelerator_blocks_gives_the_cpu_kernel_bits(dtype):
    """What `--device cuda` runs (the torch path, 16M-element blocks), here on CPU."""
    generator = torch.Generator().manual_seed(5)
    target, sft = (torch.randn(3000, 700, generator=generator).to(dtype) for _ in range(2))
    grpo = (sft.double() + 1e-3 * torch.randn(3000, 700, generator=generator, dtype=torch.float64)).to(dtype)
    vector = grpo.double() - sft.double()
    accelerator_block = block_elements(torch.device("cuda"))
    for coefficient in (1.0, -1.0, 0.37, 2.5):
        for plus, minus in ((grpo, sft), (vector, None)):
            kernel = torch.empty_like(target)
            assert merge_into(kernel, target, coefficient, plus, minus) is True
            assert_bit_identical(apply_vector_with_torch(target, coefficient, plus, minus, block=accelerator_block),
                                 kernel, f"{coefficient} {plus.dtype}")


# ------------------------------------------- end to end, one mergekit-multi process for all

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
MASK = [{"filter": "embed_tokens", "value": 0}, {"filter": "mlp", "value": 0.5}, {"value": 1.0}]
CASES = {  # name -> (trio build arguments, alpha, sign, dtype)
    "bf16-add": ({}, 0.75, 1, "bfloat16"),
    "bf16-sub": ({}, 0.75, -1, "bfloat16"),
    "fp16-sub": ({"dtype": torch.float16}, 1.0, -1, "float16"),
    "fp32-add": ({"dtype": torch.float32}, 0.3, 1, "float32"),
    "gradient": ({"layers": 3}, [0.2, 1.0], 1, "bfloat16"),
    "mask": ({"layers": 3}, MASK, 1, "bfloat16"),
}


@pytest.fixture(scope="module")
def merged(trios, tmp_path_factory):
    """Run every case through the real mergekit-multi console script, in one process."""
    import yaml

    root = tmp_path_factory.mktemp("multi")
    documents = []
    for name, (build, alpha, sign, dtype) in CASES.items():
        models = trios(**build)
        document = recipe_dict(models["target"], models["sft"], models["grpo"], alpha, sign, dtype)
        documents.append({"name": name, **document})
    config = root / "multi.yml"
    config.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    result = subprocess.run(
        [str(BIN / "mergekit-multi"), str(config), "-I", str(root / "out"), "--quiet"],
        capture_output=True, text=True, env=OFFLINE_ENV, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return lambda name: (trios(**CASES[name][0]), load_tensors(root / "out" / name))


def expected_alpha(case: str, name: str) -> float:
    """alpha for one tensor, per mergekit's documented gradient and filter rules."""
    alpha = CASES[case][1]
    if case == "mask":
        return 0.0 if "embed_tokens" in name else 0.5 if "mlp" in name else 1.0
    if case == "gradient":
        if ".layers." not in name:
            return alpha[0]  # embeddings and the final norm are planned at t = 0
        t = int(name.split(".layers.")[1].split(".")[0]) / 2  # t = layer / (layers - 1)
        return (1 - t) * alpha[0] + t * alpha[1]  # mergekit's interpolation, in this order
    return alpha


@pytest.mark.parametrize("case", list(CASES))
def test_merged_output_is_bit_identical_to_reference(merged, case):
    models, out = merged(case)
    _, _, sign, dtype = CASES[case]
    target, sft, grpo = (load_tensors(models[r]) for r in ("target", "sft", "grpo"))
    assert set(out) == set(target)
    for name in target:
        coefficient = sign * expected_alpha(case, name)
        expected = reference(target[name], sft[name], grpo[name], coefficient, DTYPES[dtype])
        assert_bit_identical(out[name], expected, name)


def test_mask_keeps_embeddings_of_the_target(merged):
    models, out = merged("mask")
    target = load_tensors(models["target"])
    assert torch.equal(out["model.embed_tokens.weight"], target["model.embed_tokens.weight"])
    assert not torch.equal(out["model.norm.weight"], target["model.norm.weight"])


@pytest.mark.parametrize("tied", [True, False])
def test_alpha_zero_gives_the_target_and_keeps_its_files(trios, tmp_path, tied):
    models = trios(tied=tied)
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(models["target"], models["sft"], models["grpo"], alpha=0))
    assert mergekit_yaml(recipe, tmp_path / "out").returncode == 0
    out, target = load_tensors(tmp_path / "out"), load_tensors(models["target"])
    assert set(out) == set(target) and ("lm_head.weight" in out) == (not tied)
    for name in target:
        assert_bit_identical(out[name], target[name], name)
    for file in ("tokenizer.json", "chat_template.jinja", "generation_config.json"):
        assert (tmp_path / "out" / file).read_text() == (models["target"] / file).read_text(), file
    config_out = json.loads((tmp_path / "out" / "config.json").read_text())
    config_target = json.loads((models["target"] / "config.json").read_text())
    assert config_out == config_target
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Reasoning Vector" in card and "2509.01363" in card and "role: sft" in card
    assert (tmp_path / "out" / "mergekit_config.yml").read_text() == recipe.read_text()
