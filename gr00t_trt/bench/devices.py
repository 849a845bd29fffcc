"""Devices the roofline predicts for: memory bandwidth and dense tensor throughput per precision.

Dense means without 2:4 structured sparsity (vendors' headline figures usually assume it; we halve
them). GeForce cards are listed at their FP32-accumulate tensor rates (half their FP16-accumulate
rates), the accumulation TensorRT uses for fp16/fp8 GEMMs. Where a vendor publishes only the FP4
headline, the lower precisions are derived by halving per step (FP4 → FP8 → FP16), as the tensor
cores of those parts do; such entries say "derived" in their source comment. A precision a device
cannot run (FP8 on Ampere) is absent: the roofline then falls back to the next wider precision.
Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceSpec:
    """One device of the roofline table."""

    key: str  # short name used on the command line: "thor", "rtx5090", ...
    name: str
    memory_gbs: float  # peak DRAM bandwidth, GB/s
    tflops: dict[str, float]  # dense TFLOP/s per precision: fp32, fp16 (= bf16), fp8, int8 (TOPS), fp4
    #: lower-case substrings of a detected device name (machine.device_name()) that mean this device
    match: tuple[str, ...] = field(default=())

    def rate(self, precision: str) -> tuple[str, float]:
        """(precision actually used, dense TFLOP/s): the precision itself or the next wider one."""
        order = ("int8", "fp16", "fp32") if precision == "int8" else ("fp4", "fp8", "fp16", "fp32")
        wanted = "fp16" if precision == "bf16" else precision
        for p in order[order.index(wanted):] if wanted in order else ("fp32",):
            if p in self.tflops:
                return p, self.tflops[p]
        raise KeyError(f"device {self.key} lists no throughput for {precision} or wider")


DEVICES: dict[str, DeviceSpec] = {
    d.key: d
    for d in (
        # Jetson AGX Thor (T5000): 273 GB/s LPDDR5X; 2070 FP4 TFLOPS *sparse* (NVIDIA Jetson Thor product
        # page / developer blog, Aug 2025) -> 1035 dense FP4; FP8 and FP16 derived by halving.
        # FP32: 2560 CUDA cores x 2 FLOP x ~1.57 GHz ≈ 8.0 TFLOPS (derived).
        DeviceSpec("thor", "Jetson AGX Thor (T5000)", 273.0,
                   {"fp4": 1035.0, "fp8": 517.5, "fp16": 258.8, "fp32": 8.0}, ("thor",)),
        # Jetson AGX Orin 64 GB: 204.8 GB/s LPDDR5; GPU 170 INT8 TOPS sparse (of the module's 275 with the
        # DLAs; Jetson AGX Orin data sheet) -> 85 dense INT8 -> 42.5 dense FP16 (Ampere: no FP8 tensor
        # cores). FP32: 2048 CUDA cores x 2 x 1.3 GHz = 5.3 TFLOPS.
        DeviceSpec("orin", "Jetson AGX Orin 64 GB", 204.8, {"int8": 85.0, "fp16": 42.5, "fp32": 5.3}, ("orin",)),
        # GeForce RTX 4090 (Ada Lovelace GPU architecture whitepaper, appendix table): 1008 GB/s GDDR6X;
        # dense FP16 tensor with FP32 accumulate 165.2, FP8 with FP32 accumulate 330.3; FP32 82.6.
        DeviceSpec("rtx4090", "GeForce RTX 4090", 1008.0, {"fp8": 330.3, "fp16": 165.2, "fp32": 82.6}, ("4090",)),
        # GeForce RTX 5090 (Blackwell GeForce whitepaper / NVIDIA spec page): 1792 GB/s GDDR7; 3352 AI TOPS
        # = FP4 sparse -> 1676 dense FP4 (FP32 accumulate 838 -> listed); dense FP16 with FP32 accumulate
        # 209.5, FP8 with FP32 accumulate 419; FP32 104.8.
        DeviceSpec("rtx5090", "GeForce RTX 5090", 1792.0,
                   {"fp4": 838.0, "fp8": 419.0, "fp16": 209.5, "fp32": 104.8}, ("5090",)),
        # H100 SXM5 (NVIDIA H100 Tensor Core GPU data sheet): 3.35 TB/s HBM3; dense BF16/FP16 989.4,
        # FP8 1978.9 (the data sheet's 1979 / 3958 are with sparsity halved here), FP32 66.9.
        DeviceSpec("h100", "H100 SXM5", 3350.0, {"fp8": 1978.9, "fp16": 989.4, "fp32": 66.9}, ("h100",)),
        # DGX Spark (GB10): 273 GB/s LPDDR5X; "1 PFLOP FP4 with sparsity" (NVIDIA DGX Spark page) -> 500
        # dense FP4; FP8 250 and FP16 125 derived by halving; FP32 31 TFLOPS (GB10 Hot Chips 2025 talk).
        DeviceSpec("spark", "DGX Spark (GB10)", 273.0,
                   {"fp4": 500.0, "fp8": 250.0, "fp16": 125.0, "fp32": 31.0}, ("gb10", "spark")),
    )
}


def find_device(name: str | None) -> DeviceSpec | None:
    """The table entry a device name (a table key or a detected name) refers to, else None."""
    if not name:
        return None
    lowered = name.lower()
    if lowered in DEVICES:
        return DEVICES[lowered]
    for device in DEVICES.values():
        if any(m in lowered for m in device.match):
            return device
    return None


def require_device(name: str) -> DeviceSpec:
    """The table entry ``name`` refers to (``find_device``), or the one-line error naming the known devices."""
    spec = find_device(name)
    if spec is None:
        from ..base.errors import Gr00tTrtError

        raise Gr00tTrtError(f"unknown device {name!r} — expected one of: {', '.join(DEVICES)}")
    return spec
