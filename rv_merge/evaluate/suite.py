"""The task suite in evals/tasks: what each task is, for `rv tasks` and the eval runner."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

from rv_merge.patches.lm_eval import read_task_yaml

TASKS_DIR = Path(__file__).resolve().parents[2] / "evals" / "tasks"  # the suite shipped with rv-merge


@dataclass(frozen=True)
class TaskInfo:
    task: str
    benchmark: str
    kind: str  # rv_base, rv_think or rv_adversarial
    base: str  # the task it varies ("" for a base task)
    perturbation: str
    metric: str  # metric names, with the answer filters they are computed under
    file: str
    output_type: str = ""  # generate_until, loglikelihood, multiple_choice, ...


@dataclass(frozen=True)
class GroupInfo:
    name: str
    kind: str
    base: str
    perturbation: str
    tasks: tuple[str, ...]
    file: str


def list_tasks(tasks_dir: Path = TASKS_DIR) -> list[TaskInfo]:
    """Every rv_ task defined under tasks_dir (includes resolved, hooks not imported)."""
    found = []
    for path, config in _configs(tasks_dir):
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
            output_type=config.get("output_type", ""),
        ))
    return found


def list_groups(tasks_dir: Path = TASKS_DIR) -> list[GroupInfo]:
    """Every group (e.g. rv_bbh, its 27 subtasks) defined under tasks_dir."""
    groups = []
    for path, config in _configs(tasks_dir):
        if "group" in config:
            metadata = config.get("metadata") or {}
            groups.append(GroupInfo(config["group"], metadata.get("kind", "rv_base"), metadata.get("base", ""),
                                    metadata.get("perturbation", ""), tuple(config["task"]),
                                    str(path.relative_to(tasks_dir))))
    return groups


def task_files(name: str, tasks_dir: Path = TASKS_DIR) -> set[Path]:
    """The files that define a task or group: its YAML, the YAML it includes, their hooks."""
    groups = {g.name: g for g in list_groups(tasks_dir)}
    if name in groups:
        files = {tasks_dir / groups[name].file}
        for member in groups[name].tasks:
            files |= task_files(member, tasks_dir)
        return files
    tasks = {t.task: t for t in list_tasks(tasks_dir)}
    if name not in tasks:
        raise KeyError(f"unknown task {name!r}; `rv tasks` lists them")
    files, pending = set(), [tasks_dir / tasks[name].file]
    while pending:
        path = pending.pop().resolve()
        if path in files:
            continue
        files.add(path)
        files |= set(path.parent.glob("*.py"))
        include = _raw(path).get("include")
        pending += [path.parent / inc for inc in ([include] if isinstance(include, str) else include or [])]
    return files


def benchmarks_of(name: str, tasks_dir: Path = TASKS_DIR) -> set[str]:
    """The data folders (under the offline data folder) a task or group reads."""
    groups = {g.name: g for g in list_groups(tasks_dir)}
    members = groups[name].tasks if name in groups else (name,)
    by_task = {t.task: t.benchmark.split("/")[0] for t in list_tasks(tasks_dir)}
    return {by_task[m] for m in members if by_task.get(m)}


def output_types(name: str, tasks_dir: Path = TASKS_DIR) -> set[str]:
    """The lm-eval output types of a task or of a group's members."""
    groups = {g.name: g for g in list_groups(tasks_dir)}
    members = groups[name].tasks if name in groups else (name,)
    by_task = {t.task: t.output_type for t in list_tasks(tasks_dir)}
    return {by_task[m] for m in members if m in by_task}


def all_names(tasks_dir: Path = TASKS_DIR) -> set[str]:
    return {t.task for t in list_tasks(tasks_dir)} | {g.name for g in list_groups(tasks_dir)}


@functools.lru_cache(maxsize=4)
def _configs(tasks_dir: Path) -> tuple[tuple[Path, dict], ...]:
    """Each YAML file under tasks_dir with its includes resolved (read once per process)."""
    return tuple((path, read_task_yaml(path)) for path in sorted(tasks_dir.rglob("*.yaml")))


def _raw(path: Path) -> dict:
    return read_task_yaml(path, follow_includes=False)


def _metric(config: dict) -> str:
    names = [m["metric"] if isinstance(m["metric"], str) else "custom" for m in config.get("metric_list") or []]
    filters = [f["name"] for f in config.get("filter_list") or [] if isinstance(f, dict)]
    return ", ".join(names) + (f" ({', '.join(filters)})" if filters else "")


def adversarial_variants(tasks_dir: Path = TASKS_DIR) -> dict[str, tuple[str, str]]:
    """Each adversarial task or group -> (the task it perturbs, what the perturbation does)."""
    variants = {t.task: (t.base, t.perturbation) for t in list_tasks(tasks_dir) if t.kind == "rv_adversarial"}
    variants.update({g.name: (g.base, g.perturbation) for g in list_groups(tasks_dir) if g.kind == "rv_adversarial"})
    return variants


def format_table(tasks: list[TaskInfo]) -> str:
    columns = ("task", "kind", "base", "perturbation", "metric")
    rows = [columns] + [tuple(getattr(t, c) or "-" for c in columns) for t in tasks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def as_json(tasks: list[TaskInfo]) -> list[dict]:
    return [asdict(t) for t in tasks]
