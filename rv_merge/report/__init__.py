"""Stage 4, the report: statistics over stored per-document scores, the tables built from them,
report.md, plots, and the index of all recipes. Reads only what `rv eval` stored."""
