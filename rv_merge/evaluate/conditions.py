"""The models a recipe is evaluated on: the target, its baselines, and the merge.

The merged model comes from the store (merged there first if missing) or, for an alpha
sweep, is one loaded target whose weights are rewritten per alpha (no model written). The
SFT and GRPO baselines of a vector recipe are the models the vector was extracted from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rv_merge.errors import RecipeError
from rv_merge.errors import VectorFileError
from rv_merge.evaluate.jobs import ModelUnderTest, Steering
from rv_merge.merge.in_memory import InMemoryMerge, sweep_label
from rv_merge.merge.model_store import merge_key, merged_model
from rv_merge.recipe.model_locations import fingerprint_folder, fingerprint_model, locate_model
from rv_merge.recipe.schema import EvalSettings, Recipe, SteeringSettings
from rv_merge.steering.artifact import load_vectors, model_shape
from rv_merge.recipe.vector_folder import read_metadata, size_on_disk


@dataclass
class Conditions:
    """The models of one recipe's evaluation, by label, and how the merged one was obtained."""

    models: dict[str, ModelUnderTest]
    references: dict[str, str]  # role -> model reference (target, sft, grpo, vector)
    fingerprints: dict[str, str]  # role -> fingerprint
    sweep: dict[str, float] = field(default_factory=dict)  # label -> alpha
    steering: dict[str, dict] = field(default_factory=dict)  # label -> {"vectors": name, "scale": scale}
    merged_path: Optional[Path] = None  # the store folder (None for a sweep)
    merged_now: bool = False


def conditions_for(recipe: Recipe, source: str, settings: EvalSettings, store: Path) -> Conditions:
    references = {"target": recipe.target, **recipe.sources}
    fingerprints = {role: fingerprint_model(ref, source) for role, ref in references.items()}
    inputs = dict(fingerprints)  # what the merged weights depend on
    for role in [r for r in ("sft", "grpo") if r in settings.baselines and r not in references]:
        references[role] = _vector_source(recipe, source, role)
        fingerprints[role] = fingerprint_model(references[role], source)
    models = {label: ModelUnderTest(label, locate_model(references[label], source), fingerprints[label])
              for label in ("target", "sft", "grpo")
              if label in references and label in {"target", *settings.baselines}}
    conditions = Conditions(models, references, fingerprints)
    if settings.alphas:
        print(f"{source}: alpha sweep {settings.alphas}, evaluated in memory (no model written)", flush=True)
        merge, target_path = InMemoryMerge(recipe, source), models["target"].path
        for alpha in settings.alphas:
            label = "merged" if alpha == recipe.parameters.alpha else sweep_label(alpha)
            # Its own key: results of an in-memory merge are never served for a written one.
            fingerprint = "in-memory-" + merge_key(_with_alpha(recipe, alpha), inputs)
            models[label] = ModelUnderTest(label, target_path, fingerprint, merge, recipe.parameters.sign * alpha)
            conditions.sweep[label] = alpha
    for steering in settings.steering:
        _add_steering(conditions, steering, source)
    if not settings.alphas:
        print(f"{source}: merging (or reusing the stored merge) ...", flush=True)
        conditions.merged_path, conditions.merged_now = merged_model(recipe, source, inputs, store)
        models["merged"] = ModelUnderTest("merged", conditions.merged_path, conditions.merged_path.name)
    return conditions


def _add_steering(conditions: Conditions, steering: SteeringSettings, source: str) -> None:
    """One steered target per scale (hooks on the loaded target; rv_merge.steering.apply)."""
    folder, name = Path(steering.vectors), steering.display_name
    try:
        vectors = load_vectors(folder)
    except VectorFileError as error:
        raise RecipeError(f"{source}: eval.steering {name}: {error.message}") from None
    target = conditions.models["target"]
    _, layers, hidden = model_shape(json.loads((target.path / "config.json").read_text()))
    if (vectors.layers, vectors.hidden_size) != (layers, hidden):
        raise RecipeError(f"{source}: eval.steering {name}: {folder} has {vectors.layers} x {vectors.hidden_size} "
                          f"vectors; the target is {layers} layers x hidden size {hidden}")
    if steering.layers and steering.layers[1] >= layers:
        raise RecipeError(f"{source}: eval.steering {name}: layers {steering.layers}: the target has layers 0-{layers - 1}")
    span = tuple(steering.layers) if steering.layers else None
    print(f"{source}: steering vectors {folder} at scales {steering.scales}, by hooks on the target", flush=True)
    for scale in steering.scales:
        label = steering_label(name, scale)
        key = json.dumps([target.fingerprint, fingerprint_folder(folder), scale, span])
        fingerprint = "steered-" + hashlib.sha256(key.encode()).hexdigest()[:20]
        conditions.models[label] = ModelUnderTest(label, target.path, fingerprint,
                                                  steering=Steering(folder.resolve(), scale, span))
        conditions.steering[label] = {"vectors": name, "scale": scale}


def steering_label(name: str, scale: float) -> str:
    return f"steer:{name}={scale:g}"


def _with_alpha(recipe: Recipe, alpha: float) -> Recipe:
    return recipe.model_copy(update={"parameters": recipe.parameters.model_copy(update={"alpha": alpha})})


def _vector_source(recipe: Recipe, source: str, role: str) -> str:
    """The SFT or GRPO model a vector was extracted from, as a baseline: still on disk, unchanged."""
    vector = locate_model(recipe.source("vector"), source)
    recorded = read_metadata(vector).get("sources", {}).get(role, {})
    path = recorded.get("path")
    if not path or not Path(path).is_dir():
        raise RecipeError(f"{source}: eval.baselines lists {role}, but the {role} model of vector {vector} "
                          f"({path or 'not recorded'}) is not on disk; remove it from `baselines`")
    if fingerprint_folder(Path(path)) != recorded.get("fingerprint"):
        raise RecipeError(f"{source}: eval.baselines lists {role}, but {path} changed since vector {vector} was "
                          f"extracted from it (fingerprint {fingerprint_folder(Path(path))}, recorded "
                          f"{recorded.get('fingerprint')}); extract the vector again or remove {role} from `baselines`")
    return path


def vector_summary(recipe: Recipe, source: str) -> dict | None:
    """What the report says about a vector source: encoding, size, reconstruction error."""
    if recipe.source("vector") is None:
        return None
    folder = locate_model(recipe.source("vector"), source)
    metadata = read_metadata(folder)
    compression = {k: v for k, v in (metadata.get("compression") or {}).items() if v is not None and k != "inputs"}
    return {"path": str(folder), "encoding": metadata["encoding"], "compression": compression,
            "size_bytes": size_on_disk(folder), "relative_error": metadata.get("relative_error", 0.0)}
