"""Fixtures of the export tests: one tiny mixed-precision export shared by the precision and fp8 tests, made
while the export's streaming is watched (what test_streaming.py asserts), so that one export serves both."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: every precision at once: fp8 vision (patch embedding excluded), bf16 backbone, fp8 action-head graphs,
#: fp16 small graphs
MIXED_PLAN = "vision=fp8,backbone=bf16,dit_context=fp8,dit=fp8"


@dataclass
class Streaming:
    """What the mixed export did, in order: the pieces built, the graphs quantised and validated, every
    moment a graph's torch weights were alive when they should not have been, and which were left at the end."""

    pieces: list[list[str]] = field(default_factory=list)
    checked: list[tuple[str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    alive_after: list[str] = field(default_factory=list)


def watched_export(checkpoint, out: Path, options, streaming: Streaming):
    """``export_checkpoint`` with the piece builder, the quantiser and the validator wrapped to record into
    ``streaming`` (weak references only: watching keeps no weights alive); the patches end with the export."""
    from gr00t_trt.export import precision, quantize
    from gr00t_trt.export.driver import export_checkpoint
    from gr00t_trt.families.registry import N16

    tensors: dict[str, list[weakref.ref]] = {}  # graph name -> its wrapper's parameters and buffers
    piece_of: dict[str, int] = {}

    def alive(names) -> list[str]:
        return [name for name in names if any(ref() is not None for ref in tensors[name])]

    def expect(ok, message: str) -> None:
        if not ok:
            streaming.violations.append(message)

    face = N16.export()
    build, quantize_graph, validate = face.segment_modules, quantize.quantize_graph, precision.validate_graph

    def tracked_build(lazy, config, kinds, slots):
        expect(not alive(tensors), f"{alive(tensors)} still hold weights when {kinds} are built")
        expect(not [n for n, p in lazy.model.named_parameters() if not p.is_meta], f"the model holds weights before {kinds}")
        modules = build(lazy, config, kinds, slots)
        expect(not [n for n, p in lazy.model.named_parameters() if not p.is_meta], f"the model holds weights after {kinds}")
        for name, (_, module, _) in modules.items():
            tensors[name] = [weakref.ref(t) for t in (*module.parameters(), *module.buffers())]
        streaming.pieces.append(kinds)
        piece_of.update(dict.fromkeys(modules, len(streaming.pieces)))
        return modules

    def tracked_quantize(path, kind, feeds, **kwargs):
        expect(not alive([path.stem]), f"{path.stem}'s torch weights are alive while it is quantised")
        earlier = alive(n for n in tensors if piece_of[n] != piece_of[path.stem])
        expect(not earlier, f"{earlier} still hold weights while {path.name} is quantised")
        streaming.checked.append(("quantize", path.stem))
        return quantize_graph(path, kind, feeds, **kwargs)

    def tracked_validate(path, name, kind, graph_precision, module, feeds, reference):
        others = alive(n for n in tensors if piece_of[n] != piece_of[name])  # same piece: same or tiny weights
        expect(not others, f"{others} still hold weights while {name} is validated")
        if graph_precision == "bf16":
            expect(module is not None and alive([name]), f"{name} (bf16) is not validated in PyTorch")
        else:
            expect(module is None and not alive([name]), f"{name}'s torch weights are alive on ORT")
        streaming.checked.append(("validate", name))
        return validate(path, name, kind, graph_precision, module, feeds, reference)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(face, "segment_modules", tracked_build)
        patch.setattr(quantize, "quantize_graph", tracked_quantize)
        patch.setattr(precision, "validate_graph", tracked_validate)
        manifest = export_checkpoint(checkpoint, out, options)
    streaming.alive_after = alive(tensors)
    return manifest


@pytest.fixture(scope="session")
def mixed_streamed(tiny_checkpoint, tmp_path_factory) -> tuple[Path, Streaming]:
    from gr00t_trt.export.driver import ExportOptions

    out = tmp_path_factory.mktemp("precision") / "tiny-mixed"
    streaming = Streaming()
    watched_export(tiny_checkpoint, out, ExportOptions(
        precision="fp16", graph_precision=MIXED_PLAN, embodiments=("libero_panda",), image_sizes=((252, 252),),
        calib_count=1, max_batch=2), streaming)
    return out, streaming


@pytest.fixture(scope="session")
def mixed_export(mixed_streamed) -> Path:
    return mixed_streamed[0]
