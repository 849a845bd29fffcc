"""GR00T N1.6 (Gr00tN1d6, Eagle backbone: SigLIP2 + Qwen3)."""
