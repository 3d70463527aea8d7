"""ONNX export (one place chooses exporter and opset), parity checks, sessions."""
