"""The action head against the model spec's formulas (gr00t-n16-model.md §4), written out below in plain
torch over the raw checkpoint tensors — no code of ours: not the model, not the loader.

The other action-head tests compare the graphs with our reference model and the reference with single
formulas; here every stage (VLLN + cross K/V, state encoder, action encoder, the DiT, action decoder +
Euler) and the whole denoising loop are checked against one independent evaluation, for the reference,
the graph wrappers and the exported graphs on ONNX Runtime.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from gr00t_trt.export.action_head_graphs import action_head_graph_modules
from gr00t_trt.families.n16.checkpoint import load_model

# ------------------------------------------------------------------------------------------ the spec


class SpecActionHead:
    """gr00t-n16-model.md §4 over ``action_head.*`` tensors (checkpoint key names, prefix removed)."""

    def __init__(self, weights: dict[str, torch.Tensor], config: dict):
        self.w = weights
        dit = config["diffusion_model_cfg"]
        self.layers, self.heads, self.head_dim = dit["num_layers"], dit["num_attention_heads"], dit["attention_head_dim"]
        self.C = self.heads * self.head_dim
        self.H = config["action_horizon"]
        self.steps = config["num_inference_timesteps"]

    # §4.1 CategorySpecificLinear / MLP: y[b] = x[b] · W[e_b] + bias[e_b], W stored [E, in, out]
    def cs_linear(self, x, prefix, ids):
        return torch.stack([x[b] @ self.w[prefix + ".W"][e] + self.w[prefix + ".b"][e] for b, e in enumerate(ids.tolist())])

    def cs_mlp(self, x, prefix, ids):
        return self.cs_linear(torch.relu(self.cs_linear(x, prefix + ".layer1", ids)), prefix + ".layer2", ids)

    def linear(self, x, prefix):
        return x @ self.w[prefix + ".weight"].T + self.w[prefix + ".bias"]

    @staticmethod
    def layer_norm(x, eps):
        mean = x.mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + eps)

    # §4.8 VLLN: LayerNorm with affine, eps 1e-5, on every position
    def vlln(self, features):
        return self.layer_norm(features, 1e-5) * self.w["vlln.weight"] + self.w["vlln.bias"]

    # §4.2 action encoder: sin-first code, divisor half_dim; concat [W1(x), code]; swish; W3
    def action_features(self, x, tau, ids):
        half = self.C // 2
        omega = torch.exp(-torch.arange(half, dtype=torch.float64) * math.log(10000) / half)
        angles = tau.double()[:, None] * omega  # [B, half]
        code = torch.cat([angles.sin(), angles.cos()], -1).float()[:, None].expand(-1, self.H, -1)  # [B, H, C]
        z = self.cs_linear(torch.cat([self.cs_linear(x, "action_encoder.W1", ids), code], -1), "action_encoder.W2", ids)
        out = self.cs_linear(z * torch.sigmoid(z), "action_encoder.W3", ids)
        return out + self.w["position_embedding.weight"][: self.H]  # §4.8: rows 0..H-1, action tokens only

    # §4.3 timestep encoder: cos-first code of width 256, divisor 127; linear_2(SiLU(linear_1(e)))
    def temb(self, tau):
        nu = torch.exp(-torch.arange(128, dtype=torch.float64) * math.log(10000) / 127)
        angles = tau.double()[:, None] * nu
        code = torch.cat([angles.cos(), angles.sin()], -1).float()
        p = "model.timestep_encoder.timestep_embedder."
        return self.linear(F.silu(self.linear(code, p + "linear_1")), p + "linear_2")

    def attention(self, h, context, keep, prefix):
        """32 heads × 48 (here ``heads × head_dim``), biased projections, scale head_dim^-0.5, True = attend."""
        B = h.shape[0]

        def split(t):  # [B, T, C] -> [B, heads, T, head_dim]
            return t.reshape(B, t.shape[1], self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.linear(h, prefix + "to_q")), split(self.linear(context, prefix + "to_k")), split(
            self.linear(context, prefix + "to_v"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [B, heads, T, S]
        if keep is not None:
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, -1, self.C)
        return self.linear(out, prefix + "to_out.0")

    # §4.4–4.7 the DiT: AdaLN (scale first), alternating blocks, FF with tanh-GELU, output layer (shift first)
    def dit(self, sa, vl, tau, image_mask, attention_mask):
        temb = self.temb(tau)
        x = sa
        for i in range(self.layers):
            p = f"model.transformer_blocks.{i}."
            scale, shift = self.linear(F.silu(temb), p + "norm1.linear").chunk(2, -1)
            h = self.layer_norm(x, 1e-5) * (1 + scale[:, None]) + shift[:, None]
            if i % 2 == 1:
                context, keep = h, None
            elif i % 4 == 0:
                context, keep = vl, ~image_mask & attention_mask
            else:
                context, keep = vl, image_mask & attention_mask
            x = x + self.attention(h, context, keep, p + "attn1.")
            ff = F.gelu(self.linear(self.layer_norm(x, 1e-5), p + "ff.net.0.proj"), approximate="tanh")
            x = x + self.linear(ff, p + "ff.net.2")
        shift, scale = self.linear(F.silu(temb), "model.proj_out_1").chunk(2, -1)
        return self.linear(self.layer_norm(x, 1e-6) * (1 + scale[:, None]) + shift[:, None], "model.proj_out_2")

    def tau(self, k: int, batch: int):
        return torch.full((batch,), int(k / self.steps * 1000), dtype=torch.int64)  # §4.9: int(t_k · 1000)

    # §4.9 flow-matching Euler sampler, returning every intermediate the graphs expose
    def denoise(self, features, image_mask, attention_mask, state, ids, noise):
        vl = self.vlln(features)
        state_features = self.cs_mlp(state, "state_encoder", ids)
        x, trace = noise, []
        for k in range(self.steps):
            tau = self.tau(k, x.shape[0])
            af = self.action_features(x, tau, ids)
            dit_out = self.dit(torch.cat([state_features, af], 1), vl, tau, image_mask, attention_mask)[:, 1:]
            velocity = self.cs_mlp(dit_out, "action_decoder", ids)  # decoder on the last H positions only
            trace.append({"actions": x, "action_features": af, "dit_out": dit_out})
            x = x + velocity / self.steps
        return x, vl, state_features, trace


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def spec(tiny_checkpoint) -> SpecActionHead:
    import json

    weights = {}
    for shard in sorted(tiny_checkpoint.glob("*.safetensors")):
        weights |= {k.removeprefix("action_head."): v.float() for k, v in load_file(shard).items()
                    if k.startswith("action_head.")}
    return SpecActionHead(weights, json.loads((tiny_checkpoint / "config.json").read_text()))


@pytest.fixture(scope="module")
def head(tiny_checkpoint):
    model, _, _ = load_model(tiny_checkpoint, dtype=torch.float32)
    return model.action_head


@pytest.fixture(scope="module")
def inputs(spec):
    """Two samples, each with text and image positions; the second left-padded by 3."""
    batch, seq = 2, 20
    g = torch.Generator().manual_seed(11)
    E = spec.w["vlln.weight"].shape[0]
    positions = torch.arange(seq)
    image_mask = ((positions >= 6) & (positions < 14)).expand(batch, seq).clone()
    attention_mask = positions[None] >= torch.tensor([0, 3])[:, None]
    state = torch.randn(batch, 1, spec.w["state_encoder.layer1.W"].shape[1], generator=g)
    ids = torch.tensor([8, 2])  # unitree_g1, libero_panda
    noise = torch.randn(batch, spec.H, spec.w["action_encoder.W1.W"].shape[1], generator=g)
    return 3 * torch.randn(batch, seq, E, generator=g), image_mask, attention_mask, state, ids, noise


def rel_l2(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a)).double(), torch.as_tensor(np.asarray(b)).double()
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def expected(spec, inputs):
    return spec.denoise(*inputs)


# ------------------------------------------------------------------------------------------ tests
def test_the_spec_evaluation_is_not_degenerate(expected, inputs):
    actions, _, _, trace = expected
    noise = inputs[-1]
    assert torch.isfinite(actions).all() and rel_l2(actions, noise) > 0.1
    assert (trace[1]["dit_out"] - trace[0]["dit_out"]).abs().max() > 1e-3  # the timestep matters
    assert (actions[0] - actions[1]).abs().max() > 0.1


def test_reference_model_follows_the_spec(head, inputs, expected):
    with torch.no_grad():
        got = head.reference_denoise(*inputs)
    assert rel_l2(got, expected[0]) <= 1e-5


def test_graph_wrappers_follow_the_spec_stage_by_stage(head, spec, inputs, expected):
    features, image_mask, attention_mask, state, ids, _ = inputs
    actions, vl, state_features, trace = expected
    graphs = action_head_graph_modules(head)
    with torch.no_grad():
        cross_k, cross_v, text_bias, image_bias = graphs["dit_context"](features, image_mask, attention_mask)
        # dit_context: cross block c's K (and V where it attends) are its to_k/to_v of the VLLN'd features
        for c, block in enumerate(range(0, spec.layers, 2)):
            keep = (~image_mask if block % 4 == 0 else image_mask) & attention_mask  # [B, S]
            k = spec.linear(vl, f"model.transformer_blocks.{block}.attn1.to_k")  # [B, S, C]
            v = spec.linear(vl, f"model.transformer_blocks.{block}.attn1.to_v")
            k = k.reshape(*k.shape[:2], spec.heads, spec.head_dim).transpose(1, 2)  # [B, heads, S, Dh]
            v = v.reshape(*v.shape[:2], spec.heads, spec.head_dim).transpose(1, 2)
            assert rel_l2(cross_k[c], k) <= 1e-5, c
            picked = keep[:, None, :, None].expand_as(v)
            assert rel_l2(cross_v[c][picked], v[picked]) <= 1e-5, c
        for bias, keep in ((text_bias, ~image_mask & attention_mask), (image_bias, image_mask & attention_mask)):
            assert bias.shape == (2, 1, 1, 20)
            assert (bias[:, 0, 0][keep] == 0).all() and (bias[:, 0, 0][~keep] < -1e30).all()

        (got_state,) = graphs["state_encoder"](state, ids)
        assert rel_l2(got_state, state_features) <= 1e-6
        for k, want in enumerate(trace):
            step = torch.full((2,), k, dtype=torch.int64)
            (af,) = graphs["action_encoder"](want["actions"], step, ids)
            assert rel_l2(af, want["action_features"]) <= 1e-5, k
            (dit_out,) = graphs["dit"](state_features, want["action_features"], cross_k, cross_v, text_bias,
                                       image_bias, step)
            assert rel_l2(dit_out, want["dit_out"]) <= 1e-5, k
            (nxt,) = graphs["action_decoder"](want["dit_out"], want["actions"], ids)
            following = trace[k + 1]["actions"] if k + 1 < len(trace) else actions
            assert rel_l2(nxt, following) <= 1e-5, k


def test_exported_graphs_on_onnxruntime_follow_the_spec(tiny_export, inputs, expected):
    """The fp32 export of the same checkpoint, chained as the runtime chains it, against the spec."""
    import onnxruntime as ort

    from gr00t_trt.contract.manifest import load_manifest

    manifest = load_manifest(tiny_export)
    assert {tag: e.slot for tag, e in manifest.embodiments.items()}["unitree_g1"] == 8  # slot == id: unsliced
    sessions = {name: ort.InferenceSession(str(tiny_export / f"{name}.onnx"), providers=["CPUExecutionProvider"])
                for name in ("dit_context", "state_encoder", "action_encoder", "dit", "action_decoder")}

    def run(name, **feeds):
        return sessions[name].run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items()})

    features, image_mask, attention_mask, state, ids, noise = (t.numpy() for t in inputs)
    cross_k, cross_v, text_bias, image_bias = run("dit_context", backbone_features=features, image_mask=image_mask,
                                                  attention_mask=attention_mask)
    (state_features,) = run("state_encoder", state=state, embodiment_id=ids)
    x = noise
    for k in range(manifest.steps):
        step = np.full((2,), k, np.int64)
        (af,) = run("action_encoder", actions=x, step=step, embodiment_id=ids)
        (dit_out,) = run("dit", state_features=state_features, action_features=af, cross_k=cross_k, cross_v=cross_v,
                         text_bias=text_bias, image_bias=image_bias, step=step)
        (x,) = run("action_decoder", dit_out=dit_out, actions=x, embodiment_id=ids,
                   step_weight=np.ones(x.shape[:2], np.float32))
    assert rel_l2(x, expected[0]) <= 1e-4
