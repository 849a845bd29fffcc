"""GR00T N1.6's host-side processing: its processor files (and the Eagle image chain and prompt)."""
