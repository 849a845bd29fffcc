"""N1.7 host-side processing (numpy, OpenCV, Pillow, tokenizers; never torch)."""
