"""Architecture knowledge in one place: families registered by model type (families.py, base.py and known.py: blocks,
heads, how structured pruning rewrites a config; slicing.py: removing heads / neurons and rebuilding a pruned model)."""
