"""The arguments of `rv vector ...`, kept apart from rv_merge.vectors.commands, which runs
them: building the `rv` parser imports no torch, so `rv --help` and usage errors are quick."""

from __future__ import annotations


def add_vector_parser(commands) -> None:
    """Add `rv vector` and its subcommands to the `rv` parser's subcommands."""
    vector = commands.add_parser("vector", help="reasoning vectors as files: extract, compress, combine, lora, info")
    sub = vector.add_subparsers(dest="vector_command", required=True)

    extract = sub.add_parser("extract", help="write GRPO - SFT (exact by default) as a vector folder")
    extract.add_argument("recipe", nargs="?", help="a pair recipe (its sft and grpo models)")
    extract.add_argument("--sft", help="SFT model folder or Hub id (instead of a recipe)")
    extract.add_argument("--grpo", help="GRPO model folder or Hub id (instead of a recipe)")
    extract.add_argument("--out", required=True, help="vector folder to write")
    extract.add_argument("--dtype", default="auto", help="auto (exact, default), float32, bfloat16, float16, float64")

    compress = sub.add_parser("compress", help="magnitude pruning, DARE or low-rank factorization")
    compress.add_argument("vector")
    compress.add_argument("--out", required=True)
    compress.add_argument("--method", required=True, choices=["magnitude", "dare", "lowrank"])
    compress.add_argument("--keep", type=float, help="magnitude/dare: fraction of entries kept")
    compress.add_argument("--rank", type=int, help="lowrank: rank of every matrix")
    compress.add_argument("--energy", type=float, help="lowrank: share of sum(s^2) to keep, per matrix")
    compress.add_argument("--seed", type=int, default=0, help="dare: seed of the random drop")

    combine = sub.add_parser("combine", help="TIES: trim, elect signs and average several vectors")
    combine.add_argument("vectors", nargs="+")
    combine.add_argument("--out", required=True)
    combine.add_argument("--keep", type=float, default=0.2, help="fraction kept of each vector before election")

    lora = sub.add_parser("lora", help="export a low-rank vector as a PEFT LoRA adapter")
    lora.add_argument("vector")
    lora.add_argument("--out", required=True)
    lora.add_argument("--scale", type=float, default=1.0, help="sign * alpha folded into the adapter")
    lora.add_argument("--base-model", default="", help="base_model_name_or_path written in adapter_config.json")

    info = sub.add_parser("info", help="norms per layer and module; cosine and sign agreement with another vector")
    info.add_argument("vector")
    info.add_argument("--compare", help="a second vector folder")
    info.add_argument("--target", help="target model folder: norms relative to its weights, and how much of "
                      "the vector each output dtype rounds away")
    info.add_argument("--plot", help="write a PNG plot here")
    info.add_argument("--json", action="store_true", help="machine-readable output")

    for parser in (extract, compress, combine, lora):
        parser.add_argument("--force", action="store_true", help="replace an existing --out")
