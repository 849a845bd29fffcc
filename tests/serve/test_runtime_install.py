"""The robot-side install exactly as README.md's Install section says it (the source folder, and a wheel built
on the "workstation" and installed from the folder it was copied to), into a fresh venv resolved from the
package registry; then `run`, `inspect EXPORT`, `doctor`, `bench`, `serve` and the light client on an
export — with torch and onnx absent."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EMBODIMENT

from gr00t_trt.processing.observations import save_observation

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a fresh venv and a registry install: a minute or two


def sh(*args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)


def readme_install_commands() -> dict[str, str]:
    """The pip commands of README.md's Install section, by role: 'source' (install from the source folder),
    'wheel' (build the wheel on the workstation) and 'robot' (install the copied wheel)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Install"):text.index("\n## ", text.index("## Install") + 1)]
    lines = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)
             for line in block.splitlines()]
    roles = {"source": [c for c in lines if re.fullmatch(r"python -m pip install \.", c)],
             "wheel": [c for c in lines if c.startswith("python -m pip wheel")],
             "robot": [c for c in lines if c.startswith("python -m pip install") and c.endswith(".whl")]}
    assert all(len(found) == 1 for found in roles.values()), roles  # the README names each way once
    return {role: found[0] for role, found in roles.items()}


def run_as_readme(command: str, venv: Path, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # `python` is the venv's, as when activated
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=900, env=env, cwd=cwd)
    assert done.returncode == 0, f"{command} (in {cwd}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    commands = readme_install_commands()
    base = tmp_path_factory.mktemp("robot")
    venv = base / "venv"
    made = sh(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    probe = sh(python, "-m", "pip", "download", "--no-deps", "--quiet", "-d", venv / "probe", "msgpack", timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"pip cannot reach the package registry: {probe.stderr.strip().splitlines()[-1:]}")
    source = base / "gr00t-trt"  # a copy of the source folder as it would be handed over (no build leftovers)
    shutil.copytree(ROOT / "gr00t_trt", source / "gr00t_trt", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run_as_readme(commands["source"], venv, source)  # way 1: the source folder on the robot
    run_as_readme(commands["wheel"], venv, source)  # way 2: a wheel built on the workstation ...
    robot = base / "copied"
    robot.mkdir()
    for wheel in (source / "dist").glob("*.whl"):
        shutil.copy(wheel, robot)
    run_as_readme(commands["robot"], venv, robot)  # ... installed on the robot from where it was copied
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

    # the robot is where people benchmark and look at what they copied there: no onnx, no torch needed
    inspected = sh(cli, "inspect", tiny_export, "--json", tmp_path / "sizes.json", env=env, cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stdout + inspected.stderr
    assert json.loads((tmp_path / "sizes.json").read_text())["engine_weights_total"] > 0
    doctor = sh(cli, "doctor", tiny_export, env=env, cwd=tmp_path)
    assert doctor.returncode == 0 and "onnxruntime" in doctor.stdout.lower(), doctor.stdout + doctor.stderr
    bench = sh(cli, "bench", tiny_export, "--embodiment", EMBODIMENT, "--backend", "ort", "--iters", "3", "--warmup",
               "1", "--json", tmp_path / "bench.json", env=env, cwd=tmp_path, timeout=300)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert json.loads((tmp_path / "bench.json").read_text())["end_to_end_ms"]["n"] == 3

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

    want = reference_policy.predict(obs, embodiment=EMBODIMENT, seed=5)
    with np.load(tmp_path / "served.npz") as served:
        assert set(served.files) == set(want)
        for key in want:  # another onnxruntime build may round differently: float tolerance, not bits
            np.testing.assert_allclose(served[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)


def _observation(policy):
    from gr00t_trt.processing.observations import synthetic_observation

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
