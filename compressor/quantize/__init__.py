"""INT8 quantization schemes, registered by config type."""
