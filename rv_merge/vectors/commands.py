"""`rv vector ...`: the command-line side of rv_merge.vectors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from rv_merge.errors import RecipeError, UsageError, VectorFileError
from rv_merge.recipe.loading import load_recipe
from rv_merge.recipe.model_locations import fingerprint_folder, locate_model
from rv_merge.vectors.compress import combine_ties, compress_vector
from rv_merge.vectors.extract import extract_vector
from rv_merge.recipe.vector_folder import is_vector_folder, size_on_disk
from rv_merge.vectors.info import format_info, plot_info, vector_info
from rv_merge.vectors.lora import export_lora


def run(args: argparse.Namespace) -> None:
    """Run a parsed `rv vector ...` command."""
    command = args.vector_command
    if command == "extract":
        extract(Path(args.out), args.dtype, args.recipe, args.sft, args.grpo, args.force)
    elif command == "compress":
        compress(Path(args.vector), Path(args.out), args.method, keep=args.keep, rank=args.rank,
                 energy=args.energy, seed=args.seed, force=args.force)
    elif command == "combine":
        _refuse_existing(Path(args.out), args.force)
        for vector in args.vectors:
            _require_vector(vector)
        result = combine_ties([Path(v) for v in args.vectors], Path(args.out), args.keep)
        _print_compression(result, Path(args.vectors[0]), Path(args.out))
    elif command == "lora":
        lora(Path(args.vector), Path(args.out), args.scale, args.base_model, args.force)
    elif command == "info":
        run_info(args)


def extract(out: Path, dtype: str = "auto", recipe: Optional[str] = None, sft: Optional[str] = None,
            grpo: Optional[str] = None, force: bool = False) -> None:
    """`rv vector extract`: from a pair recipe, or from --sft and --grpo."""
    _refuse_existing(out, force)
    if recipe and (sft or grpo):
        raise UsageError("give a recipe or --sft and --grpo, not both")
    if recipe:
        parsed = load_recipe(recipe)
        if "vector" in parsed.sources:
            raise RecipeError(f"{recipe}: its source is already a vector ({parsed.source('vector')})")
        references, source = {"sft": parsed.source("sft"), "grpo": parsed.source("grpo")}, recipe
    elif sft and grpo:
        references, source = {"sft": sft, "grpo": grpo}, "rv vector extract"
    else:
        raise UsageError("give a pair recipe, or both --sft DIR and --grpo DIR")
    paths = {role: locate_model(reference, source) for role, reference in references.items()}
    sources = {role: {"reference": references[role], "path": str(paths[role].resolve()),
                      "fingerprint": fingerprint_folder(paths[role])} for role in paths}
    metadata = extract_vector(paths["sft"], paths["grpo"], out, dtype, sources)
    dtypes = sorted({t["dtype"] for t in metadata["tensors"].values()})
    rounding = metadata["rounding"]
    exactness = ("exact: every stored value equals the float64 difference" if rounding["exact"]
                 else f"rounded to {dtype}: relative error {rounding['relative_error']:.3g}")
    print(f"wrote {out}: {len(metadata['tensors'])} tensors ({', '.join(dtypes)}), "
          f"{(out / 'vector.safetensors').stat().st_size / 2**20:.1f} MiB; {exactness}")


def compress(vector: Path, out: Path, method: str, keep: Optional[float] = None, rank: Optional[int] = None,
             energy: Optional[float] = None, seed: int = 0, force: bool = False) -> None:
    """`rv vector compress`: magnitude pruning, DARE or low-rank factorization."""
    _refuse_existing(out, force)
    _require_vector(vector)
    result = compress_vector(vector, out, method, keep=keep, rank=rank, energy=energy, seed=seed)
    _print_compression(result, vector, out)


def lora(vector: Path, out: Path, scale: float = 1.0, base_model: str = "", force: bool = False) -> None:
    """`rv vector lora`: a low-rank vector as a PEFT LoRA adapter."""
    _refuse_existing(out, force)
    _require_vector(vector)
    summary = export_lora(vector, out, scale, base_model)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out}: PEFT LoRA, r={summary['rank']}, {summary['lora_tensors']} linear layers "
          f"({', '.join(summary['modules'])}), {size / 2**20:.1f} MiB")
    print(f"not in the adapter: {len(summary['left_out'])} tensors (norms, biases, embeddings), "
          f"{summary['left_out_norm_share']:.2%} of the vector's squared norm; listed in {out}/README.md")


def run_info(args: argparse.Namespace) -> None:
    for folder in filter(None, (args.vector, args.compare)):
        _require_vector(folder)
    if args.target and not Path(args.target).is_dir():
        raise UsageError(f"--target {args.target}: no such model folder")
    other = Path(args.compare) if args.compare else None
    info = vector_info(Path(args.vector), other, Path(args.target) if args.target else None)
    if args.json:
        print(json.dumps({"size_bytes": info.size_bytes, "layers": info.layers, "modules": info.modules,
                          "total": info.total, "rounding_loss": info.rounding_loss}, indent=1))
    else:
        print(format_info(info, Path(args.vector), other))
    if args.plot:
        plot_info(info, Path(args.plot), f"{args.vector}" + (f" vs {args.compare}" if args.compare else ""))
        print(f"plot: {args.plot}")


def _print_compression(result: dict, source: Path, out: Path) -> None:
    before, after = size_on_disk(source), size_on_disk(out)
    print(f"wrote {out}: {after / 2**20:.1f} MiB ({after / before:.1%} of {source}, {before / 2**20:.1f} MiB); "
          f"relative reconstruction error {result['relative_error']:.4f}")
    worst = sorted(result["tensors"].items(), key=lambda item: -item[1]["relative_error"])[:5]
    print("largest relative errors: " + ", ".join(f"{name} {info['relative_error']:.3f}" for name, info in worst))
    print(f"per-tensor errors: rv vector info {out}")


def _require_vector(folder: str) -> None:
    if not is_vector_folder(folder):
        raise VectorFileError(f"{folder}: not a vector folder (no vector.safetensors); make one with rv vector extract")


def _refuse_existing(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to replace it")
