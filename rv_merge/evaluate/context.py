"""Where an evaluation reads and writes, and what runs it: decided once, at the command line.

`rv eval`, `rv demo` and the tests build one `EvalContext` and pass it down; nothing below
the command line reads the environment. lm-eval's task hooks receive the data folder as
task metadata (`rv_data`), the same way `lm-eval run --metadata '{"rv_data": DIR}'` passes it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

BACKENDS = ("hf", "vllm", "local-completions", "server")
DEFAULT_STORE = Path(".rv-cache")


@dataclass(frozen=True)
class Backend:
    """Which lm-eval model backend runs the jobs, with extra `model_args` passed through.

    hf: transformers on CPU or GPU (`device`); vllm: `tensor_parallel_size=..,
    data_parallel_size=..`; local-completions: an OpenAI-compatible server the user runs,
    serving each model under its local path (`base_url=..., num_concurrent=..`); server:
    servers rv starts from the command template `serve`, `parallel` at a time
    (rv_merge.evaluate.servers).
    """

    name: str = "hf"
    model_args: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    serve: str = ""
    parallel: int = 1
    serve_timeout: float = 600.0

    def __post_init__(self):
        if self.name not in BACKENDS:
            raise ValueError(f"backend {self.name!r}: choose one of {', '.join(BACKENDS)}")

    def args_for(self, model_path: Path) -> str:
        key = "model" if self.name == "local-completions" else "pretrained"
        base = f"{key}={model_path}"
        if self.name == "hf":
            base += f",dtype={self.dtype},device={self.device}"
        if self.name == "local-completions":
            base += f",tokenizer={model_path}"
        return base + (f",{self.model_args}" if self.model_args else "")


@dataclass(frozen=True)
class EvalContext:
    """Everything an evaluation needs besides the recipe."""

    tasks_dir: Path  # the task suite (evals/tasks)
    store: Path = DEFAULT_STORE  # merged models (<store>/models) and cached results (<store>/results)
    backend: Backend = Backend()
    data: Optional[Path] = None  # offline data folder; None: a recipe's eval.data, else the Hub
    offline: bool = False  # never reach the Hugging Face Hub

    @property
    def results_cache(self) -> Path:
        return self.store / "results"

    def with_data(self, data: Optional[Path]) -> "EvalContext":
        return replace(self, data=data)

    @property
    def task_metadata(self) -> dict:
        """What lm-eval hands to the task hooks (custom_dataset) of rv_ tasks."""
        return {"rv_data": str(self.data)} if self.data else {}
