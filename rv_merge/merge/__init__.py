"""Stage 2, the merge: the exact arithmetic, the mergekit method, a guarded mergekit run that
checks first and writes atomically, the store of merged models, and merges held in memory
(alpha sweeps)."""
