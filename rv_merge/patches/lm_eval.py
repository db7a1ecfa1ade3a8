"""Every lm-eval internal rv-merge relies on (written for lm-eval >=0.4.13,<0.5).

Nothing of lm-eval is replaced; these private things are used:

- `lm_eval.tasks._yaml_loader.load_yaml` reads task YAML files with their `include:`s
  resolved and `!function` tags left unresolved, so `rv tasks`, task fingerprints and the
  reports can list the suite without importing the hooks (the public TaskManager imports
  every hook and builds the whole index);
- `HFLM.model` is the loaded transformers module inside lm-eval's `hf` backend, whose
  weights an in-memory alpha sweep rewrites in place;
- `HFLM._model_generate(context, max_length, stop, **kwargs)`, called by `HFLM.generate_until`
  with the padded prompts, their `attention_mask` and the stop strings, and expected to return
  prompts + new tokens: rv_merge.evaluate.greedy_generation.RowDroppingHFLM overrides it.

`UPSTREAM_SOURCES` holds a hash of each one's source as written for; the tests compare it
with the installed lm-eval, so an upstream change fails loudly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import _yaml_loader

from rv_merge.patches.upstream import require_version, source_fingerprints

require_version("lm_eval", ">=0.4.13,<0.5", "lm-eval[hf]>=0.4.13,<0.5")

# sha256 (first 16 hex digits) of inspect.getsource of each internal as relied on here.
UPSTREAM_SOURCES = {
    "lm_eval.tasks._yaml_loader.load_yaml": "26dc6213547a6834",
    "lm_eval.models.huggingface.HFLM.model": "7c3fc1658b9a2621",
    "lm_eval.models.huggingface.HFLM._model_generate": "c080f2baae104b1e",
    "lm_eval.models.huggingface.HFLM.generate_until": "d7a28ec8c421c6c2",
}


def upstream_fingerprints() -> dict[str, str]:
    """The installed lm-eval's version of each internal, hashed like UPSTREAM_SOURCES."""
    internals = {"lm_eval.tasks._yaml_loader.load_yaml": _yaml_loader.load_yaml,
                 "lm_eval.models.huggingface.HFLM.model": HFLM.model.fget,
                 "lm_eval.models.huggingface.HFLM._model_generate": HFLM._model_generate,
                 "lm_eval.models.huggingface.HFLM.generate_until": HFLM.generate_until}
    return source_fingerprints(internals)


def read_task_yaml(path: Path, follow_includes: bool = True) -> dict:
    """A task YAML as lm-eval reads it (includes merged unless `follow_includes` is False),
    with `!function` tags left unresolved, so no hook is imported."""
    return _yaml_loader.load_yaml(path, resolve_func=False, recursive=follow_includes)


def loaded_module(model: HFLM) -> torch.nn.Module:
    """The transformers model inside lm-eval's hf backend."""
    return model.model
