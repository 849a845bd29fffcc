"""processing/ must run on a robot without PyTorch: import and use it with torch blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = "import sys\nfor name in ('torch', 'transformers', 'torchvision'):\n    sys.modules[name] = None\n"


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_processing_imports_and_runs_without_torch(synthetic_dir, tiny_config):
    result = run(
        f"""
        import numpy as np
        import gr00t_trt.processing
        from gr00t_trt.processing import actions, images, modality, position_grid, preprocess, prompt, state, tokenizer
        from gr00t_trt.families.n16.processing.preprocess import Preprocessor

        pre = Preprocessor.from_dir({str(synthetic_dir)!r}, max_state_dim={tiny_config.max_state_dim},
                                    image_token_index={tiny_config.backbone.image_token_index}, pixels_per_token=784)
        spec = pre.spec.embodiment("unitree_g1")
        obs = {{"video": {{"ego_view": np.zeros((1, 1, 480, 640, 3), np.uint8)}},
               "state": {{k: np.zeros((1, 1, spec.state_norm[k].dim), np.float32) for k in spec.state_keys}},
               "language": {{spec.language_key: [["wave"]]}}}}
        inputs = pre(obs, "unitree_g1")
        out = pre.decode(np.zeros((1, 16, 16), np.float32), inputs)
        assert out["left_arm"].shape == (1, 16, 5)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")
                        and sys.modules[m] is not None)
        assert not leaked, leaked
        assert "gr00t_trt.model" not in sys.modules, "processing imported gr00t_trt.model"
        print("ok")
        """
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_synthetic_processor_needs_no_torch(tmp_path):
    result = run(
        f"""
        from pathlib import Path
        from gr00t_trt.families.n16.presets import preset_config
        from gr00t_trt.families.n16.synthetic_processor import write_processor_files, write_synthetic_tokenizer
        config = preset_config("tiny")
        write_processor_files(Path({str(tmp_path)!r}), config, seed=1)
        write_synthetic_tokenizer(Path({str(tmp_path)!r}), config)
        print("ok")
        """
    )
    # the model package's __init__ runs first: it must stay torch-free for this generator to be usable
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
