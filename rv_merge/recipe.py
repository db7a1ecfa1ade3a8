"""Load and strictly validate a `reasoning_vector` recipe.

mergekit ignores unknown keys (a typo such as `alhpa:` silently becomes the default), so a
recipe is validated here first, against a schema that forbids anything it does not know.
Every error is one line that names the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from rv_merge.errors import RecipeError

METHOD_NAME = "reasoning_vector"
ROLES = ("sft", "grpo", "vector")

# Keys mergekit knows that a reasoning_vector recipe refuses, with the reason and the fix.
REFUSED_KEYS = {
    "out_dtype": "reasoning_vector rounds once, to `dtype`; a second cast would round twice. "
    "Remove `out_dtype` and set `dtype` to the output dtype you want",
    "slices": "reasoning_vector merges whole models; use `models:` with role sft and grpo",
    "modules": "reasoning_vector merges whole models; use `models:` with role sft and grpo",
    "chat_template": "the output always keeps the target's chat template; remove `chat_template`",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
        if isinstance(value, bool) or value not in (1, -1):
            raise ValueError(f"sign must be 1 (add the vector) or -1 (subtract it), got {value!r}")
        return value


DEFAULT_TASKS = (
    "rv_gsm8k", "rv_gsm8k_distractor", "rv_gsm8k_wrong_hint", "rv_gsm8k_surface",
    "rv_sciq", "rv_sciq_distractor", "rv_humaneval", "rv_humaneval_rename", "rv_humaneval_typos",
    "rv_bbh", "rv_bbh_irrelevant", "rv_bbh_reorder",
)


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
    data: Optional[str] = None  # offline data folder (RV_EVAL_DATA), unless that is set already
    # An alpha sweep: each value is evaluated by rewriting one loaded model in place (no model
    # written). Declared here because a list under `parameters.alpha` is a per-layer gradient.
    alphas: Optional[list[float]] = None

    @field_validator("alphas", mode="before")
    @classmethod
    def _alphas(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, list) or not value:
            raise ValueError("must be a list of numbers, e.g. [0, 0.25, 0.5, 1, 1.5]")
        for i, item in enumerate(value):
            _finite_number(item, f"alphas[{i}]")
        if len(set(value)) != len(value):
            raise ValueError(f"lists an alpha twice: {value}")
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise RecipeError(
                    f"line {key_node.start_mark.line + 1}: key `{key}` appears twice; keep one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except RecipeError as error:
        raise RecipeError(f"{source}: {error.message}") from None
    except yaml.YAMLError as error:
        raise RecipeError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate one recipe file; raise RecipeError naming the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RecipeError(f"{path}: cannot read recipe: {error.strerror}") from None
    return validate_recipe(parse_yaml(text, str(path)), str(path))


def validate_recipe(data: Any, source: str) -> Recipe:
    """Validate an already parsed recipe (a dict); `source` names it in errors."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping of keys, got {type(data).__name__}")
    if data.get("merge_method") != METHOD_NAME:
        raise RecipeError(
            f"{source}: merge_method is {data.get('merge_method')!r}; rv-merge recipes use "
            f"`merge_method: {METHOD_NAME}`"
        )
    for key, reason in REFUSED_KEYS.items():
        if key in data:
            raise RecipeError(f"{source}: key `{key}`: {reason}")
    if "base_model" not in data:
        raise RecipeError(
            f"{source}: no `base_model`; set it to the target model that receives the vector"
        )
    _check_roles(data.get("models"), source)
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(f"{source}: {_describe(error, data)}") from None


def _check_roles(models: Any, source: str) -> None:
    usage = ("`models` lists the pair (one model with `parameters: {role: sft}`, one with "
             "`parameters: {role: grpo}`) or one vector folder with `parameters: {role: vector}`")
    if not isinstance(models, list) or not models:
        raise RecipeError(f"{source}: {usage}")
    roles = []
    for i, entry in enumerate(models):
        params = entry.get("parameters") if isinstance(entry, dict) else None
        role = params.get("role") if isinstance(params, dict) else None
        if role not in ROLES:
            raise RecipeError(
                f"{source}: models[{i}] has role {role!r}; set `parameters: {{role: sft}}`, "
                "`{role: grpo}` or `{role: vector}`"
            )
        roles.append(role)
    if sorted(roles) not in (["grpo", "sft"], ["vector"]):
        raise RecipeError(
            f"{source}: `models` has roles {roles}; {usage} (the target goes in `base_model`)"
        )


def _describe(error: ValidationError, data: dict) -> str:
    """Turn pydantic's first error into one line with the key path and a fix."""
    # An unknown key explains a "missing" one (`alhpa:` for `alpha:`): report it first.
    first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    loc = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        parent = _lookup(Recipe, first["loc"][:-1])
        allowed = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"allowed keys here: {', '.join(allowed)}"
        return f"unknown key `{loc}`; {hint}"
    if first["type"] == "missing":
        return f"missing required key `{loc}`"
    message = first["msg"].removeprefix("Value error, ")
    return f"key `{loc}`: {message}"


def _lookup(model: type[BaseModel], loc: tuple) -> Optional[type[BaseModel]]:
    """The pydantic model class found at a validation-error location, if any."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current else None
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return current
