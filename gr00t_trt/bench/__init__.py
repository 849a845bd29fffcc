"""``gr00t-trt bench``: latency reports users can trust, and the roofline they are judged against.

Everything here except ``reference.py`` is torch-free, so a benchmark runs on the robot with the same
runtime the robot uses. Import the submodules directly (``gr00t_trt.bench.runner`` ...).
"""
