"""Benchmark: what the startup hook costs every Python program (`python -c pass`).

Two otherwise identical bare virtual environments are made in bench/work: one plain, one
with rv-merge's two startup files (`rv_merge_hook.pth`, `_rv_merge_hook.py`) in its
site-packages. Runs of `python -c pass` alternate between them; the table gives the medians,
their difference and ratio. The requirement is a difference under 5 ms.

    .venv/bin/python bench/bench_startup.py [--runs 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
WORK = ROOT / "work" / "startup"


def make_venv(path: Path, with_hook: bool) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    if with_hook:
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True).stdout.strip()
        shutil.copy(REPO / "hooks" / "rv_merge_hook.pth", purelib)
        shutil.copy(REPO / "hooks" / "_rv_merge_hook.py", purelib)
        # pip compiles installed modules; do the same, or every start would recompile
        subprocess.run([str(python), "-m", "py_compile", f"{purelib}/_rv_merge_hook.py"], check=True)
    return python


def time_once(python: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    plain, hooked = make_venv(WORK / "plain", False), make_venv(WORK / "hooked", True)
    check = subprocess.run([str(hooked), "-c", "import sys; print('_rv_merge_hook' in sys.modules)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert check == "True", "the hook did not load in the hooked environment"
    for python in (plain, hooked):  # warm up: pyc files, page cache
        for _ in range(10):
            time_once(python)
    samples = {"plain": [], "hooked": []}
    for _ in range(args.runs):
        samples["plain"].append(time_once(plain))
        samples["hooked"].append(time_once(hooked))
    plain_ms = 1000 * statistics.median(samples["plain"])
    hooked_ms = 1000 * statistics.median(samples["hooked"])
    spread = 1000 * statistics.stdev([h - p for p, h in zip(samples["plain"], samples["hooked"])])
    text = "\n".join([
        f"\n## Startup cost of the mergekit hook ({date.today().isoformat()})\n",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"{args.runs} alternating runs of `python -c pass` per environment; bare venvs that differ "
        "only by the two hook files.",
        f"Command: `.venv/bin/python bench/bench_startup.py --runs {args.runs}`\n",
        "| environment | median (ms) |",
        "|---|---|",
        f"| without the hook | {plain_ms:.2f} |",
        f"| with the hook | {hooked_ms:.2f} |",
        f"| difference | {hooked_ms - plain_ms:+.2f} (ratio {hooked_ms / plain_ms:.3f}; "
        f"standard deviation of paired differences {spread:.2f}) |",
    ]) + "\n"
    with open(REPO / "BENCHMARKS.md", "a") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
