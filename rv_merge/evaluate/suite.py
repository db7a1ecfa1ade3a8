"""The task suite in evals/tasks: what each task is, for `rv tasks` and the eval runner."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parents[2] / "evals" / "tasks"


@dataclass(frozen=True)
class TaskInfo:
    task: str
    benchmark: str
    kind: str  # rv_base, rv_think or rv_adversarial
    base: str  # the task it varies ("" for a base task)
    perturbation: str
    metric: str  # metric names, with the answer filters they are computed under
    file: str


def list_tasks(tasks_dir: Path = TASKS_DIR) -> list[TaskInfo]:
    """Every rv_ task defined under tasks_dir (includes resolved, hooks not imported)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    found = []
    for path in sorted(tasks_dir.rglob("*.yaml")):
        config = load_yaml(path, resolve_func=False)
        if "task" not in config or "group" in config:
            continue
        tags = config.get("tag") or []
        metadata = config.get("metadata") or {}
        subtask = (config.get("dataset_kwargs") or {}).get("subtask")
        found.append(TaskInfo(
            task=config["task"],
            benchmark=metadata.get("benchmark", "") + (f"/{subtask}" if subtask else ""),
            kind=tags[0] if isinstance(tags, list) and tags else str(tags),
            base=metadata.get("base", ""),
            perturbation=metadata.get("perturbation", ""),
            metric=_metric(config),
            file=str(path.relative_to(tasks_dir)),
        ))
    return found


def _metric(config: dict) -> str:
    names = [m["metric"] if isinstance(m["metric"], str) else "custom" for m in config.get("metric_list") or []]
    filters = [f["name"] for f in config.get("filter_list") or [] if isinstance(f, dict)]
    return ", ".join(names) + (f" ({', '.join(filters)})" if filters else "")


def format_table(tasks: list[TaskInfo]) -> str:
    columns = ("task", "kind", "base", "perturbation", "metric")
    rows = [columns] + [tuple(getattr(t, c) or "-" for c in columns) for t in tasks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def as_json(tasks: list[TaskInfo]) -> list[dict]:
    return [asdict(t) for t in tasks]
