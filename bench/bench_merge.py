"""Benchmark: merges from 0.5B to 7B shapes against the alternatives a user would run.

For each size (random Qwen2.5-shaped bfloat16 trios, bench/merge_trio.py) it runs, in one
session and in turn: `mergekit-yaml` with `reasoning_vector`, with built-in
`task_arithmetic` (base_model = SFT) and with `linear` (+1/-1/+1, normalize false, as the
paper's authors did), and the I/O floor (read the three inputs, write one output of the
same size) two ways: through the page cache, as `cp` does, and past it (O_DIRECT), as the
merge's writer does where it can. Every run writes a new file in a new folder, deleted after
it: a floor that overwrote its own last output would reuse the cache pages freed a moment
before, which on a machine with free page reporting is several times faster than the fresh
pages a merge's output gets. For the same reason every run starts after --settle seconds
idle (default 20: the time this machine took to hand 8 GiB of freed memory back to its host),
so that none writes into memory another run freed a moment before (mergekit's built-in
methods free several GB). Each mergekit run goes through a small wrapper that imports mergekit first and
then times `mergekit-yaml`'s main(): the merge time without imports, measured, not
subtracted. Reported: wall time, merge time, peak RSS (the kernel's high-water mark of the
process) and peak anonymous memory (polled), values not bit-identical to the correctly
rounded float64 result, and each as a ratio to the faster I/O floor of the same size. Results go
to bench/results/merge_scaling.json, a dated section of BENCHMARKS.md and
bench/results/merge_scaling.png (a run of some sizes only: merge_scaling-SIZE-SIZE.json and
.png; a single size gets no plot).

    .venv/bin/python bench/bench_merge.py [--sizes 0.5B 1.5B 3B 7B] [--repeats 5] [--settle 20] [--device cuda]

A 7B trio and one output take about 61 GB of disk: sizes that do not fit in the free space
are skipped, and the table says so. Each size's trio is deleted once it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))
from merge_trio import QWEN25_SHAPES, ROLES, build_trio, parameter_count, trio_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work" / "scaling"
RESULTS = ROOT / "results"
BIN = Path(sys.executable).parent

TIMED_MERGE = '''
import json, resource, sys, time
import mergekit.scripts.run_yaml as run_yaml
sys.argv = ["mergekit-yaml", *sys.argv[1:]]
start = time.perf_counter()
try:
    run_yaml.main()
except SystemExit as stop:
    if stop.code:
        raise
print(json.dumps({"merge_s": time.perf_counter() - start}))
'''

IO_FLOOR = '''
import json, mmap, os, sys, time
mode, out, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(os.path.dirname(out))  # a new folder, as a merge's output is
start = time.perf_counter()
direct = mode == "direct"
block = mmap.mmap(-1, 1 << 24)  # page-aligned, as direct writes need
sink = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if direct else 0), 0o644)
length = 0
for i, path in enumerate(paths):
    with open(path, "rb", buffering=0) as source, memoryview(block) as view:
        while count := source.readinto(block):
            if i == 0:
                os.pwrite(sink, view[:count + (-count % 4096 if direct else 0)], length)
                length += count
os.ftruncate(sink, length)
os.close(sink)
print(json.dumps({"merge_s": time.perf_counter() - start}))
'''
# The two ways to write the floor's output: through the page cache (as cp does) and past it
# (O_DIRECT, as the merge's writer does where the file system allows).
FLOORS = {"I/O floor, page cache": "page-cache", "I/O floor, direct": "direct"}
BUILTIN_METHODS = ("task_arithmetic", "linear")


def recipes(folders: dict[str, Path]) -> dict[str, dict]:
    t, s, g = (str(folders[r]) for r in ROLES)
    return {
        "reasoning_vector": {"merge_method": "reasoning_vector", "base_model": t, "models": [
            {"model": s, "parameters": {"role": "sft"}}, {"model": g, "parameters": {"role": "grpo"}}],
            "parameters": {"alpha": 1.0, "sign": 1}, "dtype": "bfloat16"},
        "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": s, "models": [
            {"model": t, "parameters": {"weight": 1.0}}, {"model": g, "parameters": {"weight": 1.0}}],
            "dtype": "bfloat16"},
        "linear": {"merge_method": "linear", "models": [
            {"model": t, "parameters": {"weight": 1.0}}, {"model": s, "parameters": {"weight": -1.0}},
            {"model": g, "parameters": {"weight": 1.0}}],
            "parameters": {"normalize": False}, "dtype": "bfloat16"},
    }


def run(command: list[str]) -> dict:
    """One child process: its own timing (JSON on stdout), wall time, peak RSS and anonymous."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    peak_rss = peak_anon = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            peak_rss = max(peak_rss, int(fields["VmHWM"].split()[0]))
            peak_anon = max(peak_anon, int(fields["RssAnon"].split()[0]))
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {err[-3000:]}")
    timing = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": wall, "merge_s": timing["merge_s"], "peak_rss_mib": peak_rss / 1024,
            "peak_anon_mib": peak_anon / 1024}


def count_inexact(out_dir: Path, folders: dict[str, Path], chunk: int = 1 << 24) -> tuple[int, int]:
    """(values differing from float64 target + grpo - sft rounded once to bfloat16, total),
    a chunk of elements at a time so that 7B embeddings fit in memory."""
    from rv_merge.merge.arithmetic import round_once  # proven against independent references in tests

    files = {}
    for file in out_dir.glob("*.safetensors"):
        with safe_open(str(file), "pt") as handle:
            files.update(dict.fromkeys(handle.keys(), file))
    differ = total = 0
    inputs = [folders[r] / "model.safetensors" for r in ROLES]
    with safe_open(str(inputs[0]), "pt") as t, safe_open(str(inputs[1]), "pt") as s, \
            safe_open(str(inputs[2]), "pt") as g:
        for name in t.keys():
            with safe_open(str(files[name]), "pt") as o:
                parts = [x.reshape(-1) for x in (t.get_tensor(name), s.get_tensor(name), g.get_tensor(name),
                                                 o.get_tensor(name))]
                for start in range(0, parts[0].numel(), chunk):
                    tt, ss, gg, oo = (x[start:start + chunk] for x in parts)
                    expected = round_once(tt.double() + (gg.double() - ss.double()), torch.bfloat16)
                    differ += (oo.view(torch.int16) != expected.view(torch.int16)).sum().item()
                total += parts[0].numel()
    return differ, total


def bench_size(size: str, repeats: int, device: str, settle_s: float) -> dict:
    need = 4 * trio_bytes(size) * 1.05
    free = shutil.disk_usage(ROOT).free
    if need > free and not (WORK / size / "complete").is_file():
        print(f"{size}: skipped, needs {need / 1e9:.0f} GB of free disk, {free / 1e9:.0f} GB available")
        return {"size": size, "skipped": f"needs {need / 1e9:.0f} GB free disk, had {free / 1e9:.0f} GB"}
    print(f"{size}: building the trio ({trio_bytes(size) * 3 / 1e9:.1f} GB) ...", flush=True)
    folders = build_trio(size, WORK)
    inputs = [str(folders[r] / "model.safetensors") for r in ROLES]
    fits_in_cache = 4 * trio_bytes(size) < 0.6 * _memory_bytes()
    # mergekit's own methods take 3 to 30 times the floor: on a cold cache (minutes per run)
    # they are measured in the first round only, `reasoning_vector` and the floors in every one.
    builtin_rounds = repeats if fits_in_cache else 1
    commands = {}
    for method, recipe in recipes(folders).items():
        path = WORK / f"{size}-{method}.yml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        out = WORK / f"{size}-out-{method}"
        extra = ["--cuda"] if device == "cuda" else []
        commands[method] = ([sys.executable, "-c", TIMED_MERGE, str(path), str(out), "--quiet", *extra], out)
    for label, mode in FLOORS.items():  # a new file in a new folder, deleted after the run, as for merges
        out = WORK / f"{size}-out-floor-{mode}"
        commands[label] = ([sys.executable, "-c", IO_FLOOR, mode, str(out / "floor.bin"), *inputs], out)
    runs = {label: [] for label in commands}
    if fits_in_cache:  # one unmeasured round warms compiled code
        for command, out in commands.values():
            run(command)
            shutil.rmtree(out, ignore_errors=True)
    inexact = {}
    for round_index in range(repeats):  # interleaved, so that drifts of the machine hit every method alike
        for label, (command, out) in commands.items():
            if label in BUILTIN_METHODS and round_index >= builtin_rounds:
                continue
            # Every run starts from the same page cache: the inputs read just before (when they
            # fit in memory), or nothing cached (when they do not), whatever ran before it.
            warm_or_drop_page_cache(inputs, fits_in_cache)
            # ... and from settled memory: on a virtual machine that hands free pages back to
            # its host, pages freed seconds before (by the run before) are several times
            # cheaper to write than pages free for longer, which a merge started on an idle
            # machine gets.
            time.sleep(settle_s)
            runs[label].append(run(command))
            print(f"  {label}: {runs[label][-1]}", flush=True)
            if round_index == 0 and label not in FLOORS:
                inexact[label] = count_inexact(out, folders)
            shutil.rmtree(out, ignore_errors=True)  # one output on disk at a time (a 7B output is 15 GB)
    rows = {}
    for label in commands:
        rows[label] = {key: statistics.median(r[key] for r in runs[label]) for key in ("wall_s", "merge_s")}
        rows[label].update({key: max(r[key] for r in runs[label]) for key in ("peak_rss_mib", "peak_anon_mib")})
        rows[label]["merge_s_per_round"] = [r["merge_s"] for r in runs[label]]
        if label in inexact:
            rows[label]["inexact"] = inexact[label]
    largest = max(n for n in _tensor_sizes(folders["target"]))
    shutil.rmtree(WORK / size)  # room for the next size (a 7B trio is 46 GB)
    return {"size": size, "parameters": parameter_count(size), "page_cache_warm": fits_in_cache,
            "largest_tensor_bytes": largest, "rows": rows}


def warm_or_drop_page_cache(inputs: list[str], warm: bool) -> None:
    """Read the inputs into the page cache, or drop the page cache (needs root). Either way,
    no dirty pages are left: a run that starts while the last one's output is still being
    written back to disk would have its own writes held up by it."""
    os.sync()
    if warm:
        for path in inputs:
            with open(path, "rb") as handle:
                while handle.read(1 << 24):
                    pass
        return
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        raise SystemExit(f"cannot drop the page cache for a cold run ({error}): run as root, or pass smaller --sizes")


def _tensor_sizes(folder: Path):
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        for name in handle.keys():
            sl = handle.get_slice(name)
            count = 1
            for dim in sl.get_shape():
                count *= dim
            yield 2 * count


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=list(QWEN25_SHAPES), choices=list(QWEN25_SHAPES))
    parser.add_argument("--repeats", type=int, default=5,
                        help="measured rounds (mergekit's built-in methods: one round on a cold cache)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--settle", type=float, default=20.0, metavar="SECONDS",
                        help="idle time before each run, so that memory freed by the run before it is "
                             "handed back to the host first (0: none)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"date": date.today().isoformat(), "machine": _machine(), "device": args.device,
               "command": "bench/bench_merge.py " + " ".join(sys.argv[1:]), "settle_s": args.settle,
               "sizes": [bench_size(size, args.repeats, args.device, args.settle) for size in args.sizes]}
    RESULTS.mkdir(exist_ok=True)
    # A run of some of the sizes keeps its own results: it does not replace the scaling run's.
    stem = "merge_scaling" if args.sizes == list(QWEN25_SHAPES) else "merge_scaling-" + "-".join(args.sizes)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    from bench_merge_report import append_section, plot

    drawn = plot(results, RESULTS / f"{stem}.png")
    append_section(results, ROOT.parent / "BENCHMARKS.md", f"bench/results/{stem}.png" if drawn else None)


def _machine() -> str:
    from importlib.metadata import version

    from llvmlite.binding import get_host_cpu_name as host_cpu_name

    return (f"{platform.machine()}, {os.cpu_count()} cores, {_memory_bytes() / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}, torch {torch.__version__}, mergekit {version('mergekit')}, "
            f"llvmlite {version('llvmlite')} (kernel compiled for {host_cpu_name()}), rv-merge {version('rv-merge')}")


if __name__ == "__main__":
    main()
