"""Per-layer steering vectors (bias-only adaptation): make, apply, fold, export."""
