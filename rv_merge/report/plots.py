"""The PNG plots of a report: deltas with intervals, robustness, the alpha curve, and
per-layer panels (for `rv vector info` and `rv steer info`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend



def plot_deltas(rows: list[dict], path: Path) -> None:
    shown = [(r["task"], r.get("delta merged")) for r in rows if r["main"]]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(shown) + 1.5))
    for y, (task, delta) in enumerate(shown):
        if delta is None:
            continue
        low_high = delta.interval
        ax.errorbar(delta.value, y, xerr=[[delta.value - low_high[0]], [low_high[1] - delta.value]],
                    fmt="o", color="tab:red" if delta.excludes_zero else "tab:gray", capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(shown)), [t for t, _ in shown])
    ax.set_xlabel("merged − target (main metric), 95% interval")
    ax.set_title("Effect of the reasoning vector")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_robustness(rows: list[dict], path: Path) -> None:
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
                       yerr=_error_bars([estimate]), capsize=2,
                       label=f"{model} {'clean' if k == 0 else 'variant'}" if i == 0 else None)
    ax.set_xticks(range(len(rows)), [r["variant"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("score (main metric), 95% interval")
    ax.set_title("Robustness: clean vs perturbed")
    if rows:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for index, task in enumerate(dict.fromkeys(r["task"] for r in rows)):
        mine = [r for r in rows if r["task"] == task]
        color = f"C{index}"
        ax.errorbar([r["alpha"] for r in mine], [r["score"].value for r in mine],
                    yerr=_error_bars([r["score"] for r in mine]), marker="o", capsize=3, color=color,
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


def _error_bars(estimates: list) -> list[list[float]]:
    """matplotlib's asymmetric error bars (below, above) from the estimates' intervals."""
    return [[e.value - e.low for e in estimates], [e.high - e.value for e in estimates]]


def plot_per_layer(rows: list[dict], panels: list[tuple[str, str]], path: Path, title: str) -> None:
    """One panel per (key, label) with any value: rows[i][key] against rows[i]["layer"]."""
    panels = [(key, label) for key, label in panels if any(row[key] is not None for row in rows)]
    figure, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels)), sharex=True, squeeze=False)
    for axis, (key, label) in zip(axes[:, 0], panels):
        axis.plot([row["layer"] for row in rows], [row[key] if row[key] is not None else float("nan") for row in rows],
                  marker="o", markersize=3)
        axis.set_ylabel(label, fontsize=8)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("layer")
    axes[0, 0].set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
