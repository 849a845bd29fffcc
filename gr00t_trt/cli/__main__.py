"""``python -m gr00t_trt.cli`` — the same as the ``gr00t-trt`` command."""

from . import main

main()
