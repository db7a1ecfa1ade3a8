"""Benchmark: reasoning_vector against the alternatives a user would run, in one session.

On a generated 0.5B-parameter bfloat16 trio (Qwen2.5-0.5B shapes, random weights) it times
`mergekit-yaml` with `reasoning_vector`, with built-in `task_arithmetic` (base_model = SFT)
and with `linear` (+1/-1/+1, normalize false, as the paper's authors did), a naive streaming
script, and the I/O floor (read the three inputs, write one output of the same size).
It reports wall time, merge time without imports, peak memory (max RSS of the process), and
the share of output values bit-identical to the correctly rounded float64 result, and
appends a dated table to BENCHMARKS.md.

    .venv/bin/python bench/bench_merge.py [--repeats 2] [--layers 24]
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
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work"
BIN = Path(sys.executable).parent

NAIVE_SCRIPT = '''
import sys, torch
from safetensors import safe_open
from safetensors.torch import save_file
target, sft, grpo, out = sys.argv[1:5]
result = {}
with safe_open(target, "pt") as t, safe_open(sft, "pt") as s, safe_open(grpo, "pt") as g:
    for name in t.keys():
        result[name] = (t.get_tensor(name).float() + g.get_tensor(name).float()
                        - s.get_tensor(name).float()).to(torch.bfloat16)
save_file(result, out, metadata={"format": "pt"})
'''

IO_FLOOR_SCRIPT = '''
import sys
paths, out = sys.argv[1:4], sys.argv[4]
with open(out, "wb") as sink:
    for i, path in enumerate(paths):
        with open(path, "rb") as source:
            while chunk := source.read(1 << 24):
                if i == 0:
                    sink.write(chunk)
'''


def build_trio(layers: int) -> dict[str, Path]:
    """Qwen2.5-0.5B-shaped random trio; GRPO = SFT + small noise. Cached in bench/work."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from rv_merge.demo.toy_models import build_tokenizer

    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=layers, num_attention_heads=14, num_key_value_heads=2,
                         tie_word_embeddings=True, max_position_embeddings=32768,
                         architectures=["Qwen2ForCausalLM"])
    folders = {role: WORK / f"trio-{layers}" / role for role in ("target", "sft", "grpo")}
    if all((f / "model.safetensors").is_file() for f in folders.values()):
        for folder in folders.values():
            config.save_pretrained(folder)
        return folders
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Qwen2ForCausalLM(config).state_dict().items()
                  if k != "lm_head.weight"}  # tied: the head is the embedding
    generator = torch.Generator().manual_seed(0)
    base = {k: (0.02 * torch.randn(s, generator=generator)) for k, s in shapes.items()}
    for role in ("target", "sft", "grpo"):
        noise = 0.001 if role == "grpo" else 0.005
        tensors = {k: (v + noise * torch.randn(v.shape, generator=generator)).to(torch.bfloat16)
                   for k, v in base.items()}
        folders[role].mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folders[role] / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(folders[role])
        build_tokenizer(folders[role])
        del tensors
    return folders


def recipes(folders: dict[str, Path]) -> dict[str, dict]:
    t, s, g = (str(folders[r]) for r in ("target", "sft", "grpo"))
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


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process.

    The peak is the kernel's high-water mark (VmHWM) of the child, polled every 20 ms
    (getrusage's ru_maxrss would include this benchmark process's own peak at fork time).
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    peak_kib = 0
    while process.poll() is None:
        try:
            status_text = Path(f"/proc/{process.pid}/status").read_text()
            peak_kib = max(peak_kib, int(status_text.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{command[:2]} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, peak_kib / 1024


def count_inexact(out_file: Path, folders: dict[str, Path]) -> tuple[int, int]:
    """(values differing from float64 target + grpo - sft rounded once to bfloat16, total)."""
    from rv_merge.merge.arithmetic import round_once  # proven against an independent reference in tests

    same = total = 0
    files = [folders[r] / "model.safetensors" for r in ("target", "sft", "grpo")]
    with safe_open(out_file, "pt") as o, safe_open(files[0], "pt") as t, \
            safe_open(files[1], "pt") as s, safe_open(files[2], "pt") as g:
        for name in t.keys():
            exact = t.get_tensor(name).double() + (g.get_tensor(name).double() - s.get_tensor(name).double())
            expected = round_once(exact, torch.bfloat16)
            same += (o.get_tensor(name).view(torch.int16) == expected.view(torch.int16)).sum().item()
            total += expected.numel()
    return total - same, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=24, help="24 gives 0.5B parameters")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    folders = build_trio(args.layers)
    parameters = sum(v[1] for v in _shapes(folders["target"])) / 1e6
    inputs = [str(folders[r] / "model.safetensors") for r in ("target", "sft", "grpo")]

    import_times = [run([sys.executable, "-c", "import mergekit.scripts.run_yaml"])[0] for _ in range(3)]
    import_time = statistics.median(import_times)
    commands = {}
    for name, recipe in recipes(folders).items():
        path = WORK / f"{name}.yml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        commands[f"mergekit-yaml {name}"] = (
            [str(BIN / "mergekit-yaml"), str(path), str(WORK / f"out-{name}"), "--quiet"],
            WORK / f"out-{name}" / "model.safetensors", True)
    naive = WORK / "naive.py"
    naive.write_text(NAIVE_SCRIPT)
    commands["naive streaming script"] = (
        [sys.executable, str(naive), *inputs, str(WORK / "naive.safetensors")],
        WORK / "naive.safetensors", False)
    floor = WORK / "io_floor.py"
    floor.write_text(IO_FLOOR_SCRIPT)
    commands["I/O floor (read 3, write 1)"] = (
        [sys.executable, str(floor), *inputs, str(WORK / "floor.bin")], None, False)

    rows = []
    for label, (command, output, uses_mergekit) in commands.items():
        for path in (WORK / f"out-{label.split()[-1]}",):
            shutil.rmtree(path, ignore_errors=True)
        run(command)  # warm the page cache and pyc files
        walls, peaks = zip(*(run(command) for _ in range(args.repeats)))
        wall, peak = statistics.median(walls), max(peaks)
        merge = wall - import_time if uses_mergekit else None
        exact = count_inexact(output, folders) if output else None
        rows.append((label, wall, merge, peak, exact))
        print(f"{label}: wall {wall:.2f}s peak {peak:.0f} MiB exact {exact}", flush=True)
    write_table(rows, parameters, import_time, args)


def _shapes(folder: Path):
    header_len = int.from_bytes((folder / "model.safetensors").read_bytes()[:8], "little")
    with open(folder / "model.safetensors", "rb") as handle:
        handle.seek(8)
        header = json.loads(handle.read(header_len))
    for name, info in header.items():
        if name != "__metadata__":
            size = 1
            for d in info["shape"]:
                size *= d
            yield name, size


def write_table(rows, parameters: float, import_time: float, args) -> None:
    reference = next(r for r in rows if r[0] == "mergekit-yaml task_arithmetic")
    lines = [
        f"\n## Merge: 0.5B bfloat16 trio ({date.today().isoformat()})\n",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {_memory_gib():.0f} GiB, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"mergekit {_version('mergekit')}, rv-merge {_version('rv-merge')}.",
        f"Inputs: {parameters:.0f}M parameters per model (Qwen2.5-0.5B shapes, {args.layers} layers, "
        "random weights), page cache warm. Median wall time of "
        f"{args.repeats} runs after one warm-up. Importing mergekit alone took {import_time:.2f} s "
        "(median of 3), subtracted to give the merge time. Peak RSS: the highest of the runs.",
        f"Command: `.venv/bin/python bench/bench_merge.py --repeats {args.repeats} --layers {args.layers}`\n",
        "| run | wall (s) | wall / task_arithmetic | merge w/o imports (s) | peak RSS (MiB) | "
        "peak / task_arithmetic | values not bit-identical to float64 rounded once |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, wall, merge, peak, exact in rows:
        lines.append(
            f"| {label} | {wall:.2f} | {wall / reference[1]:.2f} | "
            f"{'' if merge is None else f'{merge:.2f}'} | {peak:.0f} | {peak / reference[3]:.2f} | "
            f"{'n/a' if exact is None else f'{exact[0]:,} of {exact[1]:,} differ'} |"
        )
    text = "\n".join(lines) + "\n"
    target = ROOT.parent / "BENCHMARKS.md"
    if not target.exists():
        target.write_text("# Benchmarks\n\nResults of `bench/` scripts, newest last. Each section "
                          "says the machine, the date and the command.\n")
    with open(target, "a") as handle:
        handle.write(text)
    print(text)


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
