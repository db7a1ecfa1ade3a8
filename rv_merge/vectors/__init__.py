"""Reasoning vectors as files: extract, compress, combine, export as LoRA, inspect (the folder
format itself is a recipe source: rv_merge.recipe.vector_folder)."""
