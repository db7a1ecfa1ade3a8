"""The table and plot of bench_merge.py's results (bench/results/merge_scaling.json).

    .venv/bin/python bench/bench_merge_report.py   # redraw the plot from the saved results
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Optional

from scipy.stats import quantile_test

METHODS = ["reasoning_vector", "task_arithmetic", "linear"]
FLOORS = ["I/O floor, page cache", "I/O floor, direct"]
MEDIAN_CONFIDENCE = 0.9  # of the interval given for each size's median paired ratio


def append_section(results: dict, benchmarks: Path, image: Optional[str] = None) -> None:
    """Append a dated section with the table and round-by-round ratios, and the plot at
    `image` (a path relative to the repository) if there is one."""
    settle = (f"; then {results['settle_s']:g} s idle, so that memory freed by the run before has gone back to "
              "the host (free page reporting) and no run writes into pages freed a moment before, which are "
              "several times cheaper here") if results.get("settle_s") else ""
    names = [entry["size"] for entry in results["sizes"]]
    shapes = names[0] if len(names) == 1 else f"{names[0]} to {names[-1]}"
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    lines = [
        f"\n## Merge scaling, {shapes} shapes ({results['date']})\n",
        f"Machine: {results['machine']}; device {results['device']}.",
        f"Inputs: random bfloat16 trios with the shapes of Qwen2.5 {listed} (bench/merge_trio.py). "
        "Merge time: `mergekit-yaml`'s main() timed inside the process, after imports (median of the "
        "measured rounds, which run the methods in turn; one unmeasured round first when the trio fits in "
        "the page cache; on a cold cache mergekit's built-in methods run in the first round only). Every "
        "run starts from the same page cache: its inputs just read (warm) when three inputs and an output "
        "fit in 60% of memory, else an empty cache (cold: dropped before each run), whatever ran before, and with nothing left to write back (synced first)"
        f"{settle}. Peak RSS: the "
        "process's high-water mark (file-backed pages included); peak anonymous: polled every 20 ms. "
        "I/O floor: read the three inputs, write one output of the same size into a new file, through the "
        "page cache or past it (O_DIRECT). Ratios are to the faster of the two floors of the same size.",
        f"Command: `.venv/bin/python {results['command']}`\n",
        "| size | parameters | page cache, rounds | run | merge (s) | / faster I/O floor | merge per round (s) "
        "| wall (s) | peak RSS (MiB) | peak anonymous (MiB) | values not bit-identical to float64 rounded once |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    paired = []
    for entry in results["sizes"]:
        if "skipped" in entry:
            lines.append(f"| {entry['size']} | | | skipped: {entry['skipped']} | | | | | | | |")
            continue
        floor = min(entry["rows"][label]["merge_s"] for label in FLOORS)
        for method in METHODS + FLOORS:
            row = entry["rows"][method]
            inexact = row.get("inexact")
            exact = "n/a" if inexact is None else f"{inexact[0]:,} of {inexact[1]:,}"
            rounds = row["merge_s_per_round"]
            cache = f"{'warm' if entry['page_cache_warm'] else 'cold'}, {len(rounds)}"
            lines.append(
                f"| {entry['size']} | {entry['parameters'] / 1e9:.2f}B | {cache} | {method} | {row['merge_s']:.2f} | "
                f"{row['merge_s'] / floor:.2f} | {', '.join(f'{t:.2f}' for t in rounds)} | {row['wall_s']:.2f} | "
                f"{row['peak_rss_mib']:.0f} | {row['peak_anon_mib']:.0f} | {exact} |")
        ratios = paired_ratios(entry["rows"])
        paired.append(f"{entry['size']}: {', '.join(f'{r:.2f}' for r in ratios)} "
                      f"(median {statistics.median(ratios):.2f}, {median_interval(ratios)})")
    lines.append("\n`reasoning_vector` merge time / the faster I/O floor of the same round, round by round: "
                 + "; ".join(paired) + ". Intervals: for the median ratio, distribution-free (order "
                 f"statistics of the rounds, scipy.stats.quantile_test), at {MEDIAN_CONFIDENCE:.0%} confidence.")
    if image:
        lines.append(f"\n![merge time and memory against model size]({image})\n")
    with open(benchmarks, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def paired_ratios(rows: dict) -> list[float]:
    """reasoning_vector's time over the faster floor measured in the same round (the runs of a
    round follow each other, so a drift of the machine between rounds cancels out)."""
    floors = zip(*(rows[label]["merge_s_per_round"] for label in FLOORS))
    return [merge / min(floor) for merge, floor in zip(rows["reasoning_vector"]["merge_s_per_round"], floors)]


def median_interval(ratios: list[float], confidence: float = MEDIAN_CONFIDENCE) -> str:
    """The distribution-free interval for the median of the rounds' ratios, as text (with five
    rounds, the lowest to the highest round, which covers the median with probability 94%)."""
    interval = quantile_test(ratios, p=0.5).confidence_interval(confidence_level=confidence)
    if math.isnan(interval.low) or math.isnan(interval.high):  # too few rounds
        return f"too few rounds for a {confidence:.0%} interval"
    return f"{confidence:.0%} interval {interval.low:.2f} to {interval.high:.2f}"


def plot(results: dict, path: Path) -> bool:
    """Draw time and memory against model size; False (nothing drawn) for fewer than two sizes."""
    sizes = [e for e in results["sizes"] if "skipped" not in e]
    if len(sizes) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    billions = [e["parameters"] / 1e9 for e in sizes]
    for method in METHODS + FLOORS:
        time_axis.plot(billions, [e["rows"][method]["merge_s"] for e in sizes], marker="o", label=method)
        memory_axis.plot(billions, [e["rows"][method]["peak_rss_mib"] / 1024 for e in sizes], marker="o",
                         label=method)
    time_axis.set(xlabel="parameters (billions)", ylabel="merge time without imports (s)", title="time")
    memory_axis.set(xlabel="parameters (billions)", ylabel="peak RSS (GiB)", title="memory")
    for axis in (time_axis, memory_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"bfloat16 merges of Qwen2.5-shaped trios, {results['machine'].split(',')[0]}, "
                    f"{results['date']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


if __name__ == "__main__":
    here = Path(__file__).resolve().parent / "results"
    plot(json.loads((here / "merge_scaling.json").read_text()), here / "merge_scaling.png")
