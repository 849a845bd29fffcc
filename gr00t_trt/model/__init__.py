"""Faithful PyTorch definition of GR00T N1.6 that loads the real checkpoint (the verification oracle)."""
