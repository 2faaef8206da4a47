"""Stage 1 strategies: which layers, heads and channels each shape keeps (data files, not pickles)."""
