"""The index of all recipes' reports: reports/README.md and reports/index.html."""

from __future__ import annotations

import html
from pathlib import Path

from rv_merge.atomic_files import write_text
from rv_merge.report.markdown import format_estimate, vector_settings
from rv_merge.report.tables import Results, comparison_rows


def _short_source(meta: dict) -> str:
    """The index's vector column: the pair, or the vector file's encoding and size."""
    sign = "+" if meta["recipe"]["parameters"]["sign"] == 1 else "−"
    vector = meta.get("vector")
    if not vector:
        return f"{sign} pair difference"
    settings, size = vector_settings(vector)
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
             "report.md. `*`: the paired test (exact McNemar for 0/1 scores) rejects \"no difference\" at 5%.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, source, task, metric, target, merged, delta in table:
        lines.append(f"| [{name}]({name}/report.md) | {source} | {task} | {metric} | {format_estimate(target)} | "
                     f"{format_estimate(merged)} | {format_estimate(delta, True)} |")
    write_text(reports_dir / "README.md", "\n".join(lines) + "\n")
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            name, source, task, metric, format_estimate(target), format_estimate(merged), format_estimate(delta, True))) + "</tr>"
        for name, source, task, metric, target, merged, delta in table)
    write_text(reports_dir / "index.html",
        "<!doctype html><meta charset='utf-8'><title>rv-merge reports</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>"
        "<h1>rv-merge reports</h1><p>Main metric per task; * marks a difference the paired test (exact McNemar for 0/1 scores) shows at 5%.</p>"
        "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" + cells + "</table>")
