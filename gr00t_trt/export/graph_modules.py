"""What every family's graph wrappers share: the action head's static dims and weights, and the streamed
build of one dataflow segment's wrappers (each family's ``export.graph_modules`` lists its own).

The export builds them from a ``LazyModel`` one dataflow segment at a time (``segment_modules``): only
the weights the segment's wrappers read (``graph_weights``) are read from the checkpoint, and the
wrappers keep the only reference to them, so they are freed with the wrappers.
"""

from __future__ import annotations

import torch

from ..base.errors import ExportError

#: model state-dict prefixes the wrappers of the action-head graphs read, the same in every family (a
#: family's ``GRAPH_WEIGHTS`` adds its vision, backbone and dit_context entries; head.timestep() places
#: its steps on the device of the position embedding, so dit reads that table too)
ACTION_HEAD_WEIGHTS: dict[str, tuple[str, ...]] = {
    "state_encoder": ("action_head.state_encoder.",),
    "action_encoder": ("action_head.action_encoder.", "action_head.position_embedding."),
    "dit": ("action_head.model.", "action_head.position_embedding."),
    "action_decoder": ("action_head.action_decoder.",),
}


def action_head_dims(config) -> dict[str, int]:
    """The static dims of the backbone width and the action head (every family's config has the
    action-head field names, ``model.config.ActionHeadConfig``)."""
    return {
        "E": config.backbone_embedding_dim,
        "H": config.action_horizon,
        "Ds": config.max_state_dim,
        "Da": config.max_action_dim,
        "C": config.input_embedding_dim,
        "L": config.dit.num_layers // 2,
        "Hc": config.dit.num_attention_heads,
        "Dh": config.dit.attention_head_dim,
        "O": config.hidden_size,
    }


def graph_weights(kind: str, config, keys, table: dict[str, tuple[str, ...]]) -> list[str]:
    """Those of the model's checkpoint ``keys`` that the wrapper of graph ``kind`` reads (``table``: the
    family's prefixes per kind; every family's action head has the same layout)."""
    from ..model.action_head import cross_block_indices

    cross_kv = tuple(f"action_head.model.transformer_blocks.{i}.attn1.to_{p}."
                     for i in cross_block_indices(config) for p in "kv")
    prefixes = table[kind] + (cross_kv if kind == "dit_context" else ())
    chosen = [k for k in keys if k.startswith(prefixes)]
    return [k for k in chosen if not k.startswith(cross_kv)] if kind == "dit" else chosen


def segment_modules(lazy, config, kinds, slots, *, build,
                    table: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, torch.nn.Module, dict[str, int]]]:
    """The wrappers of ``kinds`` (one ``dataflow.segments`` piece) with just their weights read from the
    checkpoint of ``lazy`` (a ``model.checkpoint.LazyModel``); the model is back on meta on return.
    ``build``/``table``: the family's ``graph_modules`` and ``GRAPH_WEIGHTS``."""
    keys = list(dict.fromkeys(k for kind in kinds for k in graph_weights(kind, config, lazy.keys, table)))
    with lazy.loaded(keys) as model:
        modules = build(model, config, slots, kinds)
    for name, (_, module, _) in modules.items():
        on_meta = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
        if on_meta:  # GRAPH_WEIGHTS misses a tensor this wrapper reads
            raise ExportError(f"graph {name}: weight {on_meta[0]!r} was not read from the checkpoint "
                              "— expected GRAPH_WEIGHTS to name every tensor its wrapper reads")
    return modules


def release_memory() -> None:
    """Collect the reference cycles dropped wrappers leave (``CastGraph`` holds its own bound method) and
    hand freed heap pages back to the OS (glibc keeps them otherwise), so that the next graph's weights,
    ModelOpt or an ONNX Runtime session reuse the memory of the last graph's weights."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
