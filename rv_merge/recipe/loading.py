"""Read a recipe file into the schema, with one error line that names the key and the fix.

Keys mergekit knows but a reasoning_vector recipe refuses, duplicate keys, a missing or
duplicated role and misspelled keys (with the closest valid name) are all caught here,
before any model is opened.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ValidationError

from rv_merge.errors import RecipeError
from rv_merge.recipe.schema import METHOD_NAME, ROLES, Recipe

# Keys mergekit knows that a reasoning_vector recipe refuses, with the reason and the fix.
REFUSED_KEYS = {
    "out_dtype": "reasoning_vector rounds once, to `dtype`; a second cast would round twice. "
    "Remove `out_dtype` and set `dtype` to the output dtype you want",
    "slices": "reasoning_vector merges whole models; use `models:` with role sft and grpo",
    "modules": "reasoning_vector merges whole models; use `models:` with role sft and grpo",
    "chat_template": "the output always keeps the target's chat template; remove `chat_template`",
}


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
        raise RecipeError(f"{source}: {describe(error)}") from None


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


def describe(error: ValidationError) -> str:
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
    if first["type"].endswith("_type") or first["type"] == "literal_error":  # a value of the wrong type
        message += f", got {first['input']!r}"
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
