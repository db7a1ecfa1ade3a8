"""Sibling targets for the demo: fine-tunes of the pair's initialization, never trained with RL.

The paper adds its vector to a *sibling* (Qwen2.5-1.5B-Instruct: the pair's family, able to
do the task, never RL-trained on it), not to the pair's initialization. The demo's init,
SmolLM2-135M-Instruct, never learned the task's answer format and scores 0, so a vector
added to it can show nothing. The siblings here can answer in the format:

- `near`: SFT's recipe on other problems (disjoint from the pair's SFT and GRPO problems)
  with another seed;
- `far`: other data and another schedule: three of the six problem templates only, a quarter
  of the demonstrations answer-only (SFT's: half), twice the learning rate, half the steps.

siblings.json records, for each, how it was made and how far it sits from SFT (cosine and
norm ratio of its update vs SFT's, per layer and overall: rv_merge.vectors.similarity),
with the fingerprints it was computed from, so a retrained model makes it stale.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rv_merge.atomic_files import write_json
from rv_merge.demo.pair.problems import generate
from rv_merge.demo.pair.train import Budget, grpo_problems, sft_problems, train_sft
from rv_merge.recipe.model_locations import fingerprint_folder
from rv_merge.vectors.similarity import update_similarity


@dataclass(frozen=True)
class SiblingDesign:
    name: str
    summary: str
    budget: Budget
    templates: tuple[str, ...] = ()  # train on problems of these templates only (empty: all six)


SIBLINGS = (
    SiblingDesign("near", "SFT's recipe (100 steps, half the demonstrations worked) on 800 other problems, seed 1",
                  replace(Budget(), seed=1)),
    # With half its demonstrations answer-only, like SFT's, this design always answered at once
    # and scored 0.5% (build of 2026-12-06, bf16 training): a target at the floor.
    SiblingDesign("far", "other data and steps: 3 of the 6 templates (buy_give, packs, reading), a quarter of "
                  "the demonstrations answer-only (SFT: half), learning rate 1e-4 (2x), 50 steps (half), seed 2",
                  replace(Budget(), seed=2, sft_steps=50, sft_learning_rate=1e-4, direct_fraction=0.25),
                  ("buy_give", "packs", "reading")),
)


def sibling_problems(design: SiblingDesign, pair_budget: Budget) -> list[dict]:
    """`design.budget.sft_examples` training problems, none of them the pair's SFT or GRPO problems."""
    key = lambda p: (p["template"], tuple(p["numbers"]))  # noqa: E731
    taken = {key(p) for p in sft_problems(pair_budget) + grpo_problems(pair_budget)}
    wanted = design.budget.sft_examples
    pool = generate("train", wanted * 6, design.budget.seed)  # enough for any template filter here
    chosen = [p for p in pool if key(p) not in taken and (not design.templates or p["template"] in design.templates)]
    if len(chosen) < wanted:
        raise RuntimeError(f"sibling {design.name}: only {len(chosen)} fresh problems of {wanted}")
    return chosen[:wanted]


def build_siblings(root: Path, pair_budget: Budget, designs: tuple[SiblingDesign, ...] = SIBLINGS) -> dict:
    """Train the missing siblings under root/<name>/; return (and write) root/siblings.json."""
    init, sft = root / "instruct", root / "sft"
    summary_path = root / "siblings.json"
    old = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary = {}
    for design in designs:
        folder = root / design.name
        seconds = old.get(design.name, {}).get("training_seconds")
        if not (folder / "config.json").is_file():
            print(f"training sibling target `{design.name}`: {design.summary} ...", flush=True)
            started = time.monotonic()
            train_sft(init, folder, design.budget, sibling_problems(design, pair_budget))
            seconds = round(time.monotonic() - started)
        inputs = {"init": fingerprint_folder(init), "sft": fingerprint_folder(sft),
                  "target": fingerprint_folder(folder)}
        entry = old.get(design.name)
        if not entry or entry.get("fingerprints") != inputs:  # new, or a model was retrained
            entry = {"path": str(folder), "summary": design.summary, "budget": asdict(design.budget),
                     "templates": list(design.templates), "training_seconds": seconds, "fingerprints": inputs,
                     "distance_from_sft": update_similarity(init, sft, folder)}
        summary[design.name] = entry
    write_json(summary_path, summary)
    return summary
