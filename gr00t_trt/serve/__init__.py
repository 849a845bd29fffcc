"""Serving a Policy over Isaac-GR00T's ZeroMQ protocol: ``wire`` (msgpack + npy), ``server`` and the light
``client``. Nothing is imported here, so ``gr00t_trt.serve.client`` stays free of the runtime."""
