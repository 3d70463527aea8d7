"""Latency / throughput / memory measurement of PyTorch models and ONNX Runtime sessions."""
