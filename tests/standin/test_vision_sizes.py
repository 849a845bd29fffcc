"""The one vision engine through the TensorRT stand-in: its optimisation profile takes every camera size of
the default export (dynamic patch count) and batch 2, at ONNX Runtime's numbers (the stand-in checks every
binding's shapes against the engine's profile, as TensorRT does); other sizes are refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import standin
from gr00t_trt.base.errors import ObservationError
from gr00t_trt.engines.build import BuildOptions, build_engines
from gr00t_trt.processing.observations import synthetic_observation
from gr00t_trt.runtime.policy import Policy


@pytest.fixture(scope="module")
def trt_export(tiny_export, tmp_path_factory):
    folder = shutil.copytree(tiny_export, tmp_path_factory.mktemp("trt-vision") / "export")
    with standin.install():
        build_engines(folder, BuildOptions())
        yield folder


def test_one_vision_engine_serves_16_9_portrait_square_and_batch_2(trt_export):
    with Policy.load(trt_export, backend="ort") as ref, Policy.load(trt_export, backend="trt") as policy:
        spec = policy.preprocessor.spec
        cases = [(1, ((252, 448), (448, 252))), (2, ((252, 252), (588, 252))), (1, ((252, 588), (336, 252)))]
        for batch, sizes in cases:
            obs = synthetic_observation(spec, "libero_panda", seed=batch, batch=batch, image_sizes=sizes)
            want = ref.predict(obs, embodiment="libero_panda", seed=3)
            got = policy.predict(obs, embodiment="libero_panda", seed=3)
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)
        engine = policy.pipeline.backend
        assert engine.name == "trt" and len(policy.manifest.graphs_of_kind("vision")) == 1
        bad = synthetic_observation(spec, "unitree_g1", seed=0, image_sizes=((252, 896),))  # one 32:9 camera
        with pytest.raises(ObservationError, match=r"image 0 is 252x896 but the export serves .* W in 252\.\.588 — "
                                                    r"re-export with --image-size 252x896"):
            policy.predict(bad, embodiment="unitree_g1")

