"""The five action-head graph wrappers: exact parity with the unoptimised reference, ONNX export on the
dynamo path with dynamic B and S, ONNX Runtime parity, and the structural claims of architecture §4
(what is precomputed is really gone from the graphs)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from gr00t_trt.base.errors import EmbodimentError
from gr00t_trt.export.action_head_graphs import action_head_graph_modules, example_inputs, example_masks
from gr00t_trt.export.onnx_io import FORBIDDEN_OPS, OPSET, all_nodes, export_onnx
from gr00t_trt.families.n16.contract import ACTION_HEAD_KINDS, DIMS, GRAPH_SPECS
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.model.action_head import Gr00tActionHead, cross_block_indices

TINY = preset_config("tiny")
SLOTS = [7, 3]  # sliced export: slot 0 holds embodiment 7, slot 1 embodiment 3


def make_head(seed: int = 0) -> Gr00tActionHead:
    torch.manual_seed(seed)
    head = Gr00tActionHead(TINY).eval()
    with torch.no_grad():
        head.vlln.weight.copy_(1 + 0.2 * torch.randn_like(head.vlln.weight))
        head.vlln.bias.copy_(0.2 * torch.randn_like(head.vlln.bias))
    return head


@pytest.fixture(scope="module")
def head() -> Gr00tActionHead:
    return make_head()


def make_inputs(batch: int, seq: int, embodiments: list[int], seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, seq, TINY.backbone_embedding_dim, generator=g)
    image_mask, attention_mask = example_masks(batch, seq)
    state = torch.randn(batch, 1, TINY.max_state_dim, generator=g)
    noise = torch.randn(batch, TINY.action_horizon, TINY.max_action_dim, generator=g)
    return features, image_mask, attention_mask, state, torch.tensor(embodiments), noise


def run_graphs(
    graphs: dict, features, image_mask, attention_mask, state, embodiment_id, noise, step_weight=None
) -> torch.Tensor:
    """One control step's action head the way the runtime chains the graphs (step weights of 1 unless
    given, as the runtime writes them)."""
    if step_weight is None:
        step_weight = torch.ones(noise.shape[:2])
    cross_k, cross_v, text_bias, image_bias = graphs["dit_context"](features, image_mask, attention_mask)
    (state_features,) = graphs["state_encoder"](state, embodiment_id)
    x = noise
    for k in range(TINY.num_inference_timesteps):
        step = torch.full((noise.shape[0],), k, dtype=torch.int64)
        (action_features,) = graphs["action_encoder"](x, step, embodiment_id)
        (dit_out,) = graphs["dit"](
            state_features, action_features, cross_k, cross_v, text_bias, image_bias, step
        )
        (x,) = graphs["action_decoder"](dit_out, x, embodiment_id, step_weight)
    return x


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------------------ (a) parity
@pytest.mark.parametrize("sliced", [False, True], ids=["all-embodiments", "slots"])
@pytest.mark.parametrize("seq", [11, 24])
@pytest.mark.parametrize("batch", [1, 2])
def test_chained_graphs_reproduce_reference_denoise(head, batch, seq, sliced):
    embodiments = [7] if batch == 1 else [3, 7]
    features, image_mask, attention_mask, state, ids, noise = make_inputs(batch, seq, embodiments)
    graphs = action_head_graph_modules(head, SLOTS if sliced else None)
    graph_ids = torch.tensor([SLOTS.index(e) for e in embodiments]) if sliced else ids
    with torch.no_grad():
        reference = head.reference_denoise(features, image_mask, attention_mask, state, ids, noise)
        optimised = run_graphs(graphs, features, image_mask, attention_mask, state, graph_ids, noise)
    assert rel_l2(optimised, reference) <= 1e-5
    assert rel_l2(noise, reference) > 0.1  # the comparison is not trivially between near-equal tensors


def test_graphs_match_reference_step_by_step(head):
    """Lock-step: each step's graphs are fed the reference's own x, so errors cannot hide in compounding."""
    features, image_mask, attention_mask, state, ids, noise = make_inputs(2, 17, [3, 7])
    graphs = action_head_graph_modules(head)
    with torch.no_grad():
        vl = head.encode_context(features)
        state_ref = head.encode_state(state, ids)
        cross_k, cross_v, text_bias, image_bias = graphs["dit_context"](features, image_mask, attention_mask)
        (state_features,) = graphs["state_encoder"](state, ids)
        assert rel_l2(state_features, state_ref) <= 1e-6
        x = noise
        for k in range(TINY.num_inference_timesteps):
            ref = head.reference_step_outputs(x, k, vl, state_ref, image_mask, attention_mask, ids)
            step = torch.full((2,), k)
            (action_features,) = graphs["action_encoder"](x, step, ids)
            (dit_out,) = graphs["dit"](
                state_ref, ref.action_features, cross_k, cross_v, text_bias, image_bias, step
            )
            (next_actions,) = graphs["action_decoder"](ref.dit_out, x, ids)
            assert rel_l2(action_features, ref.action_features) <= 1e-6
            assert rel_l2(dit_out, ref.dit_out) <= 1e-5
            assert rel_l2(next_actions, ref.next_actions) <= 1e-6
            x = ref.next_actions


def test_sample_without_images_matches_reference(head):
    """A fully masked image row: the reference's SDPA gives 0, and so do the graphs (V zeroed), not NaN."""
    features, image_mask, attention_mask, state, ids, noise = make_inputs(2, 15, [3, 7])
    image_mask[1] = False
    with torch.no_grad():
        reference = head.reference_denoise(features, image_mask, attention_mask, state, ids, noise)
        optimised = run_graphs(
            action_head_graph_modules(head), features, image_mask, attention_mask, state, ids, noise
        )
    assert torch.isfinite(reference).all()
    assert rel_l2(optimised, reference) <= 1e-5


def test_padding_positions_are_invisible(head):
    features, image_mask, attention_mask, state, ids, noise = make_inputs(2, 15, [3, 7])
    moved = features + 3.0 * torch.randn_like(features) * (~attention_mask)[..., None]
    graphs = action_head_graph_modules(head)
    with torch.no_grad():
        base = run_graphs(graphs, features, image_mask, attention_mask, state, ids, noise)
        torch.testing.assert_close(
            run_graphs(graphs, moved, image_mask, attention_mask, state, ids, noise), base
        )


def test_wrapper_signatures_follow_the_graph_declarations(head):
    graphs = action_head_graph_modules(head)
    assert tuple(graphs) == ACTION_HEAD_KINDS
    for kind, module in graphs.items():
        assert list(inspect.signature(module.forward).parameters) == GRAPH_SPECS[kind].input_names
        with torch.no_grad():
            outputs = module(*example_inputs(kind, TINY, batch=2, seq_len=13))
        assert isinstance(outputs, tuple) and len(outputs) == len(GRAPH_SPECS[kind].outputs)
        for spec, value in zip(GRAPH_SPECS[kind].outputs, outputs, strict=True):
            sizes = {"B": 2, "S": 13, "L": 2, "Hc": 4, "Dh": 8, "H": 16, "C": 32, "O": 32, "Da": 16}
            assert tuple(value.shape) == tuple(sizes.get(d, d) for d in spec.dims), (kind, spec.name)


def test_casting_a_wrapper_leaves_the_head_untouched(head):
    graphs = action_head_graph_modules(head)
    for module in graphs.values():
        module.half()
    assert {p.dtype for p in head.parameters()} == {torch.float32}


def test_slots_carry_only_their_embodiment_rows(head):
    graphs = action_head_graph_modules(head, [5])
    assert graphs["state_encoder"].state_encoder.layer1.W.shape[0] == 1
    assert graphs["action_encoder"].time_table.shape == (
        TINY.num_inference_timesteps,
        TINY.input_embedding_dim,
    )
    torch.testing.assert_close(
        graphs["action_decoder"].action_decoder.layer2.W[0], head.action_decoder.layer2.W[5]
    )


@pytest.mark.parametrize("slots", [[], [1, 1], [32], [-1]])
def test_invalid_slots_are_refused(head, slots):
    with pytest.raises(
        EmbodimentError, match=r"embodiment_slots .* — expected a non-empty list of distinct ids in 0..31"
    ):
        action_head_graph_modules(head, slots)


def test_full_size_graphs_drop_the_precomputed_weights():
    """Per denoising step the optimised DiT reads 832.8 M parameters instead of 1091.7 M (architecture §8)."""
    config = preset_config("full")
    with torch.device("meta"):
        head = Gr00tActionHead(config)
        graphs = action_head_graph_modules(head, [0])

    def count(module) -> int:
        return sum(t.numel() for t in [*module.parameters(), *module.buffers()])

    C, N, layers = 1536, config.num_inference_timesteps, 32
    removed = 2_755_584 + layers * (2 * C * C + 2 * C) + (2 * C * C + 2 * C) + 16 * 2 * (2048 * C + C)
    tables = N * layers * 2 * C + N * 2 * C
    assert count(graphs["dit"]) == 1_091_722_240 - removed + tables == 832_844_800
    assert count(graphs["dit_context"]) == 16 * 2 * (2048 * C + C) + 2 * 2048 == 100_716_544
    assert count(graphs["state_encoder"]) == 54_607_872 // 32
    assert count(graphs["action_decoder"]) == 37_785_600 // 32


def decoder_inputs(batch: int = 2, seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    dit_out = torch.randn(batch, TINY.action_horizon, TINY.hidden_size, generator=g)
    actions = torch.randn(batch, TINY.action_horizon, TINY.max_action_dim, generator=g)
    return dit_out, actions, torch.tensor([1, 0][:batch])


def test_step_weight_one_is_the_plain_euler_update_bit_for_bit(head):
    """Prefix conditioning costs the plain sampler nothing: weight 1 gives the old formula's very bits, in
    the fp32 wrapper and in the half-precision one (fp32 update)."""
    from gr00t_trt.export.precision import precision_module

    dit_out, actions, ids = decoder_inputs()
    ones = torch.ones(actions.shape[:2])
    fp32 = action_head_graph_modules(head, SLOTS)["action_decoder"]
    half = precision_module("action_decoder", action_head_graph_modules(head, SLOTS)["action_decoder"], "fp16",
                            "float32")
    with torch.no_grad():
        old = actions + fp32.dt * fp32.action_decoder(dit_out, ids)  # the update before step weights
        assert torch.equal(fp32(dit_out, actions, ids, ones)[0], old)
        assert torch.equal(half(dit_out, actions, ids, ones)[0], half(dit_out, actions, ids)[0])


def test_weighted_graphs_reproduce_the_weighted_reference(head):
    features, image_mask, attention_mask, state, ids, noise = make_inputs(2, 13, [3, 7])
    weight = torch.rand(2, TINY.action_horizon, generator=torch.Generator().manual_seed(1))
    weight[:, :4] = 0  # frozen rows
    with torch.no_grad():
        reference = head.reference_denoise(features, image_mask, attention_mask, state, ids, noise, step_weight=weight)
        plain = head.reference_denoise(features, image_mask, attention_mask, state, ids, noise)
        slot_ids = torch.tensor([SLOTS.index(e) for e in ids.tolist()])
        graphs = run_graphs(action_head_graph_modules(head, SLOTS), features, image_mask, attention_mask, state,
                            slot_ids, noise, weight)
    assert torch.equal(reference[:, :4], noise[:, :4])  # weight 0: the seeded rows never move
    assert rel_l2(graphs, reference) <= 1e-5
    assert rel_l2(reference, plain) > 1e-2  # the weights matter


def test_exported_decoder_with_weight_one_matches_the_old_graph_on_onnxruntime(head, tmp_path):
    """ONNX Runtime: the exported decoder with step_weight 1 gives the same bits as a graph exported with
    the plain update (an export made before prefix conditioning)."""
    import dataclasses

    from gr00t_trt.export.action_decoder import ActionDecoderGraph

    class PlainDecoder(ActionDecoderGraph):
        def forward(self, dit_out, actions, embodiment_id):
            return super().forward(dit_out, actions, embodiment_id)

    spec = GRAPH_SPECS["action_decoder"]
    plain_spec = dataclasses.replace(spec, inputs=spec.inputs[:3])
    args = example_inputs("action_decoder", TINY, batch=2, seq_len=24, embodiment_slots=SLOTS)
    export_onnx(ActionDecoderGraph(head, SLOTS).eval(), args, spec, tmp_path / "new.onnx", dims=DIMS)
    export_onnx(PlainDecoder(head, SLOTS).eval(), args[:3], plain_spec, tmp_path / "old.onnx", dims=DIMS)
    dit_out, actions, ids = (a.numpy() for a in decoder_inputs(3 - 1))
    feeds = {"dit_out": dit_out, "actions": actions, "embodiment_id": ids}
    ones = np.ones(actions.shape[:2], np.float32)
    new = ort_session(tmp_path / "new.onnx").run(None, {**feeds, "step_weight": ones})[0]
    old = ort_session(tmp_path / "old.onnx").run(None, feeds)[0]
    np.testing.assert_array_equal(new, old)
    weight = np.linspace(0, 1, actions.shape[1], dtype=np.float32)[None].repeat(2, 0)
    weighted = ort_session(tmp_path / "new.onnx").run(None, {**feeds, "step_weight": weight})[0]
    np.testing.assert_allclose(weighted, actions + (old - actions) * weight[..., None], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ (b) ONNX
def export_graph(module: torch.nn.Module, kind: str, path, dtype: torch.dtype) -> None:
    """Export through the product's own exporter (dynamo, opset 21, checks)."""
    args = example_inputs(kind, TINY, batch=2, seq_len=24, dtype=dtype)
    export_onnx(module, args, GRAPH_SPECS[kind], Path(path), dims=DIMS)


def export_all(head, directory, dtype: torch.dtype) -> dict:
    graphs = action_head_graph_modules(head, SLOTS)
    paths = {}
    for kind, module in graphs.items():
        module.to(dtype)
        paths[kind] = directory / f"{kind}.onnx"
        export_graph(module, kind, paths[kind], dtype)
    return paths


@pytest.fixture(scope="module")
def fp32_export(tiny_export) -> dict:
    """kind → fp32 ONNX file of the session's fp32 export (tests/conftest.py): the driver traces each
    wrapper with ``export_onnx`` as ``export_all`` does, on its example step (B 2), for every embodiment,
    so these graphs are unsliced (slot == id). Sliced graphs go through ONNX in the decoder test above,
    the fp16 graphs below and the single-embodiment exports (``cli_export``)."""
    from gr00t_trt.contract.manifest import load_manifest

    manifest = load_manifest(tiny_export)
    assert all(e.slot == e.id for e in manifest.embodiments.values())
    paths = {}
    for kind in ACTION_HEAD_KINDS:
        (entry,) = manifest.graphs_of_kind(kind)
        assert entry.precision == "fp32"
        paths[kind] = tiny_export / entry.file
    return paths


@pytest.fixture(scope="module")
def exported_head(tiny_checkpoint) -> Gr00tActionHead:
    """The action head ``fp32_export`` was exported from (the tiny checkpoint, loaded fp32)."""
    from gr00t_trt.families.n16.checkpoint import load_model

    model, _, _ = load_model(tiny_checkpoint, dtype=torch.float32)
    return model.action_head


@pytest.fixture(scope="module")
def fp16_export(head, tmp_path_factory):
    return export_all(head, tmp_path_factory.mktemp("action-head-fp16"), torch.float16)


def ort_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_graphs(paths: dict, float_type) -> dict:
    """The same callables as the torch wrappers, backed by ONNX Runtime sessions."""

    def wrap(kind, session):
        spec = GRAPH_SPECS[kind]

        def run(*args):
            feeds = {}
            for t, a in zip(spec.inputs, args, strict=True):
                a = a.numpy() if isinstance(a, torch.Tensor) else a
                feeds[t.name] = a.astype(float_type) if a.dtype.kind == "f" else a
            return tuple(torch.from_numpy(o) for o in session.run(spec.output_names, feeds))

        return run

    return {kind: wrap(kind, ort_session(path)) for kind, path in paths.items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ACTION_HEAD_KINDS)
def test_exported_graph_matches_torch_on_onnxruntime(exported_head, fp32_export, kind):
    head, paths = exported_head, fp32_export
    spec = GRAPH_SPECS[kind]
    model = onnx.load(str(paths[kind]), load_external_data=False)
    assert [i.name for i in model.graph.input] == spec.input_names
    assert [o.name for o in model.graph.output] == spec.output_names
    for tensor, value in zip(spec.inputs, model.graph.input, strict=True):  # B and S stayed symbolic
        dims = value.type.tensor_type.shape.dim
        for d, declared in zip(dims, tensor.dims, strict=True):
            if declared in ("B", "S"):
                assert d.dim_param and not d.dim_value, (tensor.name, declared)
            else:
                assert d.dim_value > 0, (tensor.name, declared)
    module = action_head_graph_modules(head)[kind]
    session = ort_session(paths[kind])
    for batch, seq in [(1, 9), (3, 31)]:  # shapes other than the export example's (B 2)
        args = example_inputs(kind, TINY, batch=batch, seq_len=seq, seed=5)
        with torch.no_grad():
            expected = module(*args)
        outputs = session.run(
            spec.output_names, {t.name: a.numpy() for t, a in zip(spec.inputs, args, strict=True)}
        )
        for name, out, ref in zip(spec.output_names, outputs, expected, strict=True):
            assert out.shape == tuple(ref.shape), name
            assert rel_l2(out, ref) <= 1e-4, (name, batch, seq)


@pytest.mark.slow
def test_onnxruntime_action_head_reproduces_reference_denoise(exported_head, fp32_export):
    head, paths = exported_head, fp32_export
    features, image_mask, attention_mask, state, ids, noise = make_inputs(2, 19, [3, 7])
    with torch.no_grad():
        reference = head.reference_denoise(features, image_mask, attention_mask, state, ids, noise)
    actions = run_graphs(ort_graphs(paths, np.float32), features, image_mask, attention_mask, state, ids, noise)
    assert rel_l2(actions, reference) <= 1e-4


# ------------------------------------------------------------------------------------------ (c) structure
def _initializers(path) -> list[np.ndarray]:
    model = onnx.load(str(path))  # with external data
    return [numpy_helper.to_array(t) for t in model.graph.initializer]


def _contains(init: np.ndarray, weight: np.ndarray) -> bool:
    """Whether ``weight`` (2-D, or 1-D) is ``init`` or a block of rows/columns of it, in either orientation."""
    if init.ndim != weight.ndim or init.size < weight.size:
        return False
    candidates = [init] if init.ndim == 1 else [init, init.T]
    for c in candidates:
        if weight.ndim == 1:
            if c.shape[0] % weight.shape[0] == 0 and any(
                np.array_equal(chunk, weight) for chunk in c.reshape(-1, weight.shape[0])
            ):
                return True
            continue
        for w in (weight, weight.T):
            if c.shape[1] == w.shape[1] and c.shape[0] % w.shape[0] == 0:
                if any(np.array_equal(chunk, w) for chunk in np.split(c, c.shape[0] // w.shape[0])):
                    return True
    return False


def _found(paths: dict, kind: str, weight: torch.Tensor) -> bool:
    return any(_contains(init, weight.detach().numpy()) for init in _initializers(paths[kind]))


@pytest.mark.slow
def test_timestep_mlp_and_modulation_linears_are_not_in_the_graphs(exported_head, fp32_export):
    head, paths = exported_head, fp32_export
    dit = head.model
    C = TINY.input_embedding_dim
    forbidden = [
        *dit.timestep_encoder.parameters(),
        *dit.proj_out_1.parameters(),
        *(p for block in dit.transformer_blocks for p in block.norm1.linear.parameters()),
    ]
    for kind in ("dit", "dit_context"):
        inits = _initializers(paths[kind])
        shapes = {tuple(i.shape) for i in inits}
        assert not shapes & {(C, 256), (256, C), (2 * C, C), (C, 2 * C)}, kind  # by shape
        for weight in forbidden:  # by value
            assert not any(_contains(i, weight.detach().numpy()) for i in inits), kind
    # positive controls: the check does find weights that must be there
    assert _found(paths, "dit", dit.transformer_blocks[1].attn1.to_k.weight)
    assert _found(paths, "dit", dit.transformer_blocks[0].attn1.to_q.weight)
    assert _found(paths, "dit", dit.proj_out_2.weight)


@pytest.mark.slow
def test_cross_attention_kv_weights_live_only_in_dit_context(exported_head, fp32_export):
    head, paths = exported_head, fp32_export
    for i in cross_block_indices(TINY):
        attn = head.model.transformer_blocks[i].attn1
        for weight in (attn.to_k.weight, attn.to_v.weight):
            assert _found(paths, "dit_context", weight), i
            for kind in ("dit", "state_encoder", "action_encoder", "action_decoder"):
                assert not _found(paths, kind, weight), (i, kind)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_no_data_dependent_or_opset_23_ops(precision, request):
    paths = request.getfixturevalue(f"{precision}_export")
    for kind, path in paths.items():
        model = onnx.load(str(path), load_external_data=False)
        ops = {node.op_type for node in all_nodes(model.graph)}
        for function in model.functions:
            ops |= {node.op_type for node in function.node}
        assert not ops & FORBIDDEN_OPS, (kind, ops & FORBIDDEN_OPS)
        assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}


# ------------------------------------------------------------------------------------------ fp16
@pytest.mark.slow
def test_fp16_graphs_run_on_onnxruntime_cpu(head, fp16_export):
    """Every op of the half-precision graphs has an ORT CPU path; outputs stay close to fp32."""
    fp32 = action_head_graph_modules(head, SLOTS)
    for kind in ACTION_HEAD_KINDS:
        spec = GRAPH_SPECS[kind]
        args = example_inputs(kind, TINY, batch=2, seq_len=17, embodiment_slots=SLOTS, seed=9)
        with torch.no_grad():
            expected = fp32[kind](*args)
        feeds = {
            t.name: (a.half() if a.is_floating_point() else a).numpy()
            for t, a in zip(spec.inputs, args, strict=True)
        }
        outputs = ort_session(fp16_export[kind]).run(spec.output_names, feeds)
        for name, out, ref in zip(spec.output_names, outputs, expected, strict=True):
            assert out.dtype == np.float16, name
            if name.endswith("_bias"):  # 0 / finfo.min/2 in each dtype: compare which keys are masked
                assert np.array_equal(out == 0, ref.numpy() == 0), name
            else:
                assert cosine(out, ref) >= 0.99, name


@pytest.mark.slow
def test_fp16_action_head_on_onnxruntime_follows_the_reference(head, fp16_export):
    features, image_mask, attention_mask, state, ids, noise = make_inputs(2, 19, [3, 7])
    with torch.no_grad():
        reference = head.reference_denoise(features, image_mask, attention_mask, state, ids, noise)
    slot_ids = torch.tensor([SLOTS.index(e) for e in ids.tolist()])
    actions = run_graphs(
        ort_graphs(fp16_export, np.float16), features, image_mask, attention_mask, state, slot_ids, noise
    )
    assert actions.dtype == torch.float16
    assert cosine(actions, reference) >= 0.99
    assert float(F.l1_loss(actions.float(), reference)) <= 0.05
