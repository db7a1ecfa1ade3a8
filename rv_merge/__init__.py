"""rv-merge: move reasoning between language models by weight arithmetic.

The flow, one folder per stage: `recipe` (schema, loading, where the models are, checks)
-> `merge` (exact arithmetic, the mergekit method, guarded atomic merges, the model store)
-> `evaluate` (lm-eval tasks' data and perturbations, the sandbox, cached jobs)
-> `report` (statistics, tables, report.md, plots, the index). Beside them: `vectors`
(reasoning vectors as files), `patches` (third-party internals), `demo` (`rv demo`) and
`cli` (the `rv` command). ARCHITECTURE.md draws the same on one page.
"""

__version__ = "0.1.0"
