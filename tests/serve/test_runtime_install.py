"""The robot-side install: `pip install gr00t-trt` (no extras) into a fresh venv, resolved from the package
registry, then `run`, `serve` and the light client on an export — with torch absent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EMBODIMENT

from gr00t_trt.observations import save_observation

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a fresh venv and a registry install: a minute or two


def sh(*args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("robot") / "venv"
    made = sh(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    probe = sh(python, "-m", "pip", "download", "--no-deps", "--quiet", "-d", venv / "probe", "msgpack", timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"pip cannot reach the package registry: {probe.stderr.strip().splitlines()[-1:]}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed = sh(python, "-m", "pip", "install", "--quiet", ROOT, timeout=900, env=env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_runtime_profile_runs_and_serves_without_torch(runtime_venv, tiny_export, tmp_path, reference_policy):
    python, cli = runtime_venv / "bin" / "python", runtime_venv / "bin" / "gr00t-trt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONNOUSERSITE"] = "1"

    absent = sh(python, "-c", "import importlib.util as u; print([m for m in ('torch', 'transformers', 'onnx', "
                "'safetensors') if u.find_spec(m)])", env=env)
    assert absent.stdout.strip() == "[]", absent.stdout + absent.stderr
    where = sh(python, "-c", "import gr00t_trt; print(gr00t_trt.__file__)", env=env, cwd=tmp_path)
    assert str(runtime_venv) in where.stdout, where.stdout + where.stderr  # the installed copy, not the worktree

    ran = sh(cli, "run", tiny_export, "--synthetic", "--embodiment", EMBODIMENT, "--backend", "ort", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "action chunk" in ran.stdout

    refused = sh(cli, "export", "--checkpoint", tmp_path / "none", "--out", tmp_path / "x", env=env, cwd=tmp_path)
    assert refused.returncode == 1 and "pip install 'gr00t-trt[export]'" in " ".join(refused.stderr.split())

    obs = _observation(reference_policy)
    save_observation(tmp_path / "obs.npz", obs)
    port = _free_port()
    server = subprocess.Popen([str(cli), "serve", str(tiny_export), "--backend", "ort", "--embodiment", EMBODIMENT,
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=tmp_path)
    try:
        client = sh(python, "-c", textwrap.dedent(f"""
            import sys, time
            import numpy as np
            from gr00t_trt.client import PolicyClient
            with np.load({str(tmp_path / 'obs.npz')!r}) as data:
                obs = {{k: data[k] for k in data.files}}
            obs = {{k: ([str(s) for s in v] if v.dtype.kind == "U" else v) for k, v in obs.items()}}
            with PolicyClient("127.0.0.1", {port}, timeout_ms=1000) as client:
                deadline = time.monotonic() + 120
                while not client.ping():
                    assert time.monotonic() < deadline, "no server"
                client.timeout_ms = 60000
                client._open_socket()
                action, info = client.get_action(obs, {{"seed": 5}})
            np.savez({str(tmp_path / 'served.npz')!r}, **action)
            heavy = [m for m in sys.modules if m.startswith(("torch", "onnxruntime", "cv2", "gr00t_trt.runtime",
                                                             "gr00t_trt.processing"))]
            print("heavy:", heavy, "backend:", info["backend"])
            """), env=env, cwd=tmp_path, timeout=300)
        assert client.returncode == 0, client.stdout + client.stderr
        assert "heavy: [] backend: ort" in client.stdout
        server.send_signal(signal.SIGTERM)
        _, log = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, log
    assert "get_action ok" in log

    want = reference_policy.get_action(obs, embodiment=EMBODIMENT, seed=5)
    with np.load(tmp_path / "served.npz") as served:
        assert set(served.files) == set(want)
        for key in want:  # another onnxruntime build may round differently: float tolerance, not bits
            np.testing.assert_allclose(served[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)


def _observation(policy):
    from gr00t_trt.observations import synthetic_observation

    nested = synthetic_observation(policy.preprocessor.spec, EMBODIMENT, seed=8, image_sizes=policy.manifest.image_sizes)
    flat = {f"video.{k}": v for k, v in nested["video"].items()}
    flat |= {f"state.{k}": v for k, v in nested["state"].items()}
    flat |= {k: [t[0] for t in v] for k, v in nested["language"].items()}
    return flat


def _free_port() -> int:
    import zmq

    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.REP)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        sock.close(linger=0)
    time.sleep(0.05)
    return port
