"""A real SFT/GRPO source pair built offline from SmolLM2-135M-Instruct (see README)."""
