"""A tiny fake export directory built with onnx.helper, and a numpy twin of its math (runtime tests).

Each graph honours its GraphSpec (names, dtypes, dims) with simple deterministic math chosen so that the
pipeline's chaining is observable: image rows reach the backbone through image_index (wrong order →
wrong answer), the backbone is causal (CumSum) so right padding must be exact, the DiT attends over S
with the additive masks, every denoising step adds a step-specific term, and each embodiment slot has
its own weights. ``precisions`` lets a test mix fp16 and fp32 graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

from gr00t_trt.contract.graphs import TensorSpec
from gr00t_trt.contract.manifest import EmbodimentEntry, GraphEntry, Manifest, sha256_file, write_manifest
from gr00t_trt.families.n16.contract import GRAPH_SPECS
from gr00t_trt.processing.position_grid import TABLE_FILE, resample_grid, table_bytes, vision_declaration

# R pixels per token side, U = 1 patch per token (position grid = token grid), Dv vision width
DIMS = {"E": 8, "H": 4, "Ds": 5, "Da": 3, "C": 6, "L": 2, "Hc": 2, "Dh": 3, "O": 7, "R": 2, "U": 1, "Dv": 4}
TABLE_SIDE = 3  # the learned position table is TABLE_SIDE x TABLE_SIDE, resampled per image size
STEPS = 3
IMG = 30  # image_token_index
NEG = -30000.0  # additive mask value (fits fp16)


@dataclass(frozen=True)
class FakeSpec:
    """Sizes of a fake export; the defaults are tiny, ``policy_spec`` matches the tiny preset's processor."""

    dims: dict = field(default_factory=lambda: dict(DIMS))
    dynamic: dict = field(default_factory=lambda: {"B": [1, 1, 4], "S": [1, 32, 96], "T": [1, 16, 64], "n": [1, 2, 8],
                                                   "r": [2, 2, 4], "c": [2, 3, 3]})
    steps: int = STEPS
    vocab: int = 40
    img: int = IMG  # image_token_index
    pad: int = 39
    sizes: dict = field(default_factory=lambda: {(4, 6): 6, (8, 4): 8})  # named size -> tokens (h/R)·(w/R)
    embodiments: dict = field(default_factory=lambda: {"robot_a": (3, 0), "robot_b": (7, 1)})  # tag -> (id, slot)
    step_weight: bool = True  # False: an export made before prefix conditioning (no action_decoder step_weight)

    def inputs(self, kind: str):
        """The declared inputs of a graph kind this fake export has."""
        return tuple(t for t in GRAPH_SPECS[kind].inputs if self.step_weight or t.name != "step_weight")

    @property
    def slots(self) -> dict[int, int]:
        return dict(self.embodiments.values())


DEFAULT = FakeSpec()

_ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
         np.dtype(np.int64): TensorProto.INT64, np.dtype(np.bool_): TensorProto.BOOL,
         np.dtype(np.uint8): TensorProto.UINT8}
_FLOAT = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16)}


class _Builder:
    """Collects nodes and initializers of one graph; floats in the graph's precision."""

    def __init__(self, name: str, precision: str) -> None:
        self.name, self.ft = name, _FLOAT[precision]
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def const(self, array: np.ndarray) -> str:
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(self.ft)
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        self._n += 1
        out = out or f"t{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def model(self, kind: str, dims: dict[str, int], inputs=None) -> onnx.ModelProto:
        spec = GRAPH_SPECS[kind]
        inputs = spec.inputs if inputs is None else inputs

        def info(t):
            dtype = self.ft if t.dtype == "float" else np.dtype(t.dtype)
            shape = [d if isinstance(d, int) else dims.get(d, d) for d in t.dims]
            return helper.make_tensor_value_info(t.name, _ONNX[dtype], shape)

        graph = helper.make_graph(self.nodes, self.name, [info(t) for t in inputs],
                                  [info(t) for t in spec.outputs], initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
        onnx.checker.check_model(model)
        return model


@dataclass
class Weights:
    rng: np.random.Generator
    spec: FakeSpec = DEFAULT

    def __post_init__(self) -> None:
        r, d, spec = self.rng, self.spec.dims, self.spec
        self.patch = r.standard_normal((d["R"] * d["R"] * 3, d["Dv"])).astype(np.float32) * 0.1
        self.table = r.standard_normal((TABLE_SIDE, TABLE_SIDE, d["Dv"])).astype(np.float32)
        self.project = r.standard_normal((d["Dv"], d["E"])).astype(np.float32) * 0.5
        self.embed = r.standard_normal((spec.vocab, d["E"])).astype(np.float32) * 0.5
        self.wb = r.standard_normal((d["E"], d["E"])).astype(np.float32) * 0.3
        kv = d["L"] * d["Hc"] * d["Dh"]
        self.wk = r.standard_normal((d["E"], kv)).astype(np.float32) * 0.5
        self.wv = r.standard_normal((d["E"], kv)).astype(np.float32) * 0.5
        n_emb = len(spec.embodiments)
        self.ws = r.standard_normal((n_emb, d["Ds"], d["C"])).astype(np.float32) * 0.5
        self.wa = r.standard_normal((n_emb, d["Da"], d["C"])).astype(np.float32) * 0.5
        self.ta = r.standard_normal((spec.steps, d["C"])).astype(np.float32)
        self.pos = r.standard_normal((d["H"], d["C"])).astype(np.float32) * 0.1
        self.wq = r.standard_normal((d["C"], d["Hc"] * d["Dh"])).astype(np.float32) * 0.5
        self.wo = r.standard_normal((d["Hc"] * d["Dh"], d["O"])).astype(np.float32) * 0.5
        self.to = r.standard_normal((spec.steps, d["O"])).astype(np.float32)
        self.wd = r.standard_normal((n_emb, d["O"], d["Da"])).astype(np.float32) * 0.5


# ----------------------------------------------------------------------------- graphs
def _vision(w: Weights, p) -> onnx.ModelProto:
    """One graph for every image size: patches (SpaceToDepth order) @ patch weights + the position grid
    input of the image's size, @ projection."""
    g = _Builder("vision", p)
    d = w.spec.dims
    x = g.op("Mul", g.op("Cast", "images", to=_ONNX[g.ft]), g.const(np.float32(1 / 255)))
    x = g.op("SpaceToDepth", g.op("Transpose", x, perm=[0, 3, 1, 2]), blocksize=d["R"])  # [n, R·R·3, r, c]
    x = g.op("Transpose", g.op("Reshape", x, g.const(np.array([0, 0, -1], np.int64))), perm=[0, 2, 1])  # [n, t, R·R·3]
    x = g.op("MatMul", x, g.const(w.patch))
    x = g.op("Add", x, g.op("Reshape", "position_grid", g.const(np.array([-1, d["Dv"]], np.int64))))  # [n, t, Dv]
    g.op("MatMul", x, g.const(w.project), out="image_embeds")  # [n, t, E]
    return g.model("vision", w.spec.dims)


def _backbone(w: Weights, p) -> onnx.ModelProto:
    g = _Builder("backbone", p)
    tok = g.op("Gather", g.const(w.embed), "input_ids", axis=0)  # [B, S, E]
    img = g.op("Gather", "image_embeds", "image_index", axis=0)  # [B, S, E]
    is_img = g.op("Unsqueeze", g.op("Equal", "input_ids", g.const(np.array(w.spec.img, np.int64))), g.const(np.array([-1], np.int64)))
    x = g.op("Where", is_img, img, tok)
    keep = g.op("Unsqueeze", g.op("Cast", "attention_mask", to=_ONNX[g.ft]), g.const(np.array([-1], np.int64)))
    x = g.op("CumSum", g.op("Mul", x, keep), g.const(np.array(1, np.int64)))  # causal mixing
    g.op("Tanh", g.op("MatMul", x, g.const(w.wb)), out="backbone_features")
    return g.model("backbone", w.spec.dims)


def _dit_context(w: Weights, p) -> onnx.ModelProto:
    g = _Builder("dit_context", p)
    d = w.spec.dims
    for name, weight in (("cross_k", w.wk), ("cross_v", w.wv)):
        x = g.op("MatMul", "backbone_features", g.const(weight))
        x = g.op("Reshape", x, g.const(np.array([0, 0, d["L"], d["Hc"], d["Dh"]], np.int64)))
        g.op("Transpose", x, perm=[2, 0, 3, 1, 4], out=name)  # [L, B, Hc, S, Dh]
    text = g.op("And", "attention_mask", g.op("Not", "image_mask"))
    image = g.op("And", "attention_mask", "image_mask")
    axes = g.const(np.array([1, 2], np.int64))
    zero, neg = g.const(np.float32(0)), g.const(np.float32(NEG))
    g.op("Unsqueeze", g.op("Where", text, zero, neg), axes, out="text_bias")
    g.op("Unsqueeze", g.op("Where", image, zero, neg), axes, out="image_bias")
    return g.model("dit_context", w.spec.dims)


def _state_encoder(w: Weights, p) -> onnx.ModelProto:
    g = _Builder("state_encoder", p)
    weight = g.op("Gather", g.const(w.ws), "embodiment_id", axis=0)  # [B, Ds, C]
    g.op("Tanh", g.op("MatMul", "state", weight), out="state_features")
    return g.model("state_encoder", w.spec.dims)


def _action_encoder(w: Weights, p) -> onnx.ModelProto:
    g = _Builder("action_encoder", p)
    weight = g.op("Gather", g.const(w.wa), "embodiment_id", axis=0)  # [B, Da, C]
    x = g.op("MatMul", "actions", weight)  # [B, H, C]
    t = g.op("Unsqueeze", g.op("Gather", g.const(w.ta), "step", axis=0), g.const(np.array([1], np.int64)))
    g.op("Add", g.op("Tanh", g.op("Add", x, t)), g.const(w.pos), out="action_features")
    return g.model("action_encoder", w.spec.dims)


def _dit(w: Weights, p) -> onnx.ModelProto:
    g = _Builder("dit", p)
    d = w.spec.dims
    q = g.op("MatMul", g.op("Add", "action_features", "state_features"), g.const(w.wq))
    q = g.op("Transpose", g.op("Reshape", q, g.const(np.array([0, 0, d["Hc"], d["Dh"]], np.int64))), perm=[0, 2, 1, 3])
    outs = []
    for layer, bias in enumerate(("text_bias", "image_bias")):
        index = g.const(np.array(layer, np.int64))
        k = g.op("Gather", "cross_k", index, axis=0)  # [B, Hc, S, Dh]
        v = g.op("Gather", "cross_v", index, axis=0)
        s = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))  # [B, Hc, H, S]
        s = g.op("Add", g.op("Mul", s, g.const(np.float32(d["Dh"] ** -0.5))), bias)
        outs.append(g.op("MatMul", g.op("Softmax", s, axis=-1), v))  # [B, Hc, H, Dh]
    o = g.op("Transpose", g.op("Add", *outs), perm=[0, 2, 1, 3])
    o = g.op("Reshape", o, g.const(np.array([0, 0, d["Hc"] * d["Dh"]], np.int64)))
    t = g.op("Unsqueeze", g.op("Gather", g.const(w.to), "step", axis=0), g.const(np.array([1], np.int64)))
    g.op("Add", g.op("MatMul", o, g.const(w.wo)), t, out="dit_out")
    return g.model("dit", w.spec.dims)


def _action_decoder(w: Weights, p) -> onnx.ModelProto:
    g = _Builder("action_decoder", p)
    weight = g.op("Gather", g.const(w.wd), "embodiment_id", axis=0)  # [B, O, Da]
    velocity = g.op("Tanh", g.op("MatMul", "dit_out", weight))
    step = g.op("Mul", velocity, g.const(np.float32(1 / w.spec.steps)))
    if w.spec.step_weight:  # per-row weight of the update (prefix conditioning)
        step = g.op("Mul", step, g.op("Unsqueeze", "step_weight", g.const(np.array([-1], np.int64))))
    g.op("Add", "actions", step, out="next_actions")
    return g.model("action_decoder", w.spec.dims, w.spec.inputs("action_decoder"))


_BUILDERS = {"backbone": _backbone, "dit_context": _dit_context, "state_encoder": _state_encoder,
             "action_encoder": _action_encoder, "dit": _dit, "action_decoder": _action_decoder}


# ----------------------------------------------------------------------------- numpy twin
def _round(x: np.ndarray, precision: str) -> np.ndarray:
    """What crossing a graph boundary in ``precision`` does to a float tensor."""
    return x.astype(_FLOAT[precision]).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class FakeExport:
    folder: Path
    weights: Weights
    precisions: dict[str, str]

    @property
    def spec(self) -> FakeSpec:
        return self.weights.spec

    def p(self, kind: str) -> str:
        return self.precisions.get(kind, "fp32")

    def vision(self, image: np.ndarray) -> np.ndarray:
        """[t, E] rows of one image."""
        d, w = self.spec.dims, self.weights
        side = d["R"]
        rows, cols = image.shape[0] // side, image.shape[1] // side
        x = image.astype(np.float32).transpose(2, 0, 1) / 255  # [3, h, w]
        x = x.reshape(3, rows, side, cols, side).transpose(2, 4, 0, 1, 3).reshape(side * side * 3, rows * cols)
        grid = _round(resample_grid(w.table, rows * d["U"], cols * d["U"]), self.p("vision"))
        return _round((x.T @ w.patch + grid.reshape(-1, d["Dv"])) @ w.project, self.p("vision"))

    def reference(self, inputs, noise: np.ndarray, steps=None, step_weight=None) -> dict:
        """The expected results, unpadded, straight from the math (image rows in LLM order);
        ``step_weight`` [B, H] weighs each row's update (None: 1)."""
        w, d, spec = self.weights, self.spec.dims, self.spec
        r = self.p
        image_embeds = (np.concatenate([self.vision(im) for im in inputs.images]) if inputs.images
                        else np.zeros((0, d["E"]), np.float32))
        rows = _round(image_embeds, r("backbone"))
        ids, am, im = inputs.input_ids, inputs.attention_mask, inputs.image_mask
        x = w.embed[ids].copy()
        x[im] = rows  # row-major order over [B, S] == LLM order
        x = np.cumsum(x * am[..., None], axis=1)
        features = _round(np.tanh(x @ w.wb), r("backbone"))
        f = _round(features, r("dit_context"))
        B, S = ids.shape
        k = (f @ w.wk).reshape(B, S, d["L"], d["Hc"], d["Dh"]).transpose(2, 0, 3, 1, 4)
        v = (f @ w.wv).reshape(B, S, d["L"], d["Hc"], d["Dh"]).transpose(2, 0, 3, 1, 4)
        k, v = _round(k, r("dit_context")), _round(v, r("dit_context"))
        text_bias = np.where(am & ~im, 0.0, NEG)[:, None, None, :].astype(np.float32)
        image_bias = np.where(am & im, 0.0, NEG)[:, None, None, :].astype(np.float32)
        slots = np.array([spec.slots[int(i)] for i in inputs.embodiment_id])
        state = _round(inputs.state.astype(np.float32), r("state_encoder"))
        sf = _round(np.tanh(state @ w.ws[slots]), r("state_encoder"))
        actions, per_step = noise.astype(np.float32), []
        for step in (range(spec.steps) if steps is None else steps):
            a = _round(actions, r("action_encoder"))
            af = np.tanh(a @ w.wa[slots] + w.ta[step][None, None]) + w.pos
            af = _round(af, r("action_encoder"))
            q = ((_round(af, r("dit")) + _round(sf, r("dit"))) @ w.wq).reshape(B, d["H"], d["Hc"], d["Dh"]).transpose(0, 2, 1, 3)
            out = 0
            for layer, bias in enumerate((text_bias, image_bias)):
                scores = q @ _round(k[layer], r("dit")).transpose(0, 1, 3, 2) * d["Dh"] ** -0.5 + bias
                out = out + _softmax(scores) @ _round(v[layer], r("dit"))
            o = out.transpose(0, 2, 1, 3).reshape(B, d["H"], -1)
            dit_out = _round(o @ w.wo + w.to[step][None, None], r("dit"))
            velocity = np.tanh(_round(dit_out, r("action_decoder")) @ w.wd[slots])
            update = velocity / spec.steps
            if step_weight is not None:
                update = update * _round(step_weight.astype(np.float32), r("action_decoder"))[..., None]
            actions = _round(_round(actions, r("action_decoder")) + update, r("action_decoder"))
            per_step.append(actions)
        return {"image_embeds": image_embeds,
                "backbone_features": features, "state_features": sf, "actions": per_step, "action_pred": actions}


def _save_with_external_weights(model: onnx.ModelProto, folder: Path, name: str) -> None:
    """``<name>.onnx`` + ``<name>.onnx.data`` as the exporter writes them; int64 shape constants stay inline
    (ORT's shape inference cannot read external ones)."""
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=f"{name}.onnx.data", size_threshold=0)
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.INT64:
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT
    onnx.save_model(model, str(folder / f"{name}.onnx"))


def _cast_io(model: onnx.ModelProto, kind: str, io: np.dtype) -> onnx.ModelProto:
    """The graph with float inputs and outputs in ``io``, Cast nodes at its boundaries converting to and
    from its compute precision — casts live inside the graphs, as the exporter writes them."""
    spec, graph = GRAPH_SPECS[kind], model.graph
    floats_in = {t.name for t in spec.inputs if t.dtype == "float"}
    floats_out = {t.name for t in spec.outputs if t.dtype == "float"}
    compute = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)}
    for node in graph.node:
        node.input[:] = [f"{n}__c" if n in floats_in else n for n in node.input]
        node.output[:] = [f"{n}__c" if n in floats_out else n for n in node.output]
    heads = [helper.make_node("Cast", [n], [f"{n}__c"], to=compute[n]) for n in sorted(floats_in)]
    tails = [helper.make_node("Cast", [f"{n}__c"], [n], to=_ONNX[np.dtype(io)]) for n in sorted(floats_out)]
    nodes = heads + list(graph.node) + tails
    del graph.node[:]
    graph.node.extend(nodes)
    for value in (*graph.input, *graph.output):
        if value.name in floats_in | floats_out:
            value.type.tensor_type.elem_type = _ONNX[np.dtype(io)]
    onnx.checker.check_model(model)
    return model


def write_fake_export(folder: Path, precisions: dict[str, str] | None = None, seed: int = 0,
                      fake: FakeSpec = DEFAULT, pixels_per_token: int = 1, cast_io: bool = True) -> FakeExport:
    """A fake export; graphs of different ``precisions`` exchange float32 (they cast inside), unless
    ``cast_io=False`` (each graph's I/O in its own precision: an export whose graphs disagree)."""
    precisions = precisions or {}
    mixed = len(set(precisions.values()) | {"fp32"}) > 1
    io = np.dtype(np.float32) if mixed and cast_io else None
    folder.mkdir(parents=True, exist_ok=True)
    weights = Weights(np.random.default_rng(seed), fake)
    (folder / TABLE_FILE).write_bytes(table_bytes(weights.table))
    models: dict[str, tuple[str, onnx.ModelProto, dict]] = {"vision": ("vision", _vision(weights, precisions.get("vision", "fp32")), {})}
    for kind, build in _BUILDERS.items():
        models[kind] = (kind, build(weights, precisions.get(kind, "fp32")), {})
    graphs, files = {}, {}
    for name, (kind, model, gdims) in models.items():
        precision = precisions.get(kind, "fp32")
        if io is not None and _FLOAT[precision] != io:
            model = _cast_io(model, kind, io)
        _save_with_external_weights(model, folder, name)
        spec = GRAPH_SPECS[kind]

        float_name = (io or _FLOAT[precision]).name
        inputs, outputs = ([TensorSpec(t.name, float_name if t.dtype == "float" else t.dtype, t.dims) for t in ts]
                           for ts in (fake.inputs(kind), spec.outputs))
        graphs[name] = GraphEntry(name, kind, f"{name}.onnx", precision, tuple(inputs), tuple(outputs), gdims)
        for file in (f"{name}.onnx", f"{name}.onnx.data"):
            files[file] = sha256_file(folder / file)
    for path in sorted(folder.iterdir()):  # processor and tokenizer files written by the caller
        if path.is_file() and path.name != "manifest.json":
            files.setdefault(path.name, sha256_file(path))
    manifest = Manifest(
        source={"checkpoint": "fake"}, model={"max_num_embodiments": 32}, dims=dict(fake.dims),
        dynamic_dims={k: list(v) for k, v in fake.dynamic.items()},
        steps=fake.steps, image_sizes=tuple(fake.sizes), graphs=graphs, files=files,
        embodiments={tag: EmbodimentEntry(tag, i, s) for tag, (i, s) in fake.embodiments.items()},
        tokens={"image_token_index": fake.img, "image_start_token_id": fake.img + 1,
                "image_end_token_id": fake.img + 2, "pad_token_id": fake.pad},
        pixels_per_token=pixels_per_token, exporter={"fake": "1"}, vision=vision_declaration(),
    )
    write_manifest(folder, manifest)
    return FakeExport(folder, weights, precisions)


# ----------------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """ModelInputs-like arrays."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    image_mask: np.ndarray
    images: list
    state: np.ndarray
    embodiment_id: np.ndarray


def make_inputs(layout: list[list[tuple[int, int]]], *, text: int = 3, ids: tuple[int, ...] | None = None,
                seed: int = 0, fake: FakeSpec = DEFAULT) -> Inputs:
    """Left-padded prompts: per sample, some text, then each image's tokens followed by text."""
    rng = np.random.default_rng(seed)
    tags = list(fake.embodiments)
    prompts, images = [], []
    for sizes in layout:
        tokens = list(rng.integers(1, fake.img, text + len(prompts)))  # samples differ in length
        for size in sizes:
            rows, cols = size[0] // fake.dims["R"], size[1] // fake.dims["R"]
            tokens += [fake.img] * (rows * cols) + list(rng.integers(1, fake.img, 2))
            images.append(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        prompts.append(tokens)
    batch, seq = len(prompts), max(map(len, prompts))
    input_ids = np.full((batch, seq), fake.pad, np.int64)
    attention = np.zeros((batch, seq), bool)
    for b, tokens in enumerate(prompts):
        input_ids[b, seq - len(tokens):] = tokens
        attention[b, seq - len(tokens):] = True
    ids = ids or tuple(fake.embodiments[tags[b % len(tags)]][0] for b in range(batch))
    return Inputs(input_ids, attention, input_ids == fake.img, images,
                  rng.standard_normal((batch, 1, fake.dims["Ds"])).astype(np.float32), np.array(ids, np.int64))


def make_noise(batch: int, seed: int = 1, fake: FakeSpec = DEFAULT) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, fake.dims["H"], fake.dims["Da"]), dtype=np.float32)


MIXED = {"vision": "fp16", "dit_context": "fp16", "action_encoder": "fp16"}
