"""TensorRT engines from the exported graphs: profiles, builds, the engine cache, audits, trtexec scripts.

Small steps, each testable alone (Polygraphy's ``XFromY`` idea): ``profiles`` (min/opt/max from the
manifest), ``build`` (network from ONNX, config, plan), ``cache`` (engine key and sidecars), ``audit``
(layer precisions read back from the engine), ``trtexec`` (the equivalent command lines), ``plan``
(header reading, stdlib only). ``tensorrt`` and ``cuda-python`` are imported lazily where needed.
"""
