"""The index of all recipes' reports: reports/README.md, and the HTML site built from it."""

from __future__ import annotations

from pathlib import Path

from rv_merge.atomic_files import write_text
from rv_merge.report.html import write_site
from rv_merge.report.markdown import format_estimate, vector_settings
from rv_merge.report.tables import Results, comparison_rows, pair_rows


def _short_source(meta: dict) -> str:
    """The index's vector column: the pair, or the vector file's encoding and size."""
    sign = "+" if meta["recipe"]["parameters"]["sign"] == 1 else "−"
    vector = meta.get("vector")
    if not vector:
        return f"{sign} pair difference"
    settings, size = vector_settings(vector)
    return f"{sign} {vector['encoding']}{' (' + settings + ')' if settings else ''}, {size}"


def write_index(reports_dir: Path) -> None:
    """reports/README.md (every recipe's main deltas side by side, with the pair's gain where
    the recipe evaluated SFT and GRPO), then the HTML site (index.html and a page per report)."""
    folders = sorted(p.parent for p in reports_dir.glob("*/results.json"))
    header = ["recipe", "target", "vector", "task", "metric", "pair gain: GRPO − SFT", "target score", "merged",
              "Δ merged − target [95% CI]"]
    lines = ["# rv-merge reports", "", "Each recipe's main metric per task; details in each folder's "
             "report.md. `*`: the paired test (exact McNemar for 0/1 scores) rejects \"no difference\" at 5%.", ""]
    pages = [f"[{page.stem}]({page.name})" for page in sorted(reports_dir.glob("*.md")) if page.name != "README.md"]
    if pages:
        lines.append("Also here: " + ", ".join(pages) + ".")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for folder in folders:
        results = Results(folder)
        gains = {row["task"]: row["delta"] for row in pair_rows(results)}
        for row in comparison_rows(results):
            if row["main"]:
                lines.append(f"| [{folder.name}]({folder.name}/report.md) | {results.meta['recipe']['base_model']} | "
                             f"{_short_source(results.meta)} | {row['task']} | {row['metric']} | "
                             f"{format_estimate(gains.get(row['task']), True)} | {format_estimate(row['target'])} | "
                             f"{format_estimate(row['merged'])} | {format_estimate(row.get('delta merged'), True)} |")
    write_text(reports_dir / "README.md", "\n".join(lines) + "\n")
    write_site(reports_dir)
