"""Proving an export right: verify (four levels against the PyTorch reference), the CPU preflight, parity metrics."""
