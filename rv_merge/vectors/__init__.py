"""Reasoning vectors as files: extract, compress, export as LoRA, inspect."""
