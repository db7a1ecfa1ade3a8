"""Compatibility checks between the target and the SFT/GRPO pair, before any merging.

They read configs, tokenizers and safetensors headers, so they are cheap even for 70B
checkpoints; tensor data is read only when a tied target meets donors that store their own
lm_head (two tensors per donor, to see whether that head equals its embeddings). Each failure is a CompatibilityError naming the model, the key or
tensor, and the fix. `check_recipe` returns the lines that `rv check` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rv_merge.errors import CompatibilityError, describe_error
from rv_merge.recipe.head_tying import HEAD, embedding_name, output_head
from rv_merge.recipe.head_tying import describe as describe_output_head
from rv_merge.recipe.loading import load_recipe
from rv_merge.recipe.model_locations import locate_model
from rv_merge.recipe.schema import Recipe
from rv_merge.recipe.weight_files import read_safetensors_headers
from rv_merge.recipe.vector_folder import is_vector_folder, read_metadata
from rv_merge.recipe.vocabulary_check import check_tokenizers

# Plain mergekit-yaml has no flag of ours: this variable, read once by the startup hook, opts in.
ALLOW_PICKLE_ENV = "RV_MERGE_ALLOW_PICKLE"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# Tensors whose first axis is the vocabulary (may differ when rows are aligned by token).
VOCAB_AXIS_SUFFIXES = ("embed_tokens.weight", HEAD)


@dataclass
class ModelFiles:
    """What the checks know about one model, without loading its weights."""

    role: str  # target, sft, grpo or vector
    reference: str  # as written in the recipe
    path: Path  # local folder (a Hub cache snapshot for Hub ids)
    config: object  # transformers.PretrainedConfig
    tensors: dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape)
    weights_format: str  # "safetensors" or "pickle"

    @property
    def label(self) -> str:
        return f"{self.role} {self.reference}"


def check_recipe_file(path: str, allow_pickle: bool = False) -> list[str]:
    """`rv check`: validate the recipe file, then check its models; the lines to print."""
    recipe = load_recipe(path)
    return [f"ok   {path}: valid reasoning_vector recipe "
            f"(alpha {recipe.parameters.alpha}, sign {recipe.parameters.sign:+d})",
            *check_recipe(recipe, path, allow_pickle).lines, f"{path}: all checks passed"]


@dataclass(frozen=True)
class CheckResult:
    lines: list[str]  # one per check that passed, as `rv check` prints them
    output_head: str  # what the merge does with lm_head (rv_merge.recipe.head_tying)


def check_recipe(recipe: Recipe, source: str, allow_pickle: bool = False) -> CheckResult:
    """Run every check on a validated recipe."""
    roles = {"target": recipe.target, **recipe.sources}
    models = [_read_model(role, ref, source, allow_pickle) for role, ref in roles.items()]
    lines = [
        f"ok   {m.label}{'' if Path(m.reference) == m.path else f' ({m.path})'}: "
        f"{m.config.architectures[0]}, "
        f"{m.config.num_hidden_layers} layers, {len(m.tensors)} tensors ({m.weights_format})"
        for m in models
    ]
    target = models[0]
    _check_nonzero_vector(models, source)
    for other in models[1:]:
        _check_architecture(target, other, source)
    _check_tensor_names(models, source)
    lines.append(f"ok   architecture, layer count and {len(target.tensors)} tensor names agree")
    _check_shapes(models, source, recipe.align_vocabularies)
    lines.append(
        "ok   tensor shapes agree"
        + (" (vocabulary rows aligned by token string: opted in)" if recipe.align_vocabularies else "")
    )
    _check_tying(target, source)
    tied = bool(getattr(target.config, "tie_word_embeddings", False))
    lines.append(f"ok   {target.label}: embeddings {'tied' if tied else 'untied'}, consistent with its weights")
    plan = output_head(target, tied, models[1:])
    lines.append(describe_output_head(plan, target))
    lines.append(check_tokenizers({m.label: m.path for m in models}, source, recipe.align_vocabularies))
    return CheckResult(lines, plan)


# ---------------------------------------------------------------------------- reading


def _read_model(role: str, reference: str, source: str, allow_pickle: bool) -> ModelFiles:
    from transformers import AutoConfig

    path = locate_model(reference, source)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except Exception as error:
        raise CompatibilityError(
            f"{source}: {role} `{reference}`: cannot read config.json ({describe_error(error)}); "
            "the folder must hold a transformers model config"
        ) from None
    if not getattr(config, "architectures", None):
        raise CompatibilityError(f"{source}: {role} `{reference}`: config.json names no `architectures`")
    safetensors = sorted(path.glob("*.safetensors"))
    if is_vector_folder(path):
        metadata = read_metadata(path)
        tensors = {name: ("F64", tuple(info["shape"])) for name, info in metadata["tensors"].items()}
        weights_format = f"rv vector, {metadata['encoding']}"
    elif safetensors:
        tensors = read_safetensors_headers(safetensors)
        weights_format = "safetensors"
    elif _is_uncached_hub_id(reference, path):
        tensors, weights_format = _remote_headers(reference, source), "safetensors"
    else:
        pickles = [p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if not pickles:
            raise CompatibilityError(f"{source}: {role} `{reference}` has no weight files (*.safetensors)")
        if not allow_pickle:
            raise CompatibilityError(
                f"{source}: {role} `{reference}` has only pickled weights ({pickles[0].name}), "
                "which can run code when loaded; convert them to safetensors, or opt in with "
                f"`rv merge --allow-pickle` (plain mergekit-yaml: {ALLOW_PICKLE_ENV}=1)"
            )
        tensors, weights_format = _pickle_shapes(pickles), "pickle"
    return ModelFiles(role, reference, path, config, tensors, weights_format)


def _is_uncached_hub_id(reference: str, path: Path) -> bool:
    return not Path(reference).expanduser().is_dir() and "snapshots" in path.parts


def _remote_headers(repo_id: str, source: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    from huggingface_hub import get_safetensors_metadata

    try:
        metadata = get_safetensors_metadata(repo_id)
    except Exception as error:
        raise CompatibilityError(
            f"{source}: cannot read the safetensors headers of `{repo_id}` on the Hub "
            f"({describe_error(error)})"
        ) from None
    return {
        name: (info.dtype, tuple(info.shape))
        for file in metadata.files_metadata.values()
        for name, info in file.tensors.items()
    }


def _pickle_shapes(files: list[Path]) -> dict[str, tuple[str, tuple[int, ...]]]:
    import torch

    tensors = {}
    for file in files:
        state = torch.load(file, map_location="meta", weights_only=True, mmap=True)
        tensors.update({k: (str(v.dtype), tuple(v.shape)) for k, v in state.items()})
    return tensors


# ---------------------------------------------------------------------------- comparing


def _check_nonzero_vector(models: list[ModelFiles], source: str) -> None:
    """GRPO - SFT of one folder with itself, or a stored vector of norm 0, would merge to the
    target unchanged: a run that reports success on nothing."""
    by_role = {m.role: m for m in models}
    if "sft" in by_role and by_role["sft"].path.resolve() == by_role["grpo"].path.resolve():
        raise CompatibilityError(
            f"{source}: sft and grpo are the same folder ({by_role['sft'].path}), so the vector is zero; "
            "point grpo at the RL-trained checkpoint"
        )
    if "vector" in by_role:
        norms = [info["norm"] for info in read_metadata(by_role["vector"].path)["tensors"].values()]
        if not any(norms):
            raise CompatibilityError(
                f"{source}: vector {by_role['vector'].reference} is zero in every tensor (its pair was "
                "identical); extract it from an SFT and a GRPO checkpoint that differ"
            )


def _check_architecture(target: ModelFiles, other: ModelFiles, source: str) -> None:
    for key in ("architectures", "num_hidden_layers"):
        mine, theirs = getattr(target.config, key, None), getattr(other.config, key, None)
        if mine != theirs:
            raise CompatibilityError(
                f"{source}: config `{key}` differs: {target.label} has {mine}, "
                f"{other.label} has {theirs}; the vector only transfers between models of "
                "one architecture and size"
            )


def _check_tensor_names(models: list[ModelFiles], source: str) -> None:
    target = models[0]
    for other in models[1:]:
        if set(other.tensors) == set(target.tensors):
            continue
        only_target = sorted(set(target.tensors) - set(other.tensors) - {HEAD})
        only_other = sorted(set(other.tensors) - set(target.tensors) - {HEAD})
        if not only_target and not only_other:
            continue  # only lm_head differs: tied and untied heads merge exactly (head_tying)
        missing = (f"{other.label} lacks {_few(only_target)}" if only_target else "") + (
            f"{'; ' if only_target else ''}{other.label} has extra {_few(only_other)}"
            if only_other else ""
        )
        raise CompatibilityError(
            f"{source}: tensor names differ from the target's: {missing}; the models must "
            "share one architecture"
        )


def _check_shapes(models: list[ModelFiles], source: str, align_vocabularies: bool) -> None:
    target = models[0]
    for other in models[1:]:
        names = set(target.tensors) | ({HEAD} & set(other.tensors))  # a donor's own head too
        for name, shape in ((n, _effective_shape(target, n)) for n in sorted(names)):
            theirs = _effective_shape(other, name)
            if shape == theirs:
                continue
            if align_vocabularies and name.endswith(VOCAB_AXIS_SUFFIXES) and shape[1:] == theirs[1:]:
                continue
            fix = (
                "add `tokenizer_source: base` to align embedding rows by token string"
                if name.endswith(VOCAB_AXIS_SUFFIXES) and shape[1:] == theirs[1:]
                else "the models must have the same size"
            )
            raise CompatibilityError(
                f"{source}: tensor {name}: shape {list(shape)} in {target.label} but "
                f"{list(theirs)} in {other.label}; {fix}"
            )


def _effective_shape(model: ModelFiles, name: str) -> tuple[int, ...]:
    """A tensor's shape; a tied model's missing lm_head has its embeddings' shape."""
    if name in model.tensors:
        return model.tensors[name][1]
    embedding = embedding_name(model.tensors)
    return model.tensors[embedding][1] if embedding else ()


def _check_tying(target: ModelFiles, source: str) -> None:
    """The output takes the target's config: it must agree with the weights merged."""
    tied = bool(getattr(target.config, "tie_word_embeddings", False))
    has_head = HEAD in target.tensors
    if tied and has_head:
        raise CompatibilityError(
            f"{source}: {target.label}: config says tie_word_embeddings: true but the weights "
            f"hold a separate {HEAD}, which the merged model would silently ignore; set "
            "`tie_word_embeddings: false` in the target's config.json if the head is separate"
        )
    if not tied and not has_head:
        raise CompatibilityError(
            f"{source}: {target.label}: config says tie_word_embeddings: false but there is no "
            f"{HEAD}; the merged model would get an uninitialized head; set "
            "`tie_word_embeddings: true` in the target's config.json"
        )


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

