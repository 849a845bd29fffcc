"""Observation → model inputs and model outputs → physical actions; numpy/Pillow/OpenCV/tokenizers only."""
