"""The demo's one page: what the SmolLM2 vector moved, per target (reports/smollm2-demo.md).

Read from what `rv eval` stored (reports/<recipe>/results.json, per_sample.json) and from the
siblings' record (siblings.json, copied into reports/ by `rv demo`), so `rv report` rebuilds
it. The README's demo section is this page's tables, put there by `rv report --readme`.
"""

from __future__ import annotations

import json
from pathlib import Path

from rv_merge.atomic_files import write_text
from rv_merge.report.markdown import format_estimate
from rv_merge.report.tables import Results, power_rows
from rv_merge.statistics import main_metric, mean_estimate, paired_delta
from rv_merge.vectors.rounding import describe_loss

PAGE = "smollm2-demo.md"
CURVES = "smollm2-demo.png"
SIBLINGS_COPY = "smollm2-siblings.json"
PAIR_COPY = "smollm2-pair.json"
TARGETS = {"smollm2-add": "init (SmolLM2-135M-Instruct)", "smollm2-near": "near sibling",
           "smollm2-far": "far sibling"}
DTYPE_PAIR = ("smollm2-near-add", "smollm2-near-add-bf16")
STEERING_RECIPE = "smollm2-steer"
STEERING_TITLES = {"steer-extracted": "extracted steering", "steer-grpo": "steering GRPO"}  # eval.steering names
SUMMARIZED = [*TARGETS, *DTYPE_PAIR, STEERING_RECIPE]  # the report folders this page reads
TASK = "rv_gsm8k"
README_START, README_END = "<!-- demo-summary: start (rv report --readme) -->", "<!-- demo-summary: end -->"


def has_demo_results(reports: Path) -> bool:
    return any((reports / name / "results.json").is_file() for name in SUMMARIZED)


def write_demo_summary(reports: Path, models_root: Path | None = None) -> Path:
    """Write reports/smollm2-demo.md; `models_root`: copy its siblings.json and pair.json into
    reports/ first."""
    for record, copy in (("siblings.json", SIBLINGS_COPY), ("pair.json", PAIR_COPY)):
        if models_root is not None and (models_root / record).is_file():
            write_text(reports / copy, (models_root / record).read_text())
    page = reports / PAGE
    plot_alpha_curves(reports, reports / CURVES)
    write_text(page, "# The SmolLM2 demo: what the reasoning vector moves\n\n" + summary_tables(reports))
    return page


def summary_tables(reports: Path, links: str = "") -> str:
    """The demo's tables in markdown (empty sections are left out); report links start with `links`."""
    found = {name: Results(reports / name) for name in SUMMARIZED if (reports / name / "results.json").is_file()}
    lines = [f"Main metric of `{TASK}` (exact match, last number) on the same held-out problems in every row. "
             "Δ is paired with the row's target: Newcombe's 95% score interval, and `*` where the exact "
             "McNemar test rejects \"no difference\" at 5%; unmarked differences are not shown.", ""]
    lines += _pair_section(found)
    lines += _steering_section(found, reports, links)
    lines += _sibling_section(reports)
    lines += _target_section(found, links)
    lines += _dtype_section(found)
    return "\n".join(lines) + "\n"


def _pair_section(found: dict[str, Results]) -> list[str]:
    results = next((r for r in found.values() if r.scores("sft", TASK, _metric(r))), None)
    if results is None:
        return []
    metric = _metric(results)
    sft, grpo = results.scores("sft", TASK, metric), results.scores("grpo", TASK, metric)
    return ["## The pair", "", "| SFT | GRPO | Δ GRPO − SFT |", "|---|---|---|",
            f"| {format_estimate(mean_estimate(sft))} | {format_estimate(mean_estimate(grpo))} | "
            f"{format_estimate(paired_delta(sft, grpo), True)} |", ""]


def _steered(results: Results, name: str, scale: float = 1.0) -> str | None:
    """The label of the target + `scale` x the steering vectors called `name`, if evaluated."""
    conditions = (results.meta.get("steering") or {}).get("conditions", [])
    return next((c["label"] for c in conditions if c["vectors"] == name and c["scale"] == scale), None)


def _steering_section(found: dict[str, Results], reports: Path, links: str) -> list[str]:
    """Steering GRPO against full GRPO from SFT: scores, paired deltas, what was trained, how long."""
    results = found.get(STEERING_RECIPE)
    if results is None:
        return []
    metric = _metric(results)
    sft, grpo = results.scores("target", TASK, metric), results.scores("grpo", TASK, metric)
    entries = {entry["name"]: entry for entry in results.meta["steering"]["entries"]}
    trained = entries.get("steer-grpo", {}).get("made_by", {})
    full = json.loads((reports / PAIR_COPY).read_text()).get("grpo_training", {}) if (reports / PAIR_COPY).is_file() else {}
    rows = [("SFT", sft, "-", "-"),
            ("full GRPO", grpo, f"{full['trainable_parameters']:,}" if full else "all", _minutes(full.get("seconds")))]
    for condition in results.meta["steering"]["conditions"]:
        entry = entries[condition["vectors"]]
        how = (_minutes(trained.get("training_seconds")) if condition["vectors"] == "steer-grpo"
               else "none (extracted)")
        rows.append((f"SFT + {condition['scale']:g} x {STEERING_TITLES.get(condition['vectors'], condition['vectors'])}",
                     results.scores(condition["label"], TASK, metric), f"{entry['numbers']:,}", how))
    rows.append(("SFT + v (merged in memory: GRPO again, up to rounding)", results.scores("merged", TASK, metric),
                 "-", "-"))
    lines = [f"## [Steering GRPO against full GRPO]({links}{STEERING_RECIPE}/report.md)", "",
             "From the pair's SFT model (arXiv 2505.18706's claim): steering GRPO trains one vector per layer "
             f"with every weight frozen, on the full GRPO's budget ({trained.get('steps', '?')} steps of "
             f"{trained.get('prompts_per_step', '?')} prompts x {trained.get('num_generations', '?')} completions, "
             f"the same problems and seed), learning rate {trained.get('learning_rate', '?')} (the authors' "
             "range; full GRPO's was 2e-5).", "",
             "| model | trainable numbers | training | score | Δ − SFT | Δ − full GRPO |", "|---|---|---|---|---|---|"]
    for name, scores, numbers, how in rows:
        if not scores:
            continue
        cells = [format_estimate(mean_estimate(scores))] + [
            format_estimate(paired_delta(base, scores), True) if base is not scores else "-" for base in (sft, grpo)]
        lines.append(f"| {name} | {numbers} | {how} | " + " | ".join(cells) + " |")
    return lines + [""]


def _minutes(seconds: float | None) -> str:
    return f"{seconds / 60:.1f} min" if seconds else "not recorded"


def _sibling_section(reports: Path) -> list[str]:
    if not (reports / SIBLINGS_COPY).is_file():
        return []
    siblings = json.loads((reports / SIBLINGS_COPY).read_text())
    lines = ["## The sibling targets", "",
             "Fine-tuned from the pair's initialization, never trained with RL. Distance from SFT: the cosine "
             "and norm ratio of (target − init) against (SFT − init), over all weights (per layer: "
             f"`{SIBLINGS_COPY}`).", "",
             "| target | how it was made | cosine with SFT's update | norm ratio | training |", "|---|---|---|---|---|"]
    for name, sibling in siblings.items():
        overall = sibling["distance_from_sft"]["overall"]
        seconds = sibling.get("training_seconds")
        lines.append(f"| {name} | {sibling['summary']} | {overall['cosine']:.3f} | {overall['norm_ratio']:.3f} | "
                     f"{f'{seconds / 60:.1f} min' if seconds else '-'} |")
    return lines + [""]


def _target_section(found: dict[str, Results], links: str) -> list[str]:
    rows, verdicts = [], []
    for name, label in TARGETS.items():
        results = found.get(name)
        if results is None:
            continue
        shown: dict[str, list[str]] = {"up": [], "down": [], "not shown": []}
        metric, sweep = _metric(results), results.meta.get("sweep", {})
        target = results.scores("target", TASK, metric)
        think = results.meta.get("think_tasks", {}).get(TASK)
        minus = next((k for k, alpha in sweep.items() if alpha == -1), None)
        conditions = [("target + v", "merged", TASK), ("target + v + think", "merged", think),
                      ("target − v", minus, TASK),
                      *((f"target + {title}", _steered(results, name), TASK) for name, title in STEERING_TITLES.items()),
                      ("GRPO", "grpo", TASK), ("GRPO + think", "grpo", think)]
        cells = [format_estimate(mean_estimate(target))]
        for condition, model, task in conditions:
            scores = results.scores(model, task, metric) if model and task else None
            if scores:
                delta = paired_delta(target, scores)
                shown[_direction(delta)].append(condition)
            cells.append(f"{sum(scores) / len(scores):.3f}; Δ {format_estimate(delta, True)}" if scores else "-")
        rows.append(f"| [{label}]({links}{name}/report.md) | " + " | ".join(cells) + " |")
        curve = [(alpha, results.scores(k, TASK, metric)) for k, alpha in sorted(sweep.items(), key=lambda i: i[1])]
        curve = [(alpha, paired_delta(target, scores)) for alpha, scores in curve if scores]
        if curve:
            rows.append("| ↳ alpha curve (Δ vs target) | " + ", ".join(
                f"{alpha:g}: {format_estimate(delta, True)}" for alpha, delta in curve) + " | | | | | | | |")
            for alpha, delta in curve:
                shown[_direction(delta)].append(f"alpha {alpha:g}")
        verdicts.append(f"- {label}: " + "; ".join(f"{direction}: {', '.join(items)}"
                                                   for direction, items in shown.items() if items) + ".")
    if not rows:
        return []
    return ["## Per target: the paper's conditions", "",
            "Each cell: the score, and Δ against the row's target. v: the pair's weight difference (GRPO − SFT); "
            "extracted steering: the same pair as one vector per layer (30 x 576 numbers), extracted without "
            "training (`rv steer extract`: SFT's mean layer outputs moved toward GRPO's); steering GRPO: 30 x 576 "
            "numbers trained from SFT by GRPO (next section); both added by hooks at scale 1.", "",
            "| target | score | target + v | target + v + think | target − v | "
            + " | ".join(f"target + {title}" for title in STEERING_TITLES.values()) + " | GRPO | GRPO + think |",
            "|---|---|---|---|---|---|---|---|---|", *rows, "",
            "Which differences the paired test shows (up, down) and which it does not, per target (GRPO and "
            "GRPO + think are the pair's own models, compared with the target):", "", *verdicts, "",
            f"![alpha curves]({links}{CURVES})", "", *_power_lines(found)]


def plot_alpha_curves(reports: Path, path: Path) -> None:
    """Score against alpha per target, with 95% Wilson intervals (alpha 0: the target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for name, label in TARGETS.items():
        if not (reports / name / "results.json").is_file():
            continue
        results = Results(reports / name)
        metric = _metric(results)
        points = [(0.0, results.scores("target", TASK, metric))] + [
            (alpha, results.scores(k, TASK, metric)) for k, alpha in results.meta.get("sweep", {}).items()]
        points = sorted((alpha, mean_estimate(s)) for alpha, s in points if s)
        if len(points) < 2:
            continue
        x = [alpha for alpha, _ in points]
        y = [e.value for _, e in points]
        errors = [[e.value - e.low for _, e in points], [e.high - e.value for _, e in points]]
        axis.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=label)
    axis.set_xlabel("alpha (target + alpha * v; -1 is target - v)")
    axis.set_ylabel(f"{TASK} accuracy (95% Wilson)")
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _direction(delta) -> str:
    if not delta.excludes_zero:
        return "not shown"
    return "up" if delta.value > 0 else "down"


def _power_lines(found: dict[str, Results]) -> list[str]:
    """Per target: what the target + v comparison could detect (rv_merge.statistics)."""
    lines = []
    for name, label in TARGETS.items():
        row = next((r for r in power_rows(found[name]) if r["task"] == TASK), None) if name in found else None
        if row:
            detectable = "nothing (too few documents)" if row["detectable"] is None else f"{row['detectable']:.3f}"
            lines.append(f"- {label}: {row['n']} problems, target and target + v disagreed on {row['discordance']:.1%}; "
                         f"smallest difference the exact McNemar test finds with 80% power at 5%: {detectable}.")
    return (["What the target + v comparisons could detect:", "", *lines, ""]) if lines else []


def _dtype_section(found: dict[str, Results]) -> list[str]:
    if not all(name in found for name in DTYPE_PAIR):
        return []
    float32, bfloat16 = (found[name] for name in DTYPE_PAIR)
    metric = _metric(float32)
    a, b = float32.scores("merged", TASK, metric), bfloat16.scores("merged", TASK, metric)
    if not a or not b or len(a) != len(b):
        return []
    lines = ["## The same merge written in float32 and in bfloat16", "",
             "| float32 | bfloat16 | Δ bfloat16 − float32 |", "|---|---|---|",
             f"| {format_estimate(mean_estimate(a))} | {format_estimate(mean_estimate(b))} | "
             f"{format_estimate(paired_delta(a, b), True)} |", ""]
    for results in (float32, bfloat16):
        lines += [describe_loss(label, loss) + "." for label, loss in (results.meta.get("rounding_loss") or {}).items()]
    return lines + [""]


def _metric(results: Results) -> str:
    return main_metric(results.metrics(TASK))


def splice_into_readme(readme: Path, reports: Path) -> None:
    """Replace the README's demo block (between the two markers) with the current tables."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme}: no demo block to update (the markers {README_START} ... {README_END})")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    body = summary_tables(reports, links=f"{reports.name}/")
    write_text(readme, f"{head}{README_START}\n{body}{README_END}{tail}")
