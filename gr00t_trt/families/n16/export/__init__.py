"""GR00T N1.6's PyTorch face and the export wrappers of its own graphs (the Eagle vision tower and backbone)."""
