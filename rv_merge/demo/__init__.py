"""The offline demo (`rv demo`): a real SFT/GRPO pair built from SmolLM2-135M-Instruct, or tiny
random toy models, run through recipe -> merge -> evaluate -> report."""
