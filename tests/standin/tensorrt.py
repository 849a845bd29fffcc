"""Stand-in of the ``tensorrt`` module: Builder → network/parser/config → plan → Runtime → engine → context.

Names, parameter names and defaults follow the real pybind11 signatures (checked by tests/trt_real).
A plan is a real 28-byte header (magic ``ftrt``, serialization 0, version bytes at 24..27) followed by
JSON describing the build; an engine runs its ONNX file with ONNX Runtime over stand-in memory.
"""

from __future__ import annotations

import json
import operator
import struct
import sys
import weakref
from enum import IntEnum
from pathlib import Path

import numpy as np

from . import cudart
from .state import STATE, StandinContractError


def __getattr__(name: str):
    if name == "__version__":
        return STATE.trt_version
    if name == "NetworkDefinitionCreationFlag":  # EXPLICIT_BATCH (0) went away in 11: values moved
        return _Flags10 if STATE.trt_version.startswith("10.") else _Flags11
    raise AttributeError(name)


#: module attributes whose value depends on the stand-in's TensorRT version
VERSIONED = ("NetworkDefinitionCreationFlag",)


class DataType(IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8


class _Flags10(IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class _Flags11(IntEnum):
    STRONGLY_TYPED = 0


class MemoryPoolType(IntEnum):
    WORKSPACE = 0


class ProfilingVerbosity(IntEnum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class LayerInformationFormat(IntEnum):
    ONELINE = 0
    JSON = 1


class TensorIOMode(IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class ExecutionContextAllocationStrategy(IntEnum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


_NUMPY = {"float32": DataType.FLOAT, "float16": DataType.HALF, "int8": DataType.INT8, "int32": DataType.INT32,
          "bool": DataType.BOOL, "uint8": DataType.UINT8, "int64": DataType.INT64, "bfloat16": DataType.BF16}
_NUMPY_OF_ORT = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
                 "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
_ONNX_TO_NUMPY = {1: "float32", 10: "float16", 3: "int8", 6: "int32", 9: "bool", 2: "uint8", 7: "int64", 16: "bfloat16"}
_PRECISION_FORMAT = {"fp32": "Row major linear FP32", "fp16": "Row major linear FP16 format",
                     "bf16": "Row major linear BF16 format", "fp8": "Row major linear FP8 format",
                     "int8": "Row major linear Int8 format"}


def _int(name: str, value) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"incompatible function arguments: {name} must be an int, got {type(value).__name__}") from None


def _str(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"incompatible function arguments: {name} must be a str, got {type(value).__name__}")
    return value


def _enum(name: str, value, enum: type[IntEnum]):
    if not isinstance(value, enum):
        raise TypeError(f"incompatible function arguments: {name} must be {enum.__name__}, got {value!r}")
    return value


class ILogger:
    class Severity(IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity, msg) -> None:
        raise NotImplementedError


class Logger(ILogger):
    INTERNAL_ERROR = ILogger.Severity.INTERNAL_ERROR
    ERROR = ILogger.Severity.ERROR
    WARNING = ILogger.Severity.WARNING
    INFO = ILogger.Severity.INFO
    VERBOSE = ILogger.Severity.VERBOSE

    def __init__(self, min_severity=ILogger.Severity.WARNING) -> None:
        self.min_severity = min_severity

    def log(self, severity, msg) -> None:
        if severity <= self.min_severity:
            print(f"[TRT stand-in] {msg}", file=sys.stderr)


def _log(logger, severity, msg: str) -> None:
    logger.log(severity, msg)


class Dims(tuple):
    """Shapes come back as Dims (a tuple here); -1 marks a dynamic dim."""


class IHostMemory:
    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    def __bytes__(self) -> bytes:
        return self._data

    @property
    def nbytes(self) -> int:
        return len(self._data)


# ------------------------------------------------------------------------------------------ build side
class ITensor:
    def __init__(self, name: str, dtype: DataType, shape: tuple[int, ...]) -> None:
        self.name, self.dtype, self.shape = name, dtype, Dims(shape)


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.onnx_path: Path | None = None
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index) -> ITensor:
        return self._inputs[_int("index", index)]

    def get_output(self, index) -> ITensor:
        return self._outputs[_int("index", index)]


class ParserError:
    def __init__(self, desc: str, node: int, node_name: str, node_operator: str) -> None:
        self._desc, self._node, self._name, self._op = desc, node, node_name, node_operator

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op

    def code(self) -> int:
        return 8  # ErrorCode.UNSUPPORTED_NODE


def _tensor_of(value_info) -> ITensor:
    t = value_info.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return ITensor(value_info.name, _NUMPY[_ONNX_TO_NUMPY[t.elem_type]], shape)


class OnnxParser:
    def __init__(self, network, logger) -> None:
        if not isinstance(network, INetworkDefinition):
            raise TypeError("incompatible constructor arguments: network must be an INetworkDefinition")
        self._network, self._logger, self._errors = network, logger, []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index) -> ParserError:
        return self._errors[_int("index", index)]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model) -> bool:
        import onnx

        STATE.record("OnnxParser", "parse_from_file")
        path = Path(_str("model", model))
        proto = onnx.load(str(path), load_external_data=False)
        for index, node in enumerate(proto.graph.node):
            if node.op_type in STATE.unsupported_ops or node.domain not in ("", "ai.onnx"):
                self._errors.append(ParserError(f"No importer registered for op: {node.op_type}", index, node.name, node.op_type))
        if self._errors:
            return False
        onnx.load(str(path))  # external weights must resolve next to the model, as TensorRT needs
        initializers = {i.name for i in proto.graph.initializer}
        self._network.onnx_path = path.resolve()
        self._network._inputs = [_tensor_of(v) for v in proto.graph.input if v.name not in initializers]
        self._network._outputs = [_tensor_of(v) for v in proto.graph.output]
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    def set_shape(self, input, min, opt, max) -> None:  # noqa: A002 - real parameter names
        shapes = tuple(tuple(_int("dim", d) for d in s) for s in (min, opt, max))
        if len({len(s) for s in shapes}) != 1 or any(a > b for a, b in zip(shapes[0], shapes[1], strict=True)) or any(
            a > b for a, b in zip(shapes[1], shapes[2], strict=True)
        ):
            raise StandinContractError(f"profile of {input!r}: expected min ≤ opt ≤ max of one rank, got {shapes}")
        self.shapes[_str("input", input)] = shapes  # type: ignore[assignment]


class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self.entries = json.loads(data.decode()) if data else []

    def serialize(self) -> IHostMemory:
        return IHostMemory(json.dumps(self.entries).encode())


class IBuilderConfig:
    def __init__(self) -> None:
        self.builder_optimization_level = 3
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self._cache: ITimingCache | None = None

    def set_memory_pool_limit(self, pool, pool_size) -> None:
        self.pools[_enum("pool", pool, MemoryPoolType)] = _int("pool_size", pool_size)

    def create_timing_cache(self, serialized_timing_cache) -> ITimingCache:
        return ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache, ignore_mismatch) -> bool:
        if not isinstance(cache, ITimingCache) or not isinstance(ignore_mismatch, bool):
            raise TypeError("incompatible function arguments: set_timing_cache(cache: ITimingCache, ignore_mismatch: bool)")
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache:
        return self._cache

    def add_optimization_profile(self, profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


#: build numbers of releases whose ``__version__`` has three parts (NvInferVersion.h: 10.3 GA is build 26)
BUILD_NUMBERS = {"10.3.0": 26}


def _full_version(version: str) -> tuple[int, int, int, int]:
    """major.minor.patch.build as the plan header stores it, whatever ``__version__`` shows."""
    parts = [int(p) for p in version.split(".")[:4]]
    if len(parts) == 3:
        parts.append(BUILD_NUMBERS[version])
    return tuple(parts)  # type: ignore[return-value]


def _header(version: str) -> bytes:
    return struct.pack("<II16s", 0x74727466, 0, b"\0" * 16) + bytes(_full_version(version))


def _asks_fp8(onnx_path: Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    fp8 = {onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E5M2}
    return any(i.data_type in fp8 for i in model.graph.initializer)


class Builder:
    def __init__(self, logger) -> None:
        if not STATE.device_count:
            raise TypeError("pybind11::init(): factory function returned nullptr")
        self._logger = logger

    def create_network(self, flags=0) -> INetworkDefinition:
        return INetworkDefinition(_int("flags", flags))

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network, config) -> IHostMemory | None:
        STATE.record("Builder", "build_serialized_network")
        if STATE.build_returns_none:
            _log(self._logger, ILogger.Severity.ERROR, "Stand-in: out of memory while building (forced)")
            return None
        if network.onnx_path is None:
            raise StandinContractError("build_serialized_network on a network that no parser filled")
        dynamic = [t for t in network._inputs if -1 in t.shape]
        profile = config.profiles[0].shapes if config.profiles else {}
        missing = [t.name for t in dynamic if t.name not in profile]
        if missing:
            _log(self._logger, ILogger.Severity.ERROR, f"Network has dynamic inputs {missing} but no optimization profile")
            return None
        if STATE.compute_capability < (8, 9) and _asks_fp8(network.onnx_path):
            _log(self._logger, ILogger.Severity.ERROR,
                 "Error Code 9: API Usage Error (fp8 is not supported on this device: "
                 f"compute capability {STATE.compute_capability[0]}.{STATE.compute_capability[1]} < 8.9)")
            return None
        if config._cache is not None:
            config._cache.entries.append(str(network.onnx_path.name))
        payload = {
            "onnx": str(network.onnx_path),
            "strongly_typed": bool(network.flags & (1 << __getattr__("NetworkDefinitionCreationFlag").STRONGLY_TYPED)),
            "verbosity": int(config.profiling_verbosity),
            "profile": {k: [list(s) for s in v] for k, v in profile.items()},
            "inputs": [[t.name, int(t.dtype), list(t.shape)] for t in network._inputs],
            "outputs": [[t.name, int(t.dtype), list(t.shape)] for t in network._outputs],
            "fp32_layers": sorted(STATE.fp32_layers),
            "sm": list(STATE.compute_capability),
        }
        return IHostMemory(_header(STATE.trt_version) + json.dumps(payload).encode())


# ------------------------------------------------------------------------------------------ run side
class Runtime:
    def __init__(self, logger) -> None:
        if not STATE.device_count:
            raise TypeError("pybind11::init(): factory function returned nullptr")
        self._logger = logger

    def deserialize_cuda_engine(self, serialized_engine) -> ICudaEngine | None:
        STATE.record("Runtime", f"deserialize_cuda_engine({type(serialized_engine).__name__})")
        data = bytes(serialized_engine)
        if data[:4] != b"ftrt" or data[24:28] != _header(STATE.trt_version)[24:28]:
            _log(self._logger, ILogger.Severity.ERROR,
                 "IRuntime::deserializeCudaEngine: The engine plan file is not compatible with this version of TensorRT")
            return None
        payload = json.loads(data[28:].decode())
        built_on = tuple(payload["sm"])
        if built_on != tuple(STATE.compute_capability):
            _log(self._logger, ILogger.Severity.ERROR,
                 "IRuntime::deserializeCudaEngine: The engine plan file is generated on an incompatible device, "
                 f"expecting compute {built_on[0]}.{built_on[1]} got compute "
                 f"{STATE.compute_capability[0]}.{STATE.compute_capability[1]}, please rebuild.")
            return None
        return ICudaEngine(payload, data, self._logger)


class ICudaEngine:
    def __init__(self, payload: dict, plan: bytes, logger=None) -> None:
        self._payload, self._plan, self._logger = payload, plan, logger
        self._device = cudart.current_device()  # an engine lives on the device current when it was loaded
        self._io = [(n, DataType(d), tuple(s), TensorIOMode.INPUT) for n, d, s in payload["inputs"]]
        self._io += [(n, DataType(d), tuple(s), TensorIOMode.OUTPUT) for n, d, s in payload["outputs"]]
        self._ort = None

    def _tensor(self, name):
        for t in self._io:
            if t[0] == _str("name", name):
                return t
        raise StandinContractError(f"engine has no tensor {name!r}")

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    @property
    def device_memory_size_v2(self) -> int:
        """Each engine needs its own activation size (here: grows with its profile's largest inputs)."""
        largest = sum(int(np.prod(shapes[2], dtype=np.int64)) for shapes in self._payload["profile"].values())
        return (1 << 18) + 256 * (-(-16 * largest // 256))

    def get_device_memory_size_for_profile_v2(self, profile_index) -> int:
        if _int("profile_index", profile_index) != 0:
            raise StandinContractError(f"engine has 1 optimisation profile, asked for profile {profile_index}")
        return self.device_memory_size_v2

    def get_tensor_name(self, index) -> str:
        return self._io[_int("index", index)][0]

    def get_tensor_mode(self, name) -> TensorIOMode:
        return self._tensor(name)[3]

    def get_tensor_dtype(self, name) -> DataType:
        return self._tensor(name)[1]

    def get_tensor_shape(self, name) -> Dims:
        return Dims(self._tensor(name)[2])

    def get_tensor_profile_shape(self, name, profile_index) -> list[Dims]:
        _int("profile_index", profile_index)
        shapes = self._payload["profile"].get(name)
        if shapes is None:
            shape = self._tensor(name)[2]
            return [Dims(shape)] * 3
        return [Dims(s) for s in shapes]

    def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC) -> IExecutionContext:
        return IExecutionContext(self, _enum("strategy", strategy, ExecutionContextAllocationStrategy))

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self)

    def serialize(self) -> IHostMemory:
        return IHostMemory(self._plan)

    def _session(self):
        if self._ort is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.intra_op_num_threads = 1
            self._ort = ort.InferenceSession(self._payload["onnx"], options, providers=["CPUExecutionProvider"])
        return self._ort


class EngineInspector:
    """Per-layer JSON as TensorRT writes it: without an execution context whose input shapes are all set,
    an engine with a dynamic input shows no formats ("N/A due to dynamic shapes"); GEMMs are fused into
    Myelin ``{ForeignNode[...]}`` layers whose name does not hold the ONNX node, only their ``Metadata`` does."""

    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self.execution_context = None

    def _formats_known(self) -> bool:
        dynamic = any(-1 in shape for _n, _d, shape, mode in self._engine._io if mode == TensorIOMode.INPUT)
        context = self.execution_context
        return not dynamic or (context is not None and context.engine is self._engine and not context.infer_shapes())

    def _layers(self) -> list:
        from gr00t_trt.engines.audit import requested_precisions

        payload = self._engine._payload
        asked = requested_precisions(Path(payload["onnx"]))
        forced = set(payload["fp32_layers"])
        detailed = payload["verbosity"] == int(ProfilingVerbosity.DETAILED)
        known = self._formats_known()
        layers = []
        for index, (node, precision) in enumerate(asked.items()):
            if "*" in forced or node in forced:
                precision = "fp32"
            name = f"{{ForeignNode[/fused_{index}/Cast.../fused_{index}/Add]}}"
            if not detailed:
                layers.append(name)
                continue
            fmt = _PRECISION_FORMAT.get(precision, precision) if known else "N/A due to dynamic shapes"
            layers.append({"Name": name, "LayerType": "Myelin",
                           "Inputs": [{"Name": f"fused_{index}_in", "Format/Datatype": fmt}],
                           "Outputs": [], "TacticName": "standin_myelin",
                           "Metadata": f"[ONNX Layer: /fused_{index}/Cast]\x1f[ONNX Layer: {node}]"})
        return layers

    def get_engine_information(self, format) -> str:  # noqa: A002
        _enum("format", format, LayerInformationFormat)
        return json.dumps({"Layers": self._layers(), "Bindings": [t[0] for t in self._engine._io]})

    def get_layer_information(self, layer_index, format) -> str:  # noqa: A002
        _enum("format", format, LayerInformationFormat)
        return json.dumps(self._layers()[_int("layer_index", layer_index)])


class IExecutionContext:
    #: contexts not yet freed (TensorRT frees a context when its Python object goes away)
    _live: weakref.WeakSet = weakref.WeakSet()

    def __init__(self, engine: ICudaEngine, strategy) -> None:
        IExecutionContext._live.add(self)
        self.engine = engine
        self._strategy = strategy
        self._shapes: dict[str, tuple[int, ...]] = {n: s for n, _d, s, m in engine._io if m == TensorIOMode.INPUT and -1 not in s}
        self._addresses: dict[str, int] = {}
        self._device_memory: int | None = None
        self._warm: tuple | None = None  # state of the last execution outside capture

    def _state(self) -> tuple:
        return tuple(sorted(self._shapes.items())), tuple(sorted(self._addresses.items()))

    def set_input_shape(self, name, shape) -> bool:
        name = _str("name", name)
        shape = tuple(_int("shape", d) for d in shape)
        cudart.invalidate_captures("set_input_shape")  # a captured graph would keep the old shape
        low, _opt, high = self.engine.get_tensor_profile_shape(name, 0)
        if len(shape) != len(low) or any(not a <= s <= b for a, s, b in zip(low, shape, high, strict=True)):
            return False
        self._shapes[name] = shape
        return True

    def _dim_values(self) -> dict[str, int]:
        import onnx

        values = {}
        model = self.engine._model = getattr(self.engine, "_model", None) or onnx.load(
            self.engine._payload["onnx"], load_external_data=False
        )
        for vi in model.graph.input:
            shape = self._shapes.get(vi.name)
            for dim, size in zip(vi.type.tensor_type.shape.dim, shape or (), strict=False):
                if dim.dim_param:
                    values[dim.dim_param] = size
        self._outputs_dims = {vi.name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in model.graph.output}
        return values

    def get_tensor_shape(self, name) -> Dims:
        name, dtype, shape, mode = self.engine._tensor(name)
        if mode == TensorIOMode.INPUT:
            return Dims(self._shapes.get(name, shape))
        values = self._dim_values()
        dims = tuple(values.get(d, -1) if isinstance(d, str) else d for d in self._outputs_dims[name])
        if -1 in dims and not self.infer_shapes():
            # a dim the exporter named by an expression of its own (the vision graph's 's58*s9' tokens):
            # TensorRT computes it from the input shapes; here ONNX Runtime does, on zeros of those shapes
            dims = self._computed_output_shapes()[name]
        return Dims(dims)

    def _computed_output_shapes(self) -> dict[str, tuple[int, ...]]:
        key = tuple(sorted(self._shapes.items()))
        cache = self.engine.__dict__.setdefault("_computed_shapes", {})
        if key not in cache:
            session = self.engine._session()
            feeds = {i.name: np.zeros(self._shapes[i.name], _NUMPY_OF_ORT[i.type]) for i in session.get_inputs()}
            outputs = session.run(None, feeds)
            cache[key] = {o.name: tuple(v.shape) for o, v in zip(session.get_outputs(), outputs, strict=True)}
        return cache[key]

    def infer_shapes(self) -> list[str]:
        return [n for n, _d, _s, m in self.engine._io if m == TensorIOMode.INPUT and n not in self._shapes]

    def set_tensor_address(self, name, memory) -> bool:
        self.engine._tensor(name)
        cudart.invalidate_captures("set_tensor_address")  # a captured graph would keep the old address
        self._addresses[_str("name", name)] = _int("memory", memory)
        return True

    def get_tensor_address(self, name) -> int:
        return self._addresses.get(_str("name", name), 0)

    def set_device_memory(self, memory, size) -> None:
        if self._strategy != ExecutionContextAllocationStrategy.USER_MANAGED:
            raise StandinContractError("set_device_memory on a context not created with USER_MANAGED")
        if _int("size", size) < self.engine.device_memory_size_v2:
            raise StandinContractError(f"set_device_memory: {size} bytes, engine needs {self.engine.device_memory_size_v2}")
        STATE.region(_int("memory", memory), size)
        self._device_memory = memory

    def set_optimization_profile_async(self, profile_index, stream_handle) -> bool:
        return _int("profile_index", profile_index) == 0 and _int("stream_handle", stream_handle) >= 0

    def _fail(self, msg: str) -> bool:
        if self.engine._logger is not None:
            _log(self.engine._logger, ILogger.Severity.ERROR, msg)
        return False

    def execute_async_v3(self, stream_handle) -> bool:
        stream = _int("stream_handle", stream_handle)
        STATE.record("IExecutionContext", "execute_async_v3")
        if STATE.enqueue_fails:
            return self._fail("IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (an illegal memory access "
                              "was encountered) (forced)")
        if cudart.current_device() != self.engine._device:
            return self._fail(f"IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (invalid resource handle: "
                              f"the engine is on device {self.engine._device}, the calling thread's current device "
                              f"is {cudart.current_device()})")
        names = [t[0] for t in self.engine._io]
        if any(n not in self._addresses for n in names) or self.infer_shapes():
            return False  # real TensorRT logs an error and returns False
        if self._strategy == ExecutionContextAllocationStrategy.USER_MANAGED and self._device_memory is None:
            return False
        state = self._state()
        if cudart.is_capturing(stream):
            if self._warm != state:
                raise StandinContractError("execute_async_v3 captured before a warm-up enqueue with these shapes/addresses")

            def replay():
                if self._state() != state:
                    raise StandinContractError("captured graph launched after a shape or address change without re-capture")
                self._run(state)

            return cudart.enqueue(stream, replay) == cudart.cudaError_t.cudaSuccess
        self._warm = state
        return cudart.enqueue(stream, lambda: self._run(state)) == cudart.cudaError_t.cudaSuccess

    def _run(self, state) -> None:
        """The kernels: run when the stream reaches them, on the shapes and addresses set at enqueue time."""
        shapes, addresses = dict(state[0]), dict(state[1])
        if self._device_memory is not None:
            STATE.region(self._device_memory, self.engine.device_memory_size_v2)  # the activation block is live
        session = self.engine._session()
        feeds = {}
        for name, dtype, _s, mode in self.engine._io:
            if mode != TensorIOMode.INPUT:
                continue
            feeds[name] = _view(addresses[name], shapes[name], dtype).copy()
        saved, self._shapes = self._shapes, shapes
        try:
            expected_shapes = {n: tuple(self.get_tensor_shape(n)) for n, _d, _s, m in self.engine._io if m == TensorIOMode.OUTPUT}
        finally:
            self._shapes = saved
        for (name, dtype, _s, _mode), value in zip(
            [t for t in self.engine._io if t[3] == TensorIOMode.OUTPUT], session.run(None, feeds), strict=True
        ):
            expected = expected_shapes[name]
            if tuple(value.shape) != expected:
                raise StandinContractError(f"output {name} has shape {value.shape}, context computed {expected}")
            _view(addresses[name], expected, dtype)[...] = value


def _view(address: int, shape: tuple[int, ...], dtype: DataType) -> np.ndarray:
    np_dtype = np.dtype(next(k for k, v in _NUMPY.items() if v == dtype) if dtype != DataType.BF16 else "uint16")
    nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    return STATE.region(address, nbytes).view(np_dtype).reshape(shape)
