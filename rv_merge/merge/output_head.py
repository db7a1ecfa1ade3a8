"""Make a merged folder's head agree with its config (plans in rv_merge.recipe.head_tying).

Runs on the staging folder, after mergekit wrote it and before it is swapped into place:
UNTIE sets `tie_word_embeddings: false` (the folder holds the merged lm_head); DROP_HEAD
removes the lm_head mergekit wrote, equal to the merged embeddings, from its shard (rewritten
tensor by tensor, every other tensor's bytes unchanged) and from the shard index.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from rv_merge.recipe.head_tying import DROP_HEAD, HEAD, UNTIE
from rv_merge.recipe.vector_folder import SafetensorsStream


def finish_output_head(folder: Path, plan: str) -> None:
    if plan == UNTIE:
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        config["tie_word_embeddings"] = False
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    elif plan == DROP_HEAD:
        for shard in sorted(folder.glob("*.safetensors")):
            with safe_open(str(shard), "pt") as handle:
                if HEAD not in handle.keys():
                    continue
                metadata = handle.metadata() or {}
                rewritten = SafetensorsStream(shard.with_name(shard.name + ".rewrite"))
                for name in handle.keys():
                    if name != HEAD:
                        rewritten.add(name, handle.get_tensor(name))
            rewritten.finish(metadata)
            rewritten.path.replace(shard)
        index_path = folder / "model.safetensors.index.json"
        if index_path.is_file():
            index = json.loads(index_path.read_text())
            index.get("weight_map", {}).pop(HEAD, None)
            index_path.write_text(json.dumps(index, indent=2))
