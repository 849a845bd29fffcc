"""The command line: each command end to end on the tiny export, and one-line errors."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from gr00t_trt.cli import app
from gr00t_trt.families.n16.processing.modality import load_processor_spec
from gr00t_trt.processing.observations import save_observation, synthetic_observation

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, match: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert match in " ".join(result.output.split()), result.output


def test_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("inspect", "make-checkpoint", "export", "run", "verify", "demo"):
        assert command in result.output


def test_run_synthetic_prints_actions_and_timings(tiny_export, tmp_path):
    out = tmp_path / "actions.npz"
    result = invoke("run", tiny_export, "--synthetic", "--embodiment", "unitree_g1", "--repeat", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert "left_arm" in result.output and "action_head" in result.output
    with np.load(out) as actions:
        assert actions["left_arm"].shape[:2] == (1, 16)


def test_run_from_an_observation_file(tiny_export, tiny_checkpoint, tmp_path):
    spec = load_processor_spec(tiny_checkpoint)
    path = tmp_path / "obs.npz"
    save_observation(path, synthetic_observation(spec, "libero_panda", seed=4))
    result = invoke("run", tiny_export, "--obs", path, "--embodiment", "libero_panda", "--out", tmp_path / "a.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "a.npz") as actions:
        assert set(actions.files) == {"action.eef_pose", "action.gripper"}  # flat in, flat out


def test_run_needs_exactly_one_observation_source(tiny_export):
    one_line_error(invoke("run", tiny_export), "give exactly one of --obs FILE.npz or --synthetic")


def test_run_without_embodiment_lists_the_choices(tiny_export):
    one_line_error(invoke("run", tiny_export, "--synthetic"), "libero_panda, new_embodiment, unitree_g1")


def test_run_refuses_a_tampered_export(tiny_export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_export, copy)
    with open(copy / "dit.onnx.data", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    one_line_error(invoke("run", copy, "--synthetic", "--embodiment", "unitree_g1"), "does not match the manifest")


def test_run_on_a_missing_export(tmp_path):
    one_line_error(invoke("run", tmp_path / "nope", "--synthetic"), "export directory not found")


def test_verify_writes_a_passing_json_report(tiny_export, tiny_checkpoint, tmp_path):
    report = tmp_path / "report.json"
    result = invoke("verify", tiny_export, "--checkpoint", tiny_checkpoint, "--embodiment", "new_embodiment",
                    "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert data["context"]["backend"] == "ort" and data["context"]["steps"] == 4
    assert set(data["context"]["precisions"].values()) == {"fp32"}
    stages = [c["stage"] for c in data["comparisons"]]
    assert all(stage.startswith("new_embodiment/") for stage in stages), stages
    for level in ("alone", "lock-step 3", "action head on reference backbone", "end-to-end: normalised action",
                  "end-to-end: physical"):
        assert any(level in stage for stage in stages), level
    for c in data["comparisons"]:
        assert c["passed"] is True and c["rel_l2"] <= 1e-4 and c["threshold"] == "rel L2 ≤ 0.0001", c


def test_verify_exits_2_and_still_writes_the_report_on_failure(tiny_export, tmp_path):
    other = tmp_path / "other"
    assert invoke("make-checkpoint", other, "--preset", "tiny", "--seed", "5").exit_code == 0
    report = tmp_path / "report.json"
    result = invoke("verify", tiny_export, "--checkpoint", other, "--embodiment", "unitree_g1", "--json", report)
    one_line_error(result, "is not the checkpoint")  # refused before any work, and still reported
    assert json.loads(report.read_text())["refused"].startswith(f"{other} is not the checkpoint")
    result = invoke("verify", tiny_export, "--checkpoint", other, "--embodiment", "unitree_g1", "--json", report,
                    "--any-checkpoint")
    assert result.exit_code == 2, result.output
    assert json.loads(report.read_text())["passed"] is False


def test_export_errors_are_one_line(tiny_checkpoint, tmp_path):
    one_line_error(invoke("export", "--checkpoint", tiny_checkpoint, "--out", tmp_path / "x", "--image-size", "252by336"),
                   "expected HxW, e.g. 252x336")
    one_line_error(invoke("export", "--checkpoint", tmp_path / "missing", "--out", tmp_path / "y"), "missing")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_export_command_writes_a_runnable_directory(cli_export):
    """The export itself is the shared ``cli_export`` fixture (tests/e2e/conftest.py)."""
    assert cli_export.exit_code == 0, cli_export.output
    assert "252x448" in cli_export.output
    summary = " ".join(cli_export.output.split())  # the console wraps long lines
    assert ("graphs (fp32: vision, backbone, dit_context, state_encoder, action_encoder, action_decoder; "
            "fp16: dit)") in summary
    result = invoke("run", cli_export.folder, "--synthetic")
    assert result.exit_code == 0, result.output


def test_inspect_prints_counts_and_layout(tiny_checkpoint, tmp_path):
    result = invoke("inspect", tiny_checkpoint, "--json", tmp_path / "i.json")
    assert result.exit_code == 0, result.output
    assert "layout: OK" in result.output
    data = json.loads((tmp_path / "i.json").read_text())
    # counted here straight from the safetensors headers, independently of inspect's own code
    shapes = {}
    for shard in sorted(tiny_checkpoint.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            shapes |= {key: f.get_slice(key).get_shape() for key in f.keys()}
    lm_head = "backbone.model.language_model.lm_head.weight"
    assert data["num_tensors"] == len(shapes)
    assert data["total_params"] == sum(math.prod(shape) for shape in shapes.values())
    assert data["total_params_without_lm_head"] == data["total_params"] - math.prod(shapes[lm_head])
    assert data["layout"]["ok"] is True and data["layout"]["missing"] == data["layout"]["unexpected"] == []
    assert len(data["layout"]["skipped"]) == 12 and lm_head in data["layout"]["skipped"]
    embodiment_ids = json.loads((tiny_checkpoint / "embodiment_id.json").read_text())
    assert {tag: data["embodiment_ids"][tag] for tag in embodiment_ids} == embodiment_ids
    assert f"{data['total_params_without_lm_head']:,}" in result.output


def test_inspect_full_size_header_only_checkpoint(tmp_path):
    from gr00t_trt.families.n16.presets import preset_config
    from gr00t_trt.families.n16.synthetic import make_header_only_checkpoint

    folder = make_header_only_checkpoint(tmp_path / "full", preset_config("full"))
    result = invoke("inspect", folder)
    assert result.exit_code == 0, result.output
    assert "2,975,968,192" in result.output and "3,286,608,832" in result.output


def test_inspect_an_export_lists_every_graph_with_its_sizes(tiny_export, tmp_path):
    from gr00t_trt.contract.manifest import load_manifest

    result = invoke("inspect", tiny_export, "--json", tmp_path / "sizes.json")
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tiny_export)
    data = json.loads((tmp_path / "sizes.json").read_text())
    assert [g["name"] for g in data["graphs"]] == list(manifest.graphs)
    for graph in data["graphs"]:
        entry = manifest.graphs[graph["name"]]
        onnx_file = tiny_export / entry.file
        data_file = onnx_file.with_name(onnx_file.name + ".data")
        on_disk = onnx_file.stat().st_size + (data_file.stat().st_size if data_file.exists() else 0)
        assert graph["on_disk"] == on_disk and graph["precision"] == entry.precision
        assert 0 < graph["engine_weights"] <= on_disk  # an fp32 export: the weights are most of each file
        assert graph["name"] in result.output
    assert data["engine_weights_total"] == sum(g["engine_weights"] for g in data["graphs"])
    assert "total" in result.output


def test_version_and_argument_errors_before_any_work(tiny_export, tmp_path):
    from gr00t_trt import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"gr00t-trt {__version__}"
    seed = invoke("run", tiny_export, "--synthetic", "--embodiment", "unitree_g1", "--seed", "-1")
    assert seed.exit_code == 2 and "--seed" in seed.output and "Traceback" not in seed.output
    missing = tmp_path / "nowhere" / "a.npz"
    one_line_error(invoke("run", tiny_export, "--synthetic", "--embodiment", "unitree_g1", "--out", missing),
                   f"--out {missing}: folder {missing.parent} does not exist")
    assert "action chunk" not in invoke("run", tiny_export, "--synthetic", "--embodiment", "unitree_g1",
                                        "--out", missing).output  # refused before running


def test_export_refuses_the_current_folder(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    one_line_error(invoke("export", "--checkpoint", tiny_checkpoint, "--out", ".", "--force"),
                   "is the current or home folder")
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_run_save_obs_writes_a_starting_observation(tiny_export, tmp_path):
    path = tmp_path / "start.npz"
    result = invoke("run", tiny_export, "--synthetic", "--embodiment", "unitree_g1", "--save-obs", path)
    assert result.exit_code == 0, result.output
    again = invoke("run", tiny_export, "--obs", path, "--embodiment", "unitree_g1")
    assert again.exit_code == 0, again.output


def test_tables_stay_readable_at_80_columns_when_piped(tiny_export):
    result = invoke("run", tiny_export, "--synthetic", "--embodiment", "unitree_g1")
    assert result.exit_code == 0
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "pipeline (subtotal)" in result.output


def test_run_record_saves_observations_for_calibration(tiny_export, tmp_path):
    folder = tmp_path / "calib"
    for seed in (0, 1):
        result = invoke("run", tiny_export, "--synthetic", "--embodiment", "unitree_g1", "--seed", seed,
                        "--record", folder)
        assert result.exit_code == 0, result.output
    files = sorted((folder / "unitree_g1").glob("*.npz"))
    assert len(files) == 2
    again = invoke("run", tiny_export, "--obs", files[0], "--embodiment", "unitree_g1")
    assert again.exit_code == 0, again.output


# ------------------------------------------------------------------------------------------ first contact (issue 18)
def test_export_default_folder_is_not_setuptools_build(tiny_checkpoint, tmp_path, monkeypatch):
    """`pip install .` leaves a build/ folder: the default export folder must be another name, and a folder
    that is not an export is named as such first, without suggesting a --force that would be refused."""
    from gr00t_trt.cli.commands import DEFAULT_EXPORT

    assert DEFAULT_EXPORT == "gr00t-export"
    assert "[default: gr00t-export]" in help_of("export")
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_EXPORT / "lib").mkdir(parents=True)  # e.g. someone else's folder of that name
    result = invoke("export", "--checkpoint", tiny_checkpoint)
    one_line_error(result, "gr00t-export exists and is not a gr00t-trt export — choose another folder")
    assert "pass --force" not in result.output
    assert (tmp_path / DEFAULT_EXPORT / "lib").is_dir()


def help_of(*command) -> str:
    """A command's --help as one line of words (the panels' borders and wrapping removed)."""
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


COMMANDS = ("inspect", "make-checkpoint", "export", "run", "verify", "demo", "bench", "build", "doctor", "serve")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_papercuts(command):
    """Flags show no value type (`--synthetic true` is not a thing), no `[default: no-flag]`, and no help text
    lost to rich markup (a bare `[plot]` used to vanish into "(needs )")."""
    text = help_of(command)
    assert "<bool>" not in text
    assert "[default: no-" not in text
    assert "(needs )" not in text and "()" not in text


def test_help_texts_say_what_is_true():
    bench_help = help_of("bench")
    assert "gr00t-trt[plot]" in bench_help
    assert "--synthetic Use a random observation (the default without --obs)." in bench_help
    export_help = help_of("export")
    from gr00t_trt.bench.devices import DEVICES

    for name in DEVICES:  # one --device vocabulary: export takes every device bench knows
        assert name in export_help and name in bench_help


def test_make_checkpoint_help_quotes_the_full_size_it_writes():
    from gr00t_trt.families.n16.presets import preset_config
    from gr00t_trt.families.n16.synthetic import tensor_plan

    total = sum(math.prod(shape) * dtype.itemsize for _, shape, dtype in tensor_plan(preset_config("full")))
    help_text = help_of("make-checkpoint")
    assert f"~{total / 1e9:.1f} GB" in help_text, help_text


#: the modules of the `export` extra; the robot install has none of them
EXPORT_ONLY = ("torch", "transformers", "safetensors", "onnx", "onnxscript", "huggingface_hub")


def test_robot_commands_run_without_the_export_tooling(tiny_export, tmp_path):
    """`inspect EXPORT`, `doctor`, `run` and `bench` on the base install: with every module of the export
    extra blocked, each works and writes what it is asked to (sizes come from the .onnx files, read
    without onnx). The real fresh-venv install runs them too (tests/serve/test_runtime_install.py)."""
    import subprocess
    import sys

    block = f"import sys\nfor m in {EXPORT_ONLY!r}:\n    sys.modules[m] = None\n"
    main = block + "from gr00t_trt.cli import app\napp(prog_name='gr00t-trt')\n"
    bench_json = tmp_path / "bench.json"
    for args in (["inspect", tiny_export, "--json", tmp_path / "sizes.json"], ["doctor", tiny_export],
                 ["run", tiny_export, "--synthetic", "--embodiment", "unitree_g1", "--backend", "ort"],
                 ["bench", tiny_export, "--embodiment", "unitree_g1", "--backend", "ort", "--iters", "2",
                  "--warmup", "0", "--json", bench_json, "--markdown", tmp_path / "bench.md"]):
        done = subprocess.run([sys.executable, "-c", main, *map(str, args)], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "COLUMNS": "100"})
        assert done.returncode == 0, f"{args[0]}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        assert "needs the Python module" not in done.stdout + done.stderr
    sizes = json.loads((tmp_path / "sizes.json").read_text())
    assert sizes["engine_weights_total"] > 0 and all(g["engine_weights"] > 0 for g in sizes["graphs"])
    report = json.loads(bench_json.read_text())
    assert report["end_to_end_ms"]["n"] == 2 and report["roofline"]["notes"]
    assert (tmp_path / "bench.md").read_text().strip()


def test_export_does_not_repeat_torchs_reduce_op_warning_and_keeps_the_filter_local():
    """Each graph's export looks at every live object (to free onnxscript's matches); isinstance() on torch's
    deprecated `torch.distributed.reduce_op` warned once per graph. Silenced there, and only there."""
    import warnings

    import torch.distributed

    from gr00t_trt.export.onnx_io import _forget_rewriter_matches

    def reduce_op_warnings(seen):
        return [w for w in seen if "reduce_op" in str(w.message)]

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        isinstance(torch.distributed.reduce_op, int)
        if not reduce_op_warnings(seen):
            pytest.skip("this torch no longer warns about torch.distributed.reduce_op")
        seen.clear()
        _forget_rewriter_matches()
        assert reduce_op_warnings(seen) == []
        isinstance(torch.distributed.reduce_op, int)  # outside the export's filter torch still warns
        assert len(reduce_op_warnings(seen)) == 1


def test_run_labels_the_first_call_and_keeps_keys_whole_at_80_columns(tiny_export, tiny_checkpoint, tmp_path):
    spec = load_processor_spec(tiny_checkpoint)
    path = tmp_path / "obs.npz"
    save_observation(path, synthetic_observation(spec, "libero_panda", seed=4))  # flat: keys "action.<key>"
    once = invoke("run", tiny_export, "--obs", path, "--embodiment", "libero_panda")
    assert once.exit_code == 0, once.output
    lines = once.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for key in ("action.eef_pose", "action.gripper"):  # never split over two lines
        assert any(key in line for line in lines), once.output
    assert "first call, warm-up included" in " ".join(once.output.split())
    steady = invoke("run", tiny_export, "--obs", path, "--embodiment", "libero_panda", "--repeat", "2")
    assert steady.exit_code == 0 and "timings of step 2" in steady.output and "first call" not in steady.output


def test_verify_table_shows_the_measured_mean_abs_and_the_runs_own_thresholds():
    """The "needs" column names a mean abs bound: the measured mean abs stands next to it; an fp8 export's
    footer quotes the fp8 thresholds, not fp16's; both point to what a user has, never a spec section."""
    from rich.console import Console

    from gr00t_trt.cli.render import render_parity
    from gr00t_trt.verification.parity import ParityReport, StageComparison, threshold_for

    fp8 = threshold_for("backbone", "fp8")
    report = ParityReport([StageComparison("seed0 backbone features", 0.9951, 0.0421, 0.9, 0.08, fp8, True, (1, 4))],
                          {"precisions": {"vision": "fp16", "backbone": "fp8", "dit": "fp8"}})
    console = Console(width=80, record=True, force_terminal=False)
    render_parity(console, report)
    text = " ".join(console.export_text().split())
    assert "mean abs" in text and "4.2e-02" in text and "mean abs ≤ 0.05" in text
    assert f"fp8: backbone {fp8.describe()}, actions {threshold_for('normalised_action', 'fp8').describe()}" in text
    assert "fp16/bf16: backbone cosine ≥ 0.999" in text  # the vision graph is fp16
    assert "§" not in text and "gr00t-trt verify --help" in text
    only_fp32 = Console(width=80, record=True, force_terminal=False)
    render_parity(only_fp32, ParityReport([], {"precisions": {"dit": "fp32"}}))
    assert "fp8" not in only_fp32.export_text() and "fp16" not in only_fp32.export_text()


def test_verify_help_quotes_every_threshold_it_enforces():
    from gr00t_trt.verification.parity import threshold_for

    text = help_of("verify")
    for precision in ("fp16", "fp8"):
        for check in ("backbone", "normalised_action"):
            bound = threshold_for(check, precision)
            assert f"≥ {bound.min_cosine:g}" in text and f"≤ {bound.max_mean_abs:g}" in text, (check, precision)


def test_no_message_or_readme_cites_documents_users_do_not_have():
    """"§7" and "architecture §5" are sections of design notes that are not shipped: README, help texts and
    every non-docstring string of the package must not cite them."""
    import ast
    from pathlib import Path

    import gr00t_trt

    root = Path(gr00t_trt.__file__).parent
    assert "§" not in (root.parent / "README.md").read_text()
    cited = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        cited += [f"{path.name}:{node.lineno}" for node in ast.walk(tree) if isinstance(node, ast.Constant)
                  and isinstance(node.value, str) and "§" in node.value and id(node) not in docstrings]
    assert cited == []
    for command in COMMANDS:
        assert "§" not in help_of(command), command
