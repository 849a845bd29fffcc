"""Optimisation profiles from the manifest's static and dynamic dims."""

from __future__ import annotations

import dataclasses

import pytest

from gr00t_trt.base.errors import EngineError
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.engines.profiles import graph_profile


def test_profiles_of_every_graph(tiny_export):
    manifest = load_manifest(tiny_export, verify_files=False)
    B, S, n, T = (manifest.dynamic_dims[k] for k in ("B", "S", "n", "T"))
    dit = graph_profile(manifest, manifest.graph("dit"))
    cross_k = dit.input("cross_k")
    L, Hc, Dh = manifest.dims["L"], manifest.dims["Hc"], manifest.dims["Dh"]
    assert cross_k.min == (L, B[0], Hc, S[0], Dh) and cross_k.opt == (L, B[1], Hc, S[1], Dh)
    assert cross_k.max == (L, B[2], Hc, S[2], Dh)
    # the one vision graph: a dynamic patch count, images and position grid agreeing at min, opt and max
    vision = graph_profile(manifest, manifest.graph("vision"))
    images, grid, dv = vision.input("images"), vision.input("position_grid"), manifest.dims["Dv"]
    assert (images.min, images.opt, images.max) == ((n[0], 252, 252, 3), (n[1], 252, 336, 3), (n[2], 588, 588, 3))
    assert (grid.min, grid.opt, grid.max) == ((18, 18, dv), (18, 24, dv), (42, 42, dv))
    assert graph_profile(manifest, manifest.graph("backbone")).input("image_embeds").max == (T[2], manifest.dims["E"])
    for entry in manifest.graphs.values():
        assert [p.name for p in graph_profile(manifest, entry).inputs] == [t.name for t in entry.inputs]


def test_unbounded_or_inverted_dims_are_refused(tiny_export):
    manifest = load_manifest(tiny_export, verify_files=False)
    broken = dataclasses.replace(manifest, dynamic_dims={k: v for k, v in manifest.dynamic_dims.items() if k != "S"})
    with pytest.raises(EngineError, match="graph 'dit' uses dim 'S', which the manifest neither fixes nor bounds"):
        graph_profile(broken, broken.graph("dit"))
    inverted = dataclasses.replace(manifest, dynamic_dims={**manifest.dynamic_dims, "B": [2, 1, 1]})
    with pytest.raises(EngineError, match="dynamic dim 'B' of the manifest has min/opt/max 2/1/1"):
        graph_profile(inverted, inverted.graph("dit"))
