"""BIG-Bench Hard data: test items (Hub or the data folder) plus the three CoT exemplars.

The exemplars are the original BBH chain-of-thought prompts as shipped in lm-eval's own
task files (`lm_eval/tasks/bbh/cot_fewshot/<subtask>.yaml`); they are read from the
installed lm-eval at run time rather than copied into this repository.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import datasets
import yaml

from rv_merge.errors import DataError
from rv_merge.evaluate import data


def load(subtask: str, rv_data: Optional[str] = None, **_metadata):
    splits = data.load("bbh", "SaylorTwift/bbh", subtask, {"test": f"{subtask}.jsonl"}, rv_data)
    test = splits["test"]
    return datasets.DatasetDict({"test": test, "fewshot": datasets.Dataset.from_list(cot_exemplars(subtask))})


def cot_exemplars(subtask: str) -> list[dict]:
    spec = importlib.util.find_spec("lm_eval")
    path = Path(spec.submodule_search_locations[0]) / "tasks" / "bbh" / "cot_fewshot" / f"{subtask}.yaml"
    if not path.is_file():
        raise DataError(f"BBH exemplars for {subtask} not found at {path} (lm-eval 0.4.x layout)")
    samples = yaml.safe_load(path.read_text(encoding="utf-8"))["fewshot_config"]["samples"]
    return [{"input": s["input"], "target": s["target"]} for s in samples]
