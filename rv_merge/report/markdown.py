"""report.md of one recipe (and its plots), from its stored results."""

from __future__ import annotations

from pathlib import Path

from rv_merge.atomic_files import write_text
from rv_merge.report.plots import plot_deltas, plot_robustness, plot_sweep
from rv_merge.report.tables import (
    Results,
    comparison_rows,
    pair_rows,
    power_rows,
    robustness_rows,
    steering_rows,
    sweep_rows,
)
from rv_merge.statistics import Estimate


def write_report(folder: Path, variants: dict[str, tuple[str, str]]) -> None:
    """report.md and the PNG plots of one recipe, from its stored results.

    `variants`: each adversarial task -> (its clean task, the perturbation), for the
    robustness table (rv_merge.evaluate.suite.adversarial_variants).
    """
    results = Results(folder)
    rows, robust, sweep = comparison_rows(results), robustness_rows(results, variants), sweep_rows(results)
    text = _markdown(results.meta, rows, robust, sweep, pair_rows(results), power_rows(results),
                     steering_rows(results))
    write_text(folder / "report.md", text)
    plot_deltas(rows, folder / "deltas.png")
    plot_robustness(robust, folder / "robustness.png")
    if sweep:
        plot_sweep(sweep, folder / "sweep.png")


def format_estimate(estimate: Estimate | None, signed: bool = False) -> str:
    if estimate is None:
        return "-"
    low, high = estimate.interval
    if signed:
        mark = " *" if estimate.excludes_zero else ""
        return f"{estimate.value:+.3f} [{low:+.3f}, {high:+.3f}]{mark}"
    return f"{estimate.value:.3f} [{low:.3f}, {high:.3f}]"


def _detectable(difference: float | None) -> str:
    return "none (too few documents)" if difference is None else f"{difference:.3f}"


def describe_source(meta: dict) -> str:
    """`(GRPO - SFT)` for a pair; the vector file, its encoding and size for a vector."""
    models = meta["models"]
    vector = meta.get("vector")
    if not vector:
        return f"({models['grpo']['reference']} - {models['sft']['reference']})"
    settings, size = vector_settings(vector)
    error = f", relative error {vector['relative_error']:.3f} vs its source" if vector["compression"] else ""
    return f"vector `{models['vector']['reference']}` ({vector['encoding']}{': ' + settings if settings else ''}, {size}{error})"


def vector_settings(vector: dict) -> tuple[str, str]:
    """A vector source's compression settings ("method lowrank, rank 16") and size ("21.9 MiB")."""
    return ", ".join(f"{k} {v}" for k, v in vector["compression"].items()), f"{vector['size_bytes'] / 2**20:.1f} MiB"


def _markdown(meta: dict, rows: list[dict], robust: list[dict], sweep: list[dict], pair: list[dict],
              power: list[dict], steering: list[dict]) -> str:
    recipe = meta["recipe"]
    lines = [
        f"# rv-merge report: {meta['name']}", "",
        f"Recipe `{meta['recipe_file']}`: {recipe['base_model']} {'+' if recipe['parameters']['sign'] == 1 else '-'} "
        f"alpha * {describe_source(meta)}, alpha = {recipe['parameters']['alpha']}.", "",
        "Scores are means over documents with 95% intervals (Wilson score intervals for 0/1 scores). "
        "Deltas are paired over the same documents (merged or GRPO minus the target): Newcombe's paired "
        "score interval, and `*` where the exact McNemar test rejects \"no difference\" at 5%. Both hold "
        "at small n and at 0% or 100%; read unmarked differences as not shown.", "",
    ]
    for dtype, loss in (meta.get("rounding_loss") or {}).items():
        lines += [f"What the output dtype keeps: written in {dtype}, target + v equals the rounded target in "
                  f"{loss['entries']:.1%} of the entries where v is non-zero, which hold {loss['norm_sq']:.1%} "
                  "of its squared norm (that much of the vector is rounded away; `rv check --rounding`).", ""]
    if pair:
        lines += ["## The pair: GRPO vs SFT (main metric)", "",
                  "The vector can only transfer what GRPO added to SFT: this is that gain, paired over the same "
                  "documents.", "", "| task | metric | SFT | GRPO | Δ GRPO − SFT [95% CI] |", "|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['metric']} | {format_estimate(r['sft'])} | {format_estimate(r['grpo'])} | {format_estimate(r['delta'], True)} |"
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
            format_estimate(row["target"]), format_estimate(row["grpo"]), format_estimate(row["merged"]), format_estimate(row["grpo+think"]),
            format_estimate(row["merged+think"]), format_estimate(row.get("delta merged"), True),
            format_estimate(row.get("delta merged+think"), True)]) + " |")
    if power:
        lines += ["", "## What this run could detect", "",
                  "The smallest merged − target difference the exact McNemar test at 5% finds with 80% power, "
                  "given the documents and how often the two models disagreed on them (a smaller true effect "
                  "may go unmarked).", "",
                  "| task | metric | documents | disagreed on | detectable difference (5%, 80% power) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['metric']} | {r['n']} | {r['discordance']:.1%} | "
                  f"{_detectable(r['detectable'])} |" for r in power]
    lines += ["", "## Robustness: clean task vs each adversarial variant (main metric)", ""]
    lines += ["| variant | perturbation | target clean → variant (drop) | merged clean → variant (drop) | "
              "Δ merged − target, clean | Δ merged − target, variant | gain survives |",
              "|---|---|---|---|---|---|---|"] if robust else ["No adversarial variant among this recipe's tasks."]
    for row in robust:
        cells = []
        for model in ("target", "merged"):
            clean, perturbed, drop = row[model]
            cells.append(f"{format_estimate(clean)} → {format_estimate(perturbed)} ({format_estimate(drop, True)})")
        lines.append(f"| {row['variant']} | {row['perturbation']} | {cells[0]} | {cells[1]} | "
                     f"{format_estimate(row['gain clean'], True)} | {format_estimate(row['gain variant'], True)} | {row['survives']} |")
    lines += ["", "![deltas](deltas.png)", ""] + (["![robustness](robustness.png)", ""] if robust else [])
    if sweep:
        lines += ["## Alpha sweep (main metric)", "",
                  "Every alpha evaluated on the same documents, each by rewriting one loaded model's weights "
                  "in place to the merge for that alpha (bit for bit what `mergekit-yaml` writes); Δ is "
                  "paired against the target.", "",
                  "| task | alpha | score | Δ − target [95% CI] |", "|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['alpha']:g} | {format_estimate(r['score'])} | {format_estimate(r['delta'], True)} |" for r in sweep]
        lines += ["", "![alpha sweep](sweep.png)", ""]
    lines += _steering_section(meta, steering)
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
    lines += _computed_with(meta["results"])
    return "\n".join(lines) + "\n"


def _steering_section(meta: dict, rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## Steering vectors (main metric)", "",
             "Added to the target's decoder-layer outputs by hooks; Δ is paired against the target.", ""]
    for entry in meta["steering"]["entries"]:
        made_by, layers = entry.get("made_by") or {}, entry.get("layers")
        lines.append(f"- {entry['name']}: `{entry['vectors']}`, {entry['numbers']} numbers; "
                     f"{made_by.get('method', 'origin not recorded')}; made for {entry.get('made_for') or '-'}; "
                     f"{f'layers {layers[0]}-{layers[1]}' if layers else 'all layers'}.")
    lines += ["", "| task | condition | score | Δ − target [95% CI] |", "|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['condition']} | {format_estimate(r['score'])} | {format_estimate(r['delta'], True)} |"
              for r in rows]
    return lines + [""]


def _computed_with(results: list[dict]) -> list[str]:
    """Per result, the backend, device, dtype and library versions it was computed with
    (cached results included); one line per distinct setting."""
    settings: dict[str, list[str]] = {}
    for result in results:
        used = result.get("computed_with")
        if used:
            text = (f"{used['backend']} on {used['device']}, {used['dtype']}"
                    + (f", {used['model_args']}" if used["model_args"] else "")
                    + (f", generation: {used['generation']}" if used.get("generation") else "") + "; "
                    + ", ".join(f"{k} {v}" for k, v in sorted(used["versions"].items())))
            settings.setdefault(text, []).append(f"{result['model']} / {result['task']}")
    if len(settings) == 1:
        return [f"- Every result computed with: {next(iter(settings))}."]
    return [f"- Computed with {text}: {', '.join(jobs)}." for text, jobs in settings.items()]
