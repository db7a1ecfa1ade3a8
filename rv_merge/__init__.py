"""rv-merge: move reasoning between language models by weight arithmetic.

The flow is recipe -> checks -> merge -> (evaluate -> report):
`recipe` validates a YAML recipe, `checks` verifies that the three models are compatible,
`method` is the mergekit merge method, `guard` wraps mergekit's `run_merge` so every
`reasoning_vector` merge is checked and written atomically, and `cli` is the `rv` command.
"""

__version__ = "0.1.0"
