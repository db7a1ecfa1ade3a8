"""`rv steer ...`: the command-line side of rv_merge.steering (extract, info, export, fold)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from rv_merge.errors import UsageError

DEMO_PROBLEMS = "models/smollm2/data/gsm8k/train.jsonl"


def add_parser(commands) -> None:
    steer = commands.add_parser("steer", help="per-layer steering vectors: train, extract, info, export, fold")
    actions = steer.add_subparsers(dest="steer_command", required=True)

    train = actions.add_parser("train", help="GRPO (trl) with only one vector per layer trainable")
    train.add_argument("--model", required=True, help="model folder to steer (every weight stays frozen)")
    train.add_argument("--problems", default=DEMO_PROBLEMS, help="GSM8K-format JSONL ({question, answer ending "
                       "'#### N'}); default: the demo's training problems (written by rv demo)")
    train.add_argument("--steps", type=int, default=40)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, help="steering folder to write")
    train.add_argument("--force", action="store_true", help="replace OUT (only if rv-merge wrote it)")

    extract = actions.add_parser("extract", help="vectors that move BASE's layer outputs toward TUNED's, no training")
    extract.add_argument("--base", required=True, help="model folder the vectors are for (e.g. SFT, or a target)")
    extract.add_argument("--tuned", required=True, help="model folder to imitate (e.g. GRPO, or target + v merged)")
    extract.add_argument("--prompts", required=True, help="JSONL of {\"question\": ...} (GSM8K layout)")
    extract.add_argument("--limit", type=int, default=64, help="prompts to average over")
    extract.add_argument("--out", required=True, help="steering folder to write")
    extract.add_argument("--force", action="store_true", help="replace OUT (only if rv-merge wrote it)")

    info = actions.add_parser("info", help="per-layer norms, cosines and a logit lens")
    info.add_argument("vectors")
    info.add_argument("--model", help="model folder with weights (default: the one recorded in the vectors)")
    info.add_argument("--prompts", help="JSONL of questions: also the norm relative to the residual stream")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--plot", help="write a PNG of the per-layer numbers")

    export = actions.add_parser("export", help="llama.cpp control-vector GGUF, lm-eval `steered` .pt, or .npy")
    export.add_argument("vectors")
    export.add_argument("out", help="FILE.gguf, FILE.pt or FILE.npy (the suffix picks the format)")
    export.add_argument("--scale", type=float, default=1.0)

    fold = actions.add_parser("fold", help="write MODEL with the vectors as down_proj biases (Llama family)")
    fold.add_argument("vectors")
    fold.add_argument("model")
    fold.add_argument("out")
    fold.add_argument("--scale", type=float, default=1.0)
    fold.add_argument("--layers", help="first-last, 0-based inclusive (default: all)")


def run(args: argparse.Namespace) -> None:
    from rv_merge.steering.artifact import load_vectors

    if args.steer_command == "train":
        run_train(args)
    elif args.steer_command == "extract":
        run_extract(Path(args.base), Path(args.tuned), Path(args.prompts), args.limit, Path(args.out), args.force)
    elif args.steer_command == "info":
        run_info(args)
    elif args.steer_command == "export":
        run_export(load_vectors(Path(args.vectors)), Path(args.out), args.scale)
    else:
        from rv_merge.steering.apply import fold_into_model

        out = Path(args.out)
        if out.exists():
            raise UsageError(f"{out} exists; choose a new folder")
        fold_into_model(Path(args.model), load_vectors(Path(args.vectors)), out, args.scale, parse_layers(args.layers))
        print(f"wrote {out}: {args.model} with the vectors (scale {args.scale}) as mlp.down_proj biases")


def parse_layers(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    try:
        first, last = (int(part) for part in text.split("-"))
    except ValueError:
        raise UsageError(f"--layers {text!r}: write first-last, e.g. 4-20") from None
    return first, last


def run_extract(base: Path, tuned: Path, prompts_file: Path, limit: int, out: Path, force: bool) -> None:
    from rv_merge.steering.artifact import save_vectors
    from rv_merge.steering.extract import extract_increments, read_prompts

    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to replace it")
    for folder in (base, tuned):
        if not (folder / "config.json").is_file():
            raise UsageError(f"{folder}: not a model folder (no config.json)")
    prompts = read_prompts(prompts_file, limit)
    print(f"measuring layer outputs of {base} and {tuned} on {len(prompts)} prompts ...", flush=True)
    steering = extract_increments(base, tuned, prompts)
    save_vectors(steering, out, base)
    print(f"wrote {out}: {steering.layers} x {steering.hidden_size} float32 "
          f"({steering.layers * steering.hidden_size} numbers)")


def run_train(args: argparse.Namespace) -> None:
    from rv_merge.steering.extract import read_problems
    from rv_merge.steering.train import SteeringBudget, train_steering_folder

    out, model = Path(args.out), Path(args.model)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to replace it")
    if not (model / "config.json").is_file():
        raise UsageError(f"{model}: not a model folder (no config.json)")
    if not Path(args.problems).is_file():
        raise UsageError(f"--problems {args.problems}: no such file (the default is written by `rv demo`)")
    problems = read_problems(Path(args.problems), with_answers=True)
    budget = SteeringBudget(steps=args.steps, learning_rate=args.learning_rate, seed=args.seed)
    print(f"training steering vectors for {model}: {budget.steps} GRPO steps on {len(problems)} problems ...",
          flush=True)
    train_steering_folder(model, problems, budget, out)


def run_info(args: argparse.Namespace) -> None:
    from rv_merge.steering.artifact import load_vectors
    from rv_merge.steering.extract import read_prompts
    from rv_merge.steering.info import format_steering_info, plot_steering_info, steering_info

    steering = load_vectors(Path(args.vectors))
    model = Path(args.model or steering.metadata["model"])
    if not (model / "config.json").is_file():
        raise UsageError(f"{model}: no model there; pass --model DIR")
    prompts = read_prompts(Path(args.prompts), 16) if args.prompts else None
    rows = steering_info(steering, model, prompts)
    print(json.dumps(rows, indent=1) if args.json else format_steering_info(rows))
    if args.plot:
        plot_steering_info(rows, Path(args.plot), str(args.vectors))


def run_export(steering, out: Path, scale: float) -> None:
    from rv_merge.steering.exports import export_control_vector, export_lm_eval_steered, export_numpy

    if out.exists():
        raise UsageError(f"{out} exists; choose a new file name")
    if out.suffix == ".gguf":
        for note in export_control_vector(steering, out, scale):
            print(f"note: {note}")
    elif out.suffix == ".pt":
        export_lm_eval_steered(steering, out, scale)
    elif out.suffix == ".npy":
        export_numpy(steering, out, scale)
    else:
        raise UsageError(f"{out}: the suffix picks the format: .gguf (llama.cpp), .pt (lm-eval steered) or .npy")
    print(f"wrote {out} (scale {scale})")
