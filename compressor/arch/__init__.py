"""Architecture knowledge in one place: families registered by model type (families.py, base.py and known.py: blocks,
heads, how structured pruning rewrites a config; slicing.py: removing heads / neurons and rebuilding a pruned model);
signature.py: a model's ONNX inputs and outputs per task, with the key / value cache variant for causal LMs."""
