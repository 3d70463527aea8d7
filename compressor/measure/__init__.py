"""Measurement: evaluation, benchmarks, bitsandbytes variants and metrics.json. report/ only reads what this writes."""
