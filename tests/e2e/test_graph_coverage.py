"""Every declared graph kind is exported, validated and checked by verify (Optimum's "all models tested").

Adding a graph kind to ``gr00t_trt.contract.graphs`` without an export wrapper, a dataflow stage, or a path through
``verify`` makes one of these fail.
"""

from __future__ import annotations

from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.families.n16.contract import CONTRACT, GRAPH_SPECS
from gr00t_trt.runtime.pipeline import Pipeline
from gr00t_trt.verification.verify import verify_export


def test_every_kind_is_exported(tiny_export):
    manifest = load_manifest(tiny_export)
    assert {g.kind for g in manifest.graphs.values()} == set(GRAPH_SPECS)
    assert {s.kind for s in CONTRACT.control_step} == set(GRAPH_SPECS)


def test_verify_runs_every_exported_graph_alone(tiny_export, tiny_checkpoint, monkeypatch):
    called: set[str] = set()
    original = Pipeline.run_graph

    def recording(self, name, feeds):
        called.add(name)
        return original(self, name, feeds)

    monkeypatch.setattr(Pipeline, "run_graph", recording)
    report = verify_export(tiny_export, tiny_checkpoint, backend="ort", embodiments=("libero_panda",))
    assert report.passed
    assert called == set(load_manifest(tiny_export).graphs)
