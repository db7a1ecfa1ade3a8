"""Benchmark: what writing 1 GiB costs on this machine, by what the memory did before.

The I/O floor of bench/bench_merge.py (read three inputs, write one output) took from 0.9 to
2.4 s for the same 0.5B files within one session. This script asks why, in one process:
it writes the same 1 GiB file (pwrite, 64 MiB at a time, then unlinked) in turn

- first: the first write of the process;
- again: right after the previous write's file was deleted (its pages were just freed);
- after idle: after sleeping --idle seconds (what a benchmark does between runs while it
  checks the output or starts the next process);
- after touching: right after allocating, touching and freeing --touch GiB of anonymous memory,

and it times touching that anonymous memory the first and the second time. On a virtual
machine whose host backs guest memory only when it is first touched, and takes freed memory
back after a while (free page reporting), the first and after-idle writes pay for that on
every page. The CPU time of the writing thread is given beside the wall time: the cost is
CPU work in the kernel, not waiting for the disk. Appends a dated table to BENCHMARKS.md.

    .venv/bin/python bench/bench_page_backing.py [--rounds 3] [--idle 10] [--touch 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work" / "page_backing"
GIB = 1 << 30
CHUNK = 64 << 20


def timed(action) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this thread) of action()."""
    os.sync()  # no writeback of earlier data running during the timing
    wall, cpu = time.perf_counter(), time.thread_time()
    action()
    return time.perf_counter() - wall, time.thread_time() - cpu


def write_gib(path: Path, source: np.ndarray) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for offset in range(0, GIB, CHUNK):
            view = memoryview(source)
            while view:
                written = os.pwrite(descriptor, view, offset + CHUNK - len(view))
                view = view[written:]
    finally:
        os.close(descriptor)


def touch(gib: int) -> None:
    np.ones(gib * GIB, dtype=np.uint8)  # every page written, then freed


def measure(rounds: int, idle: float, touch_gib: int) -> dict[str, list[tuple[float, float]]]:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "written.bin"
    source = np.full(CHUNK, 7, dtype=np.uint8)
    results: dict[str, list[tuple[float, float]]] = {}

    def record(label: str, action) -> None:
        results.setdefault(label, []).append(timed(action))
        path.unlink(missing_ok=True)

    record("write 1 GiB: first in the process", lambda: write_gib(path, source))
    for _ in range(rounds):
        record("write 1 GiB: again, at once", lambda: write_gib(path, source))
        time.sleep(idle)
        record(f"write 1 GiB: after {idle:g} s idle", lambda: write_gib(path, source))
        touch(touch_gib)
        record(f"write 1 GiB: after touching {touch_gib} GiB", lambda: write_gib(path, source))
    time.sleep(idle)
    record(f"touch {touch_gib} GiB of anonymous memory: after {idle:g} s idle", lambda: touch(touch_gib))
    record(f"touch {touch_gib} GiB of anonymous memory: again, at once", lambda: touch(touch_gib))
    return results


def markdown(results: dict, args: argparse.Namespace) -> str:
    baseline = statistics.median(cpu for _, cpu in results["write 1 GiB: again, at once"])
    lines = [
        f"## What a fresh page costs on this machine (bench/bench_page_backing.py, {date.today().isoformat()})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}, "
        f"available memory {_available_gib():.0f} GiB at the start. One process, in turn; medians of the rounds.",
        f"Command: `.venv/bin/python bench/bench_page_backing.py --rounds {args.rounds} --idle {args.idle:g} "
        f"--touch {args.touch}`",
        "",
        "| what | rounds | wall (s) | CPU of the thread (s) | CPU / writing again at once |",
        "|---|---|---|---|---|",
    ]
    for label, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        ratio = f"{cpu / baseline:.1f}" if label.startswith("write") else "n/a"
        lines.append(f"| {label} | {len(runs)} | {wall:.2f} | {cpu:.2f} | {ratio} |")
    return "\n".join(lines) + "\n"


def _available_gib() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return int(fields["MemAvailable"].split()[0]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to sleep before an after-idle write")
    parser.add_argument("--touch", type=int, default=4, help="GiB of anonymous memory touched and freed")
    args = parser.parse_args()
    table = markdown(measure(args.rounds, args.idle, args.touch), args)
    print(table)
    with open(ROOT.parent / "BENCHMARKS.md", "a", encoding="utf-8") as handle:
        handle.write("\n" + table)


if __name__ == "__main__":
    main()
