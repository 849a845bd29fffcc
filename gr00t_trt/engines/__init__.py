"""TensorRT engine builds (a later issue)."""
