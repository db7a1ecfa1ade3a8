"""Stage 1, the recipe: its schema, reading a file into it, where its models are, and whether
they can be merged (checks that read only configs, tokenizers and safetensors headers)."""
