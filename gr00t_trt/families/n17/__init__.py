"""GR00T N1.7 (Gr00tN1d7, Qwen3-VL backbone)."""
