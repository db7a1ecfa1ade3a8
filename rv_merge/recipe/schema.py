"""The recipe schema: target (`base_model`) + sign * alpha * (GRPO - SFT), and its `eval:` section.

Strict pydantic models: unknown keys are refused (mergekit would silently drop a typo such
as `alhpa:`), and every value has one type. Reading a file into these models, with errors
that name the key and the fix, is rv_merge.recipe.loading's job.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, field_validator

METHOD_NAME = "reasoning_vector"
ROLES = ("sft", "grpo", "vector")

class _Strict(BaseModel):
    """Unknown keys refused; no coercion (`think: "yes"`, `seed: "42"` and `sign: 1.0` are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelParameters(_Strict):
    role: Literal["sft", "grpo", "vector"]


class SourceModel(_Strict):
    model: str
    parameters: ModelParameters


class TokenizerSetting(_Strict):
    source: Literal["base"]


def _finite_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return float(value)


def _check_alpha(value: Any) -> Any:
    """alpha is a number, a per-layer gradient (list of numbers), or filtered values."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, condition in enumerate(value):
            unknown = set(condition) - {"filter", "value"}
            if unknown or "value" not in condition:
                raise ValueError(
                    f"alpha[{i}] must look like {{filter: NAME, value: NUMBER}}; "
                    f"got keys {sorted(condition)}"
                )
            if condition.get("filter") is not None and not isinstance(condition["filter"], str):
                raise ValueError(f"alpha[{i}].filter must be a string")
            _check_alpha(condition["value"])
        return value
    if isinstance(value, list):
        if len(value) < 2:
            raise ValueError("an alpha gradient needs at least two values, e.g. [0.0, 1.0]")
        for i, item in enumerate(value):
            _finite_number(item, f"alpha[{i}]")
        return value
    _finite_number(value, "alpha")
    return value


class MethodParameters(_Strict):
    alpha: Union[float, list]
    sign: Literal[1, -1] = 1

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha(cls, value: Any) -> Any:
        return _check_alpha(value)

    @field_validator("sign", mode="before")
    @classmethod
    def _sign(cls, value: Any) -> Any:
        if type(value) is not int or value not in (1, -1):
            raise ValueError(f"sign must be the integer 1 (add the vector) or -1 (subtract it), got {value!r}")
        return value


DEFAULT_TASKS = (
    "rv_gsm8k", "rv_gsm8k_distractor", "rv_gsm8k_wrong_hint", "rv_gsm8k_surface",
    "rv_sciq", "rv_sciq_distractor", "rv_humaneval", "rv_humaneval_rename", "rv_humaneval_typos",
    "rv_bbh", "rv_bbh_irrelevant", "rv_bbh_reorder",
)


def _distinct_numbers(value: Any, name: str, example: str) -> list:
    """A non-empty list of finite numbers that print differently (each is one report row)."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a list of numbers, e.g. {example}")
    for i, item in enumerate(value):
        _finite_number(item, f"{name}[{i}]")
    if len(set(value)) != len(value):
        raise ValueError(f"lists a value twice: {value}")
    labels = [f"{number:g}" for number in value]
    if len(set(labels)) != len(labels):
        twins = [number for number, label in zip(value, labels) if labels.count(label) > 1]
        raise ValueError(f"{name} {twins} print alike ({labels[value.index(twins[0])]}) and would share one "
                         "report row; drop one")
    return value


class SteeringSettings(_Strict):
    """One entry of `eval.steering`: per-layer steering vectors added to the target's layer outputs."""

    vectors: str  # a steering folder (rv steer train / extract)
    name: Optional[str] = None  # what the report calls them; None: the folder's name
    scales: list[float] = [1.0]  # each evaluated as target + scale * steering
    think: bool = True  # the first scale also on the think variants (when eval.think is on)
    layers: Optional[list[int]] = None  # [first, last], 0-based inclusive; None: all layers

    @field_validator("scales", mode="before")
    @classmethod
    def _scales(cls, value: Any) -> Any:
        return _distinct_numbers(value, "scales", "[0.5, 1, 2]")

    @field_validator("layers")
    @classmethod
    def _layer_pair(cls, value: Optional[list[int]]) -> Optional[list[int]]:
        if value is not None and (len(value) != 2 or not 0 <= value[0] <= value[1]):
            raise ValueError(f"must be [first, last] with 0 <= first <= last, got {value}")
        return value

    @property
    def display_name(self) -> str:
        return self.name or Path(self.vectors).name


class EvalSettings(_Strict):
    """The `eval:` section: what `rv eval` measures (mergekit ignores this key)."""

    tasks: list[str] = list(DEFAULT_TASKS)
    baselines: list[Literal["target", "sft", "grpo"]] = ["target", "grpo"]
    think: bool = True  # also the "think step by step" variants, for GRPO and the merged model
    limit: Optional[int] = None  # documents per task (None: all)
    limits: dict[str, int] = {}  # per-task overrides of `limit`, e.g. {rv_humaneval: 20}
    num_fewshot: Optional[int] = None  # None: each task's own
    max_gen_toks: Optional[int] = None  # None: each task's own
    seed: int = 1234
    batch_size: int = 1
    apply_chat_template: bool = False
    data: Optional[str] = None  # offline data folder, unless --data / RV_EVAL_DATA gives one
    # An alpha sweep: each value is evaluated by rewriting one loaded model in place (no model
    # written). Declared here because a list under `parameters.alpha` is a per-layer gradient.
    alphas: Optional[list[float]] = None

    # Steering vectors (rv steer) applied to the target at evaluation time, by hooks: one
    # entry, or a list of them to compare (say, trained and extracted).
    steering: list[SteeringSettings] = []

    @field_validator("alphas", mode="before")
    @classmethod
    def _alphas(cls, value: Any) -> Any:
        return None if value is None else _distinct_numbers(value, "alphas", "[0, 0.25, 0.5, 1, 1.5]")

    @field_validator("steering", mode="before")
    @classmethod
    def _steering_list(cls, value: Any) -> Any:
        return [] if value is None else [value] if isinstance(value, dict) else value

    @field_validator("steering")
    @classmethod
    def _distinct_steering_names(cls, value: list[SteeringSettings]) -> list[SteeringSettings]:
        names = [entry.display_name for entry in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"names {twice} twice (each entry's `name:`, else its folder's name); give each "
                             "entry a distinct `name:`")
        return value

    @field_validator("tasks")
    @classmethod
    def _some_tasks(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("lists no task; name at least one (`rv tasks` lists them)")
        return value

    @field_validator("baselines")
    @classmethod
    def _with_target(cls, value: list[str]) -> list[str]:
        if "target" not in value:
            raise ValueError(f"must include target (the report compares the merged model with it), got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"lists a baseline twice: {value}")
        return value

    @field_validator("num_fewshot")
    @classmethod
    def _not_negative(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and value < 0:
            raise ValueError(f"must be 0 or more, got {value}")
        return value

    @field_validator("limits")
    @classmethod
    def _positive_limits(cls, value: dict[str, int]) -> dict[str, int]:
        for task, limit in value.items():
            if limit < 1:
                raise ValueError(f"{task}: must be a positive integer, got {limit}")
        return value

    def limit_for(self, task: str) -> Optional[int]:
        return self.limits.get(task, self.limit)

    @field_validator("limit", "max_gen_toks", "batch_size")
    @classmethod
    def _positive(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and value < 1:
            raise ValueError(f"must be a positive integer, got {value}")
        return value


class Recipe(_Strict):
    """A validated recipe: target (`base_model`) + sign * alpha * (GRPO - SFT)."""

    merge_method: Literal["reasoning_vector"]
    base_model: str
    models: list[SourceModel]
    parameters: MethodParameters
    dtype: Optional[Literal["bfloat16", "float16", "float32"]] = None
    tokenizer_source: Optional[Literal["base"]] = None
    tokenizer: Optional[TokenizerSetting] = None
    name: Optional[str] = None  # used by mergekit-multi documents
    eval: Optional[EvalSettings] = None

    @property
    def target(self) -> str:
        return self.base_model

    def source(self, role: str) -> Optional[str]:
        return next((m.model for m in self.models if m.parameters.role == role), None)

    @property
    def sources(self) -> dict[str, str]:
        """role -> model reference: {sft, grpo} for a pair, {vector} for a vector folder."""
        return {m.parameters.role: m.model for m in self.models}

    @property
    def align_vocabularies(self) -> bool:
        """True when the user opted in to aligning embedding rows by token string."""
        return self.tokenizer_source == "base" or self.tokenizer is not None
