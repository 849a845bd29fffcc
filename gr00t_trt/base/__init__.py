"""Shared foundations: the exception family, bounded/atomic file I/O, staged artefact folders."""
