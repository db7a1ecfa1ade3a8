"""Reports: statistics over stored results, report.md, plots, and the index of all recipes.

Everything here reads `reports/<recipe>/results.json` and `per_sample.json` (written by
`rv eval`), so `rv report` can rebuild every report without running a model.

Statistics: a delta between two models on one task is paired over the same documents:
mean of the per-document differences, standard error sd(d) / sqrt(n) (sd with n - 1), and a
95% interval of +-1.96 standard errors (normal approximation; weak below ~30 documents).
A drop from a task to its perturbed variant compares different prompts of the same
documents, possibly repeated, so it is treated as unpaired: sqrt(se1^2 + se2^2).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

Z95 = 1.96
MAIN_METRICS = ("exact_match,flexible-extract", "acc,none", "exact_match,letter",
                "exact_match,get-answer", "pass@1,sandbox")


@dataclass(frozen=True)
class Estimate:
    value: float
    stderr: float | None
    n: int

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.stderr is None:
            return None
        return self.value - Z95 * self.stderr, self.value + Z95 * self.stderr

    @property
    def excludes_zero(self) -> bool:
        low_high = self.interval
        return low_high is not None and (low_high[0] > 0 or low_high[1] < 0)


def mean_estimate(scores: list[float]) -> Estimate:
    n = len(scores)
    mean = sum(scores) / n
    if n < 2:
        return Estimate(mean, None, n)
    variance = sum((x - mean) ** 2 for x in scores) / (n - 1)
    return Estimate(mean, math.sqrt(variance / n), n)


def paired_delta(a: list[float], b: list[float]) -> Estimate:
    """b - a over the same documents."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same documents: {len(a)} vs {len(b)}")
    return mean_estimate([y - x for x, y in zip(a, b)])


def unpaired_delta(a: Estimate, b: Estimate) -> Estimate:
    """b - a for independent estimates."""
    stderr = None if a.stderr is None or b.stderr is None else math.hypot(a.stderr, b.stderr)
    return Estimate(b.value - a.value, stderr, min(a.n, b.n))


def main_metric(keys) -> str:
    keys = list(keys)
    return next((m for m in MAIN_METRICS if m in keys), sorted(keys)[0])


# ------------------------------------------------------------------ building the report


class Results:
    """results.json + per_sample.json of one recipe, with lookups."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = json.loads((folder / "results.json").read_text())
        self.samples = json.loads((folder / "per_sample.json").read_text())

    def scores(self, model: str, task: str, metric: str) -> list[float] | None:
        return self.samples.get(f"{model}|{task}|{metric}")

    def estimate(self, model: str, task: str, metric: str) -> Estimate | None:
        scores = self.scores(model, task, metric)
        return mean_estimate(scores) if scores else None

    def metrics(self, task: str) -> list[str]:
        found = {key.split("|")[2] for key in self.samples if key.split("|")[1] == task}
        return sorted(found, key=lambda m: (m != main_metric(found), m))


def comparison_rows(results: Results) -> list[dict]:
    """One row per task and metric: each model's score and the paired deltas vs the target."""
    meta = results.meta
    rows = []
    for task in meta["settings"]["tasks"]:
        think = meta.get("think_tasks", {}).get(task)
        for metric in results.metrics(task):
            row = {"task": task, "metric": metric, "main": metric == main_metric(results.metrics(task))}
            target = results.scores("target", task, metric)
            for label, model, name in (("target", "target", task), ("grpo", "grpo", task),
                                       ("merged", "merged", task), ("grpo+think", "grpo", think),
                                       ("merged+think", "merged", think)):
                scores = results.scores(model, name, metric) if name else None
                row[label] = mean_estimate(scores) if scores else None
                if scores and target and label != "target" and len(scores) == len(target):
                    row[f"delta {label}"] = paired_delta(target, scores)
            rows.append(row)
    return rows


def pair_rows(results: Results) -> list[dict]:
    """Main metric per task for SFT and GRPO with the paired GRPO - SFT delta: does the pair
    carry something to transfer?"""
    rows = []
    for task in results.meta["settings"]["tasks"]:
        metric = main_metric(results.metrics(task))
        sft, grpo = results.scores("sft", task, metric), results.scores("grpo", task, metric)
        if sft and grpo and len(sft) == len(grpo):
            rows.append({"task": task, "metric": metric, "sft": mean_estimate(sft), "grpo": mean_estimate(grpo),
                         "delta": paired_delta(sft, grpo)})
    return rows


def robustness_rows(results: Results, variants: dict[str, tuple[str, str]]) -> list[dict]:
    """Per adversarial variant: each model's clean and perturbed score, the drop, and whether
    the merged model's gain over the target (significant on the clean task) survives."""
    rows = []
    for variant, (base, perturbation) in variants.items():
        if variant not in results.meta["settings"]["tasks"] or base not in results.meta["settings"]["tasks"]:
            continue
        metric = main_metric(results.metrics(base))
        row = {"variant": variant, "base": base, "metric": metric, "perturbation": perturbation}
        for model in ("target", "merged"):
            clean, perturbed = results.estimate(model, base, metric), results.estimate(model, variant, metric)
            row[model] = (clean, perturbed, unpaired_delta(perturbed, clean) if clean and perturbed else None)
        clean_gain = _delta(results, base, metric)
        variant_gain = _delta(results, variant, metric)
        row["gain clean"], row["gain variant"] = clean_gain, variant_gain
        if clean_gain is None or variant_gain is None:
            row["survives"] = "n/a"
        elif not (clean_gain.excludes_zero and clean_gain.value > 0):
            row["survives"] = "no clean gain to keep"
        else:
            row["survives"] = "yes" if variant_gain.excludes_zero and variant_gain.value > 0 else "not shown"
        rows.append(row)
    return rows


def _delta(results: Results, task: str, metric: str) -> Estimate | None:
    a, b = results.scores("target", task, metric), results.scores("merged", task, metric)
    return paired_delta(a, b) if a and b and len(a) == len(b) else None


def write_report(folder: Path) -> None:
    """report.md and the PNG plots of one recipe, from its stored results."""
    from rv_merge.evaluate import suite

    results = Results(folder)
    variants = {t.task: (t.base, t.perturbation) for t in suite.list_tasks() if t.kind == "rv_adversarial"}
    variants.update({g.name: (g.base, g.perturbation) for g in suite.list_groups() if g.kind == "rv_adversarial"})
    rows, robust, sweep = comparison_rows(results), robustness_rows(results, variants), sweep_rows(results)
    text = _markdown(results.meta, rows, robust, sweep, pair_rows(results))
    (folder / "report.md").write_text(text, encoding="utf-8")
    _plot_deltas(rows, folder / "deltas.png")
    _plot_robustness(robust, folder / "robustness.png")
    if sweep:
        _plot_sweep(sweep, folder / "sweep.png")


def _fmt(estimate: Estimate | None, signed: bool = False) -> str:
    if estimate is None:
        return "-"
    value = f"{estimate.value:+.3f}" if signed else f"{estimate.value:.3f}"
    if estimate.stderr is None:
        return f"{value} (n={estimate.n})"
    if signed:
        low, high = estimate.interval
        mark = " *" if estimate.excludes_zero else ""
        return f"{value} [{low:+.3f}, {high:+.3f}]{mark}"
    return f"{value} ± {estimate.stderr:.3f}"


def describe_source(meta: dict) -> str:
    """`(GRPO - SFT)` for a pair; the vector file, its encoding and size for a vector."""
    models = meta["models"]
    vector = meta.get("vector")
    if not vector:
        return f"({models['grpo']['reference']} - {models['sft']['reference']})"
    settings, size = _vector_settings(vector)
    error = f", relative error {vector['relative_error']:.3f} vs its source" if vector["compression"] else ""
    return f"vector `{models['vector']['reference']}` ({vector['encoding']}{': ' + settings if settings else ''}, {size}{error})"


def _vector_settings(vector: dict) -> tuple[str, str]:
    """A vector source's compression settings ("method lowrank, rank 16") and size ("21.9 MiB")."""
    return ", ".join(f"{k} {v}" for k, v in vector["compression"].items()), f"{vector['size_bytes'] / 2**20:.1f} MiB"


def sweep_rows(results: Results) -> list[dict]:
    """Main metric per task and alpha, with the paired delta against the target."""
    rows = []
    for task in results.meta["settings"]["tasks"]:
        metric = main_metric(results.metrics(task))
        target = results.scores("target", task, metric)
        for label, alpha in sorted(results.meta.get("sweep", {}).items(), key=lambda item: item[1]):
            scores = results.scores(label, task, metric)
            if not scores:
                continue
            delta = paired_delta(target, scores) if target and len(target) == len(scores) else None
            rows.append({"task": task, "metric": metric, "alpha": alpha, "score": mean_estimate(scores),
                         "delta": delta, "target": mean_estimate(target) if target else None})
    return rows


def _plot_sweep(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for index, task in enumerate(dict.fromkeys(r["task"] for r in rows)):
        mine = [r for r in rows if r["task"] == task]
        color = f"C{index}"
        ax.errorbar([r["alpha"] for r in mine], [r["score"].value for r in mine],
                    yerr=[Z95 * (r["score"].stderr or 0) for r in mine], marker="o", capsize=3, color=color,
                    label=task)
        if mine[0]["target"]:
            ax.axhline(mine[0]["target"].value, color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("alpha (dotted: the target)")
    ax.set_ylabel("score (main metric), 95% interval")
    ax.set_title("Accuracy against alpha")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(meta: dict, rows: list[dict], robust: list[dict], sweep: list[dict], pair: list[dict]) -> str:
    recipe = meta["recipe"]
    lines = [
        f"# rv-merge report: {meta['name']}", "",
        f"Recipe `{meta['recipe_file']}`: {recipe['base_model']} {'+' if recipe['parameters']['sign'] == 1 else '-'} "
        f"alpha * {describe_source(meta)}, alpha = {recipe['parameters']['alpha']}.", "",
        "Scores are means over documents ± standard error. Deltas are paired over the same documents "
        "(merged or GRPO minus the target) with 95% intervals; `*` marks an interval that excludes zero. "
        "With few documents the intervals are wide and the normal approximation is rough: read "
        "unmarked differences as not shown.", "",
    ]
    if pair:
        lines += ["## The pair: GRPO vs SFT (main metric)", "",
                  "The vector can only transfer what GRPO added to SFT: this is that gain, paired over the same "
                  "documents.", "", "| task | metric | SFT | GRPO | Δ GRPO − SFT [95% CI] |", "|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['metric']} | {_fmt(r['sft'])} | {_fmt(r['grpo'])} | {_fmt(r['delta'], True)} |"
                  for r in pair]
        lines.append("")
    lines += [
        "## Target vs merged (and the paper's think-step-by-step conditions)", "",
        "| task | metric | target | GRPO | merged | GRPO + think | merged + think | Δ merged − target | Δ merged+think − target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join([
            row["task"], row["metric"] + (" (main)" if row["main"] else ""),
            _fmt(row["target"]), _fmt(row["grpo"]), _fmt(row["merged"]), _fmt(row["grpo+think"]),
            _fmt(row["merged+think"]), _fmt(row.get("delta merged"), True),
            _fmt(row.get("delta merged+think"), True)]) + " |")
    lines += ["", "## Robustness: clean task vs each adversarial variant (main metric)", "",
              "| variant | perturbation | target clean → variant (drop) | merged clean → variant (drop) | "
              "Δ merged − target, clean | Δ merged − target, variant | gain survives |",
              "|---|---|---|---|---|---|---|"]
    for row in robust:
        cells = []
        for model in ("target", "merged"):
            clean, perturbed, drop = row[model]
            cells.append(f"{_fmt(clean)} → {_fmt(perturbed)} ({_fmt(drop, True)})")
        lines.append(f"| {row['variant']} | {row['perturbation']} | {cells[0]} | {cells[1]} | "
                     f"{_fmt(row['gain clean'], True)} | {_fmt(row['gain variant'], True)} | {row['survives']} |")
    lines += ["", "![deltas](deltas.png)", "", "![robustness](robustness.png)", ""]
    if sweep:
        lines += ["## Alpha sweep (main metric)", "",
                  "Every alpha evaluated on the same documents, each by rewriting one loaded model's weights "
                  "in place to the merge for that alpha (bit for bit what `mergekit-yaml` writes); Δ is "
                  "paired against the target.", "",
                  "| task | alpha | score | Δ − target [95% CI] |", "|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['alpha']:g} | {_fmt(r['score'])} | {_fmt(r['delta'], True)} |" for r in sweep]
        lines += ["", "![alpha sweep](sweep.png)", ""]
    lines += ["## How it was run", ""]
    settings = meta["settings"]
    lines += [
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['started']}; wall time {meta['wall_s']:.1f} s ({meta['jobs_run']} evaluations run, "
        f"{meta['jobs_cached']} from the cache).",
        f"- Backend: {meta['backend']['name']} ({meta['backend']['model_args'] or 'default args'}; "
        f"dtype {meta['backend']['dtype']}, device {meta['backend']['device']}).",
        f"- Settings: limit {settings['limit']} documents per task"
        + "".join(f", {task} {n}" for task, n in settings.get("limits", {}).items()) + ", few-shot "
        f"{settings['num_fewshot'] if settings['num_fewshot'] is not None else 'task default'}, max new tokens "
        f"{settings['max_gen_toks'] or 'task default'}, greedy decoding, seed {settings['seed']} "
        f"(python, numpy, torch and few-shot sampling), batch size {settings['batch_size']}.",
        f"- Data: {meta['data']}.",
        f"- Code execution (HumanEval): {meta['sandbox']}.",
        "- Models: " + "; ".join(f"{label} `{m.get('path', m['reference'])}` (fingerprint {m['fingerprint']})"
                                 for label, m in meta["models"].items()) + ".",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "- Documents per task: " + ", ".join(
            f"{task} {n}" for task, n in sorted(meta["documents"].items())) + ".",
    ]
    return "\n".join(lines) + "\n"


def _plot_deltas(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(r["task"], r.get("delta merged")) for r in rows if r["main"]]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(shown) + 1.5))
    for y, (task, delta) in enumerate(shown):
        if delta is None:
            continue
        low_high = delta.interval or (delta.value, delta.value)
        ax.errorbar(delta.value, y, xerr=[[delta.value - low_high[0]], [low_high[1] - delta.value]],
                    fmt="o", color="tab:red" if delta.excludes_zero else "tab:gray", capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(shown)), [t for t, _ in shown])
    ax.set_xlabel("merged − target (main metric), 95% interval")
    ax.set_title("Effect of the reasoning vector")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_robustness(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(rows) + 2), 4))
    width = 0.2
    for i, row in enumerate(rows):
        for j, (model, color) in enumerate((("target", "tab:blue"), ("merged", "tab:orange"))):
            clean, perturbed, _ = row[model]
            for k, estimate in enumerate((clean, perturbed)):
                if estimate is None:
                    continue
                x = i + (2 * j + k - 1.5) * width
                ax.bar(x, estimate.value, width, color=color, alpha=1.0 if k == 0 else 0.5,
                       yerr=Z95 * estimate.stderr if estimate.stderr else None, capsize=2,
                       label=f"{model} {'clean' if k == 0 else 'variant'}" if i == 0 else None)
    ax.set_xticks(range(len(rows)), [r["variant"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("score (main metric), 95% interval")
    ax.set_title("Robustness: clean vs perturbed")
    if rows:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short_source(meta: dict) -> str:
    """The index's vector column: the pair, or the vector file's encoding and size."""
    sign = "+" if meta["recipe"]["parameters"]["sign"] == 1 else "−"
    vector = meta.get("vector")
    if not vector:
        return f"{sign} pair difference"
    settings, size = _vector_settings(vector)
    return f"{sign} {vector['encoding']}{' (' + settings + ')' if settings else ''}, {size}"


def write_index(reports_dir: Path) -> None:
    """reports/README.md and reports/index.html: every recipe's main deltas side by side."""
    folders = sorted(p.parent for p in reports_dir.glob("*/results.json"))
    table = []
    for folder in folders:
        results = Results(folder)
        source = _short_source(results.meta)
        for row in comparison_rows(results):
            if row["main"]:
                table.append((folder.name, source, row["task"], row["metric"], row["target"], row["merged"],
                              row.get("delta merged")))
    header = ["recipe", "vector", "task", "metric", "target", "merged", "Δ merged − target [95% CI]"]
    lines = ["# rv-merge reports", "", "Each recipe's main metric per task; details in each folder's "
             "report.md. `*`: the 95% interval excludes zero.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, source, task, metric, target, merged, delta in table:
        lines.append(f"| [{name}]({name}/report.md) | {source} | {task} | {metric} | {_fmt(target)} | "
                     f"{_fmt(merged)} | {_fmt(delta, True)} |")
    (reports_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            name, source, task, metric, _fmt(target), _fmt(merged), _fmt(delta, True))) + "</tr>"
        for name, source, task, metric, target, merged, delta in table)
    (reports_dir / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>rv-merge reports</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>"
        "<h1>rv-merge reports</h1><p>Main metric per task; * marks a 95% interval that excludes zero.</p>"
        "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" + cells + "</table>",
        encoding="utf-8")
