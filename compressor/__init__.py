"""compressor: distill, prune, quantize and benchmark Hugging Face models from one recipe."""

__version__ = "0.1.0"
