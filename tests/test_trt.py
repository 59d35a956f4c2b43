"""TensorRT engine builder and runtime, without TensorRT.

TensorRT cannot be installed here, so these tests run ``build_trt`` and ``TrtBackbone`` against
a FAKE ``tensorrt`` module (:class:`FakeTRT`, put in ``sys.modules``): a small object graph
with the TensorRT 10 or 11 Python API's names (each major's own: 11 has no weak-typing flags
or layer members) that records the calls. They check that the code calls the API as
documented (profiles, flags, precision constraints, timing cache, engine keys, refusals),
not that TensorRT builds or runs anything. The pure-Python parts (profiles
from the manifest, keys, the float32 layer list, the script's error) need no fake.
"""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
from _shared import export_script
from onnx import TensorProto, helper

from ldmvfi_fast.errors import EngineError, InputError, OptionError
from ldmvfi_fast.export import tensorrt as T
from ldmvfi_fast.manifest import (
    FORMAT,
    FORMAT_VERSION,
    read_manifest,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]
GPU = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


# ---------------------------------------------------------------- a small ONNX engine folder

def _decoder_graph():
    """Decomposed DSepConv-like sampling (Floor, fractions, GatherElements, the weighted sample and
    the residual sum) and an attention Softmax, between layers of no island (Relu)."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Constant", [], ["grid"], name="c_grid", value=helper.make_tensor("g", f, [1], [1.0])),
        helper.make_node("Relu", ["offset"], ["off"], name="head_conv"),
        helper.make_node("Add", ["off", "grid"], ["pos"], name="coord_add"),
        helper.make_node("Clip", ["pos", "lo", "hi"], ["posc"], name="coord_clip"),
        helper.make_node("Floor", ["pos"], ["fl"], name="coord_floor"),
        helper.make_node("Sub", ["posc", "fl"], ["frac"], name="coord_frac"),
        helper.make_node("Cast", ["fl"], ["idx"], name="coord_cast", to=TensorProto.INT64),
        helper.make_node("GatherElements", ["z", "idx"], ["pix"], name="gather_pix", axis=0),
        helper.make_node("Mul", ["pix", "frac"], ["warped"], name="pixel_times_weight"),
        helper.make_node("Relu", ["z"], ["q"], name="attn_q"),
        helper.make_node("MatMul", ["q", "zt"], ["scores"], name="attn_scores"),
        helper.make_node("Add", ["scores", "bias"], ["biased"], name="attn_bias"),
        helper.make_node("Softmax", ["biased"], ["probs"], name="attn_softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "z"], ["attended"], name="attn_out"),
        helper.make_node("Relu", ["attended"], ["ap"], name="attn_proj"),
        helper.make_node("Add", ["warped", "ap"], ["frame"], name="out_add"),
    ]
    inits = [helper.make_tensor(n, f, [1], [v]) for n, v in (("lo", 0.0), ("hi", 7.0))]
    inits += [helper.make_tensor("bias", f, [1], [0.5]), helper.make_tensor("zt", f, [4, 4], [0.1] * 16)]
    g = helper.make_graph(nodes, "decoder", [helper.make_tensor_value_info("offset", f, [4, 4]),
                                             helper.make_tensor_value_info("z", f, [4, 4])],
                          [helper.make_tensor_value_info("frame", f, [4, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])


def _unet_graph():
    """Timestep embedding (Cast, Unsqueeze, Mul, Cos, Sin), GroupNorm and LayerNorm nodes, and
    layers of no island (Concat, the embedding's MatMul, Add, Relu)."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [
        helper.make_node("Cast", ["t"], ["tf"], name="ts_cast", to=f),
        helper.make_node("Unsqueeze", ["tf", "ax1"], ["tu"], name="ts_unsq"),
        helper.make_node("Mul", ["tu", "freqs"], ["phase"], name="ts_mul"),
        helper.make_node("Cos", ["phase"], ["cos"], name="ts_cos"),
        helper.make_node("Sin", ["phase"], ["sin"], name="ts_sin"),
        helper.make_node("Concat", ["cos", "sin"], ["emb"], name="ts_cat", axis=1),
        helper.make_node("MatMul", ["emb", "w_emb"], ["embp"], name="emb_proj"),
        helper.make_node("GroupNormalization", ["x_t", "gs", "gb"], ["h"], name="gn", num_groups=1),
        helper.make_node("Add", ["h", "embp"], ["h2"], name="add_emb"),
        helper.make_node("LayerNormalization", ["h2", "ls", "lb"], ["h3"], name="ln"),
        helper.make_node("Relu", ["h3"], ["eps"], name="out_relu"),
    ]
    inits = [helper.make_tensor("ax1", i64, [1], [1]), helper.make_tensor("freqs", f, [1, 2], [1.0, 0.01]),
             helper.make_tensor("w_emb", f, [4, 4], [0.1] * 16)]
    inits += [helper.make_tensor(n, f, [4], [1.0] * 4) for n in ("gs", "gb", "ls", "lb")]
    g = helper.make_graph(nodes, "unet_step", [helper.make_tensor_value_info("x_t", f, [4, 4]),
                                               helper.make_tensor_value_info("t", i64, [1])],
                          [helper.make_tensor_value_info("eps", f, [4, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])


def _encoder_graph():
    """A layer of no island and the quantizer's codebook distances and ArgMin."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [
        helper.make_node("Relu", ["frame"], ["z"], name="enc_conv"),
        helper.make_node("Reshape", ["z", "flat"], ["zf"], name="q_reshape"),
        helper.make_node("Pow", ["zf", "two"], ["zsq"], name="q_pow"),
        helper.make_node("ReduceSum", ["zsq", "ax1"], ["zs"], name="q_sum", keepdims=1),
        helper.make_node("MatMul", ["zf", "codebook_t"], ["ze"], name="q_matmul"),
        helper.make_node("Mul", ["ze", "two"], ["ze2"], name="q_mul2"),
        helper.make_node("Add", ["zs", "esq"], ["s"], name="q_add"),
        helper.make_node("Sub", ["s", "ze2"], ["dist"], name="q_sub"),
        helper.make_node("ArgMin", ["dist"], ["codes"], name="q_argmin", axis=1),
    ]
    inits = [helper.make_tensor("flat", i64, [2], [-1, 4]), helper.make_tensor("two", f, [1], [2.0]),
             helper.make_tensor("ax1", i64, [1], [1]), helper.make_tensor("codebook_t", f, [4, 3], [0.1] * 12),
             helper.make_tensor("esq", f, [3], [0.03] * 3)]
    g = helper.make_graph(nodes, "encoder", [helper.make_tensor_value_info("frame", f, [4, 4])],
                          [helper.make_tensor_value_info("z", f, [4, 4]),
                           helper.make_tensor_value_info("codes", i64, [4, 1])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])


#: the nodes of the three graphs above in each precision-policy island (the rest are in none)
ISLAND_NODES = {
    "dsepconv": {"coord_add", "coord_clip", "coord_floor", "coord_frac", "coord_cast", "pixel_times_weight",
                 "out_add"},
    "softmax": {"attn_scores", "attn_bias", "attn_softmax", "attn_out"},
    "timestep_embedding": {"ts_cast", "ts_unsq", "ts_mul", "ts_cos", "ts_sin"},
    "groupnorm": {"gn"},
    "layernorm": {"ln"},
    "quantizer": {"q_reshape", "q_pow", "q_sum", "q_matmul", "q_mul2", "q_add", "q_sub", "q_argmin"},
}
#: island nodes with integer outputs (no float32 to keep: not constrained)
INT_NODES = {"coord_cast", "q_argmin"}


def _half_graph(name, inputs, outputs, to):
    """float32 inputs -> Cast(to) -> Relu -> Cast(float32) outputs: a half-precision graph with
    float32 I/O, as the exporter writes one (io_dtype float32)."""
    f = TensorProto.FLOAT
    first = next(n for n, dt in inputs if dt == f)
    nodes = [helper.make_node("Cast", [first], ["xh"], name=f"{name}_in_cast", to=to),
             helper.make_node("Relu", ["xh"], ["yh"], name=f"{name}_relu"),
             helper.make_node("Cast", ["yh"], [outputs[0]], name=f"{name}_out_cast", to=f)]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, dt, None) for n, dt in inputs],
                          [helper.make_tensor_value_info(o, f, None) for o in outputs])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])


def _manifest(custom_ops_mode="decompose"):
    def prof(c, div, lo=(1, 512, 512), opt=(1, 1280, 2048), hi=(4, 2304, 3840)):
        return {k: [b, c, h // div, w // div] for k, (b, h, w) in zip(("min", "opt", "max"), (lo, opt, hi))}

    graphs = {
        "encoder": {"file": "encoder.onnx", "inputs": [{"name": "frame", "dtype": "float32",
                                                         "shape": ["batch", 3, "H", "W"]}],
                    "outputs": [{"name": "z", "dtype": "float32", "shape": ["batch", 3, "H/32", "W/32"]}],
                    "profiles": {"frame": prof(3, 1)}},
        "unet_step": {"file": "unet_step.onnx",
                      "inputs": [{"name": "x_t", "dtype": "float32", "shape": ["batch", 3, "H/32", "W/32"]},
                                 {"name": "t", "dtype": "int64", "shape": ["batch"]}],
                      "outputs": [{"name": "eps", "dtype": "float32", "shape": ["batch", 3, "H/32", "W/32"]}],
                      "profiles": {"x_t": prof(3, 32), "t": {"min": [1], "opt": [1], "max": [4]}}},
        "decoder": {"file": "decoder.onnx",
                    "inputs": [{"name": "offset", "dtype": "float32", "shape": ["batch", 3, "H/32", "W/32"]},
                               {"name": "z", "dtype": "float32", "shape": ["batch", 3, "H/32", "W/32"]}],
                    "outputs": [{"name": "frame", "dtype": "float32", "shape": ["batch", 3, "H", "W"]}],
                    "profiles": {"offset": prof(3, 32), "z": prof(3, 32)}},
    }
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "toolkit_version": "0", "runtime": "onnxruntime",
            "config": {}, "pad_unit": 256, "latent_factor": 32, "latent_channels": 3, "prediction": "eps",
            "alphas_cumprod": [0.9, 0.5], "weights_hash": "sha256:" + "0" * 64, "dtype": "float32",
            "op_backend": "reference", "custom_ops": [], "custom_ops_mode": custom_ops_mode, "opset": 20,
            "graphs": graphs, "sizes": {"min_height": 512, "min_width": 512, "max_height": 4096,
                                        "max_width": 4096, "multiple": 256, "max_batch": 64}}


@pytest.fixture
def onnx_dir(tmp_path):
    d = tmp_path / "onnx"
    d.mkdir()
    onnx.save(_encoder_graph(), str(d / "encoder.onnx"))
    onnx.save(_unet_graph(), str(d / "unet_step.onnx"))
    onnx.save(_decoder_graph(), str(d / "decoder.onnx"))
    write_manifest(d, _manifest())
    return d


POLICY = {"version": 1, "fp32_islands": ["io", "sampler", "timestep_embedding", "groupnorm", "layernorm",
                                         "softmax", "dsepconv", "quantizer"]}


#: the policy a half folder's manifest records (not today's: the build copies it, it does not restate it)
HALF_POLICY = {"version": 1, "fp32_islands": ["io", "dsepconv"]}


def _half_dir(root: Path, dtype: str) -> Path:
    """An ONNX folder of ``dtype`` graphs with float32 I/O, as the exporter writes one (manifest
    ``dtype``, ``io_dtype`` float32 and ``precision_policy``)."""
    to = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}[dtype]
    d = root / f"onnx-{dtype}"
    d.mkdir()
    f = TensorProto.FLOAT
    onnx.save(_half_graph("encoder", [("frame", f)], ["z"], to), str(d / "encoder.onnx"))
    onnx.save(_half_graph("unet_step", [("x_t", f), ("t", TensorProto.INT64)], ["eps"], to),
              str(d / "unet_step.onnx"))
    onnx.save(_half_graph("decoder", [("offset", f), ("z", f)], ["frame"], to), str(d / "decoder.onnx"))
    write_manifest(d, {**_manifest(), "dtype": dtype, "io_dtype": "float32", "precision_policy": HALF_POLICY})
    return d


# ---------------------------------------------------------------- the fake tensorrt module

class _Enum:
    def __init__(self, **members):
        for k, v in members.items():
            setattr(self, k, v)


_TRT_DTYPES = {TensorProto.FLOAT: "FLOAT", TensorProto.FLOAT16: "HALF", TensorProto.BFLOAT16: "BF16",
               TensorProto.INT64: "INT64", TensorProto.INT32: "INT32", TensorProto.BOOL: "BOOL"}
_INT_OUT_OPS = {"ArgMin", "ArgMax", "Shape", "Size", "NonZero"}
#: builder flags TensorRT 11 removed (weak typing), as named by the 10.x Python bindings
_WEAK_FLAGS = {"FP16": "FP16", "BF16": "BF16flag", "INT8": "INT8", "FP8": "FP8", "INT4": "INT4", "FP4": "FP4",
               "OBEY_PRECISION_CONSTRAINTS": "OBEY", "PREFER_PRECISION_CONSTRAINTS": "PREFER",
               "REJECT_EMPTY_ALGORITHMS": "REJECT_EMPTY", "WEIGHTLESS": "WEIGHTLESS"}


class FakeTRT(types.ModuleType):
    """Stand-in for ``tensorrt`` 10.x or 11.x (by ``version``): records the calls (``calls``) and
    turns each ONNX node into one layer named after it (metadata ``[ONNX Layer: name]``, as the
    ONNX parser does), with output dtypes as the graph says (Cast ``to``, index ops int64).

    Each major has its own API, as NVIDIA/TensorRT's bindings (python/src/infer/pyCore.cpp,
    pyGraph.cpp) and include/NvInfer.h give it (release/10.13 and main = 11.1):

    * 10: ``BuilderFlag`` has FP16, BF16, INT8, OBEY_/PREFER_PRECISION_CONSTRAINTS...;
      ``NetworkDefinitionCreationFlag`` EXPLICIT_BATCH = 0 (deprecated), STRONGLY_TYPED = 1;
      layers have ``precision`` / ``precision_is_set`` / ``reset_precision`` /
      ``set_output_type`` / ``output_type_is_set`` / ``reset_output_type``. A network is strongly
      typed only with the STRONGLY_TYPED bit; setting a layer's precision or output type there,
      or building it with a weak-typing flag, is an error (the build fails: ``None``).
    * 11: none of those flags or layer members (reading or setting one raises AttributeError,
      as the pybind11 classes do); ``NetworkDefinitionCreationFlag`` STRONGLY_TYPED = 0
      (deprecated, ignored), PREFER_JIT_PYTHON_PLUGINS = 1, PREFER_AOT_PYTHON_PLUGINS = 2, no
      EXPLICIT_BATCH; every network is strongly typed; ``create_network`` returns ``None`` for
      flag bits outside the enum.
    """

    def __init__(self, version="10.13.0", plan=b"PLAN"):
        super().__init__("tensorrt")
        self.__version__ = version
        self.major = major = int(version.split(".")[0])
        self.calls: list[tuple] = []
        self.plan = plan
        self.DataType = _Enum(FLOAT="FLOAT", HALF="HALF", BF16="BF16", INT32="INT32", INT64="INT64", BOOL="BOOL")
        flags = {"REFIT": "REFIT", "DEBUG": "DEBUG", "TF32": "TF32", "STRIP_PLAN": "STRIP_PLAN"}
        if major < 11:
            flags.update(_WEAK_FLAGS)
            self.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1, PREFER_JIT_PYTHON_PLUGINS=2,
                                                       PREFER_AOT_PYTHON_PLUGINS=3)
            n_network_flags = 4
        else:
            self.NetworkDefinitionCreationFlag = _Enum(STRONGLY_TYPED=0, PREFER_JIT_PYTHON_PLUGINS=1,
                                                       PREFER_AOT_PYTHON_PLUGINS=2)
            n_network_flags = 3
        self.BuilderFlag = _Enum(**flags)
        weak_flags = set(_WEAK_FLAGS.values())
        self.MemoryPoolType = _Enum(WORKSPACE="WORKSPACE")
        self.TensorIOMode = _Enum(INPUT="INPUT", OUTPUT="OUTPUT")
        trt = self

        class Logger:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

            def __init__(self, level=2):
                self.level = level

        class ILogger:
            def __init__(self):
                pass

        class Tensor:
            def __init__(self, name, dtype):
                self.name, self.dtype = name, dtype

        class Layer:
            """ILayer of TensorRT 11: name, metadata, type, outputs and get_output_type only."""
            _SETTABLE = {"name", "metadata"}

            def __init__(self, network, node, dtypes):
                object.__setattr__(self, "_network", network)
                object.__setattr__(self, "name", node.name)
                object.__setattr__(self, "type", node.op_type)
                object.__setattr__(self, "metadata", f"[ONNX Layer: {node.name}]")
                object.__setattr__(self, "_outs", [Tensor(o, dtypes.get(o, "FLOAT")) for o in node.output])

            def __setattr__(self, k, v):  # pybind11 classes take no new attributes
                if k not in self._SETTABLE:
                    raise AttributeError(f"'{type(self).__name__}' object has no attribute '{k}'")
                object.__setattr__(self, k, v)

            @property
            def num_outputs(self):
                return len(self._outs)

            def get_output(self, i):
                return self._outs[i]

            def get_output_type(self, i):
                return self._outs[i].dtype

        class Layer10(Layer):
            """ILayer of TensorRT 10: also the weak-typing members (errors on a strongly typed network)."""
            _SETTABLE = {"name", "metadata", "precision"}

            def __init__(self, network, node, dtypes):
                super().__init__(network, node, dtypes)
                object.__setattr__(self, "_precision", None)
                object.__setattr__(self, "output_types", {})

            def _weak(self, what):
                if self._network.strongly_typed:
                    self._network.errors.append(f"{self.name}: {what} on a strongly typed network")

            @property
            def precision(self):
                return self._precision or "FLOAT"

            @precision.setter
            def precision(self, dtype):
                self._weak("setPrecision")
                object.__setattr__(self, "_precision", dtype)

            @property
            def precision_is_set(self):
                return self._precision is not None

            def reset_precision(self):
                object.__setattr__(self, "_precision", None)

            def set_output_type(self, i, dtype):
                self._weak("setOutputType")
                self.output_types[i] = dtype

            def output_type_is_set(self, i):
                return i in self.output_types

            def reset_output_type(self, i):
                self.output_types.pop(i, None)

        class Network:
            def __init__(self, flags, strongly_typed):
                self.flags, self.strongly_typed, self.layers, self.errors = flags, strongly_typed, [], []

            @property
            def num_layers(self):
                return len(self.layers)

            def get_layer(self, i):
                return self.layers[i]

            def get_flag(self, flag):
                if flag == trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED:
                    return self.strongly_typed
                return bool(self.flags >> flag & 1)

        def onnx_dtypes(model):
            """tensor -> TensorRT dtype name, as the graph writes it."""
            g = model.graph
            dt = {v.name: _TRT_DTYPES.get(v.type.tensor_type.elem_type, "FLOAT") for v in g.input}
            dt.update({t.name: _TRT_DTYPES.get(t.data_type, "FLOAT") for t in g.initializer})
            for n in g.node:
                if n.op_type == "Cast":
                    out = _TRT_DTYPES[next(a.i for a in n.attribute if a.name == "to")]
                elif n.op_type == "Constant":
                    out = _TRT_DTYPES.get(n.attribute[0].t.data_type, "FLOAT")
                elif n.op_type in _INT_OUT_OPS:
                    out = "INT64"
                else:
                    out = next((dt[i] for i in n.input if i in dt), "FLOAT")
                dt.update({o: out for o in n.output})
            return dt

        class OnnxParser:
            def __init__(self, network, logger):
                self.network, self.num_errors = network, 0

            def parse_from_file(self, path):
                trt.calls.append(("parse", Path(path).name))
                model = onnx.load(path)
                dtypes = onnx_dtypes(model)
                kind = Layer if trt.major >= 11 else Layer10
                self.network.layers = [kind(self.network, n, dtypes) for n in model.graph.node
                                       if n.op_type != "Constant"]
                trt.networks[Path(path).name] = self.network
                return True

            def get_error(self, i):
                return "error"

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, lo, opt, hi):
                self.shapes[name] = (list(lo), list(opt), list(hi))

        class TimingCache:
            def __init__(self, data):
                self.data = bytes(data)

            def serialize(self):
                return self.data + b"+"

        class Config:
            def __init__(self):
                self.flags, self.pools, self.profiles, self.cache = {"TF32"}, {}, [], None  # TF32 on by default
                self.cleared = set()

            def set_flag(self, flag):
                self.flags.add(flag)

            def clear_flag(self, flag):
                self.flags.discard(flag)
                self.cleared.add(flag)

            def set_memory_pool_limit(self, pool, size):
                self.pools[pool] = size

            def add_optimization_profile(self, p):
                self.profiles.append(p)
                return len(self.profiles) - 1

            def create_timing_cache(self, data):
                trt.calls.append(("create_timing_cache", bytes(data)))
                return TimingCache(data)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                return True

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags=0):
                trt.calls.append(("create_network", flags))
                if flags >> n_network_flags:
                    return None  # bits outside NetworkDefinitionCreationFlag
                typed = trt.major >= 11 or bool(flags >> trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED & 1)
                return Network(flags, typed)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                name = next(k for k, v in trt.networks.items() if v is network)
                if network.strongly_typed and config.flags & weak_flags:
                    network.errors.append(f"builder flags {sorted(config.flags & weak_flags)} on a strongly "
                                          "typed network")
                if network.errors:
                    trt.calls.append(("build_failed", name, list(network.errors)))
                    return None
                trt.calls.append(("build", name, frozenset(config.flags), dict(config.pools),
                                  [p.shapes for p in config.profiles], config.cache is not None))
                return memoryview(trt.plan)

        class Engine:
            def __init__(self, names):
                self.names = names
                self.num_io_tensors = len(names)

            def get_tensor_name(self, i):
                return self.names[i]

            def create_execution_context(self):
                return object()

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                trt.calls.append(("deserialize", bytes(data)))
                return Engine(trt.engine_names.pop(0)) if trt.engine_names else None

        class Registry:
            def load_library(self, path):
                trt.calls.append(("load_library", Path(path).name))
                return object()

        self.networks = {}
        self.engine_names: list[list[str]] = []
        self.Logger, self.ILogger, self.Builder, self.OnnxParser, self.Runtime = (Logger, ILogger, Builder,
                                                                                  OnnxParser, Runtime)
        self._registry = Registry()
        self.get_plugin_registry = lambda: self._registry
        self.init_libnvinfer_plugins = lambda logger, ns: self.calls.append(("init_plugins", ns))

    def builds(self):
        return {c[1]: c for c in self.calls if c[0] == "build"}

    def network_flags(self):
        return [c[1] for c in self.calls if c[0] == "create_network"]


@pytest.fixture
def fake_trt(monkeypatch):
    fake = FakeTRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


# ---------------------------------------------------------------- pure Python: profiles, keys, fp32 layers

def test_profiles_from_manifest_and_overrides():
    m = _manifest()
    p = T.profiles_from_manifest(m)
    assert p["unet_step"]["x_t"] == m["graphs"]["unet_step"]["profiles"]["x_t"]
    # frame sizes padded (minimal, unit 256) and turned into every input's shape
    p = T.profiles_from_manifest(m, T.parse_profile(["opt=720x1280", "batch=1,2,4"]))
    assert p["encoder"]["frame"] == {"min": [1, 3, 512, 512], "opt": [2, 3, 768, 1280], "max": [4, 3, 2304, 3840]}
    assert p["unet_step"]["x_t"]["opt"] == [2, 3, 24, 40] and p["unet_step"]["t"]["opt"] == [2]
    assert p["decoder"]["z"]["max"] == [4, 3, 72, 120]
    p = T.profiles_from_manifest(m, T.parse_profile(["max=1080x1920"]))
    assert p["encoder"]["frame"]["max"] == [4, 3, 1280, 2048]


@pytest.mark.parametrize("items, match", [
    (["max=5000x1920"], "outside the sizes"),
    (["min=100x100"], "outside the sizes"),
    (["batch=1,8,4"], "min <= opt <= max"),
    (["batch=1,1,65"], "min <= opt <= max"),
    (["min=2048x2048", "max=1080x1920"], "min <= opt <= max"),
])
def test_profile_overrides_checked_against_the_manifest(items, match):
    with pytest.raises(OptionError, match=match):
        T.profiles_from_manifest(_manifest(), T.parse_profile(items))


@pytest.mark.parametrize("bad", ["opt=1080", "opt=ax3", "batch=1,2", "side=2x2", "min=0x256", "max"])
def test_parse_profile_refuses_malformed(bad):
    with pytest.raises(OptionError, match="--profile"):
        T.parse_profile([bad])


def test_engine_key_covers_every_fact(onnx_dir, tmp_path):
    base = {"onnx_digest": T.onnx_digest(onnx_dir / "decoder.onnx"), "trt_version": "10.13.0", "gpu": GPU,
                "precision": "fp16", "profiles": T.profiles_from_manifest(_manifest())["decoder"], "plugins_digest": None}
    k = T.engine_key(**base)
    assert k == T.engine_key(**dict(base))
    changes = [{"onnx_digest": T.onnx_digest(onnx_dir / "encoder.onnx")}, {"trt_version": "10.14.0"},
               {"gpu": {**GPU, "name": "NVIDIA A100"}}, {"gpu": {**GPU, "compute_capability": "8.0"}},
               {"precision": "fp32"}, {"plugins_digest": "sha256:1"},
               {"profiles": T.profiles_from_manifest(_manifest(), {"min": (768, 768)})["decoder"]},
               {"policy": POLICY}, {"policy": {**POLICY, "version": 2}},
               {"policy": {**POLICY, "fp32_islands": POLICY["fp32_islands"][:-1]}}]
    keys = {T.engine_key(**{**base, **c}) for c in changes}
    assert len(keys) == len(changes) and k not in keys
    assert T.engine_file_name("decoder", "fp16", k) == f"decoder.fp16.{k[:16]}.engine"


def test_onnx_digest_includes_external_data(tmp_path):
    import numpy as np
    from onnx import numpy_helper

    model = _decoder_graph()
    model.graph.initializer.append(numpy_helper.from_array(np.arange(64, dtype=np.float32), "big"))
    d = tmp_path / "ext"
    d.mkdir()
    onnx.save(model, str(d / "g.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="g.data", size_threshold=0)
    before = T.onnx_digest(d / "g.onnx")
    data = bytearray((d / "g.data").read_bytes())
    data[0] ^= 1
    (d / "g.data").write_bytes(bytes(data))
    assert T.onnx_digest(d / "g.onnx") != before
    (d / "g.data").unlink()
    with pytest.raises(EngineError, match="g.data"):
        T.onnx_digest(d / "g.onnx")


def _islands_of(*graphs, **kw):
    keep = {}
    for g in graphs:
        keep.update(T.fp32_nodes(g, **kw))
    out: dict[str, set] = {}
    for node, island in keep.items():
        out.setdefault(island, set()).add(node)
    return out


def test_fp32_nodes_are_the_policy_islands():
    from ldmvfi_fast import precision

    graphs = (_encoder_graph(), _unet_graph(), _decoder_graph())
    assert _islands_of(*graphs) == ISLAND_NODES  # keyed by the policy's island names, nothing else
    assert set(ISLAND_NODES) <= set(precision.ISLANDS)
    # only the islands the policy has on
    with precision.disabled("softmax", "quantizer"):
        got = _islands_of(*graphs)
    assert got == {k: v for k, v in ISLAND_NODES.items() if k not in ("softmax", "quantizer")}
    assert _islands_of(*graphs, islands=["groupnorm"]) == {"groupnorm": {"gn"}}
    with pytest.raises(KeyError, match="island"):
        T.fp32_nodes(_unet_graph(), islands=["no_such_island"])


def test_fp32_nodes_patterns_come_from_the_policy(monkeypatch):
    """The islands' ONNX ops are read from ldmvfi_fast.precision, not restated here."""
    import dataclasses

    from ldmvfi_fast import precision

    gn = precision.ISLANDS["groupnorm"]
    monkeypatch.setitem(precision.ISLANDS, "groupnorm", dataclasses.replace(gn, onnx_ops=("Relu",)))
    assert _islands_of(_unet_graph(), islands=["groupnorm"]) == {"groupnorm": {"out_relu"}}


def test_fp32_nodes_plugins_in_domain_mode():
    f = TensorProto.FLOAT
    ins = ["input", "vertical", "horizontal", "offset_x", "offset_y", "mask"]
    nodes = [helper.make_node("DSepConv", ins, ["y"], name="dsep", domain="ldmvfi_fast"),
             helper.make_node("MaxViTAttention", ["y", "y", "y", "b"], ["a"], name="attn", domain="ldmvfi_fast"),
             helper.make_node("Relu", ["a"], ["out"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, f, None) for n in ins + ["b"]],
                          [helper.make_tensor_value_info("out", f, None)])
    assert T.fp32_nodes(g) == {"dsep": "dsepconv"}


# ---------------------------------------------------------------- build with the fake module

def test_build_fp16_calls_tensorrt_as_documented(onnx_dir, tmp_path, fake_trt):
    """TensorRT 10, a float32 folder at fp16: the FP16 flag, OBEY_PRECISION_CONSTRAINTS and float32
    on exactly the layers of the policy's islands."""
    from ldmvfi_fast import precision

    cache = tmp_path / "timing.cache"
    out = T.build_trt(onnx_dir, tmp_path / "trt", precision="fp16", timing_cache=cache, workspace_gb=2,
                      refittable=True, gpu=GPU)
    m = read_manifest(out)
    assert m["runtime"] == "tensorrt" and m["tensorrt"]["precision"] == "fp16" and m["tensorrt"]["gpu"] == GPU
    t = m["tensorrt"]
    assert (t["precision_mode"], t["major"], t["precision_policy"]) == ("constraints", 10, precision.describe())
    builds = fake_trt.builds()
    assert set(builds) == {"encoder.onnx", "unet_step.onnx", "decoder.onnx"}
    assert fake_trt.network_flags() == [0, 0, 0]  # weakly typed networks
    for g in ("encoder", "unet_step", "decoder"):
        _, _, flags, pools, profiles, has_cache = builds[f"{g}.onnx"]
        assert flags == {"FP16", "OBEY", "REFIT"} and pools == {"WORKSPACE": 2 << 30} and has_cache  # TF32 off
        want = {n: (s["min"], s["opt"], s["max"]) for n, s in _manifest()["graphs"][g]["profiles"].items()}
        assert profiles == [want]
        key = m["tensorrt"]["engines"][g]["key"]
        assert m["graphs"][g]["file"] == f"{g}.fp16.{key[:16]}.engine"
        assert (out / m["graphs"][g]["file"]).read_bytes() == b"PLAN"
    marked = {}
    for name, net in fake_trt.networks.items():
        for layer in net.layers:
            if layer.precision_is_set or layer.output_types:
                assert layer.precision == "FLOAT" and layer.output_types == {0: "FLOAT"}, layer.name
                marked[layer.name] = name
    want = {n for nodes in ISLAND_NODES.values() for n in nodes} - INT_NODES
    assert set(marked) == want
    counts = {g: m["tensorrt"]["engines"][g]["fp32_layers"] for g in ("encoder", "unet_step", "decoder")}
    assert counts == {"encoder": {"quantizer": 7}, "unet_step": {"timestep_embedding": 5, "groupnorm": 1,
                                                                 "layernorm": 1},
                      "decoder": {"dsepconv": 6, "softmax": 4}}
    assert cache.read_bytes() == b"+"  # created empty, written back
    assert sorted(p.name for p in out.iterdir()) == sorted([*(m["graphs"][g]["file"] for g in m["graphs"]),
                                                            "manifest.json"])


def test_constraints_follow_islands_turned_off(onnx_dir, tmp_path, fake_trt):
    from ldmvfi_fast import precision

    with precision.disabled("softmax", "timestep_embedding"):
        out = T.build_trt(onnx_dir, tmp_path / "trt", precision="bf16", gpu=GPU)
    m = read_manifest(out)
    assert {c[2] for c in fake_trt.builds().values()} == {frozenset({"BF16flag", "OBEY"})}
    layers = {la.name: la for net in fake_trt.networks.values() for la in net.layers}
    for name in ISLAND_NODES["softmax"] | ISLAND_NODES["timestep_embedding"]:
        assert not layers[name].precision_is_set, name
    assert layers["gn"].precision_is_set and layers["coord_floor"].precision_is_set
    pol = m["tensorrt"]["precision_policy"]
    assert pol["version"] == precision.POLICY_VERSION and "softmax" not in pol["fp32_islands"]
    assert m["tensorrt"]["engines"]["decoder"]["fp32_layers"] == {"dsepconv": 6}
    # another policy, another key: the engines of the full policy are not taken for these
    full = read_manifest(T.build_trt(onnx_dir, tmp_path / "trt-full", precision="bf16", gpu=GPU))
    assert all(full["tensorrt"]["engines"][g]["key"] != m["tensorrt"]["engines"][g]["key"] for g in full["graphs"])


def test_build_fp32_sets_no_precision_flags(onnx_dir, tmp_path, fake_trt):
    out = T.build_trt(onnx_dir, gpu=GPU)  # default: the folder's precision (fp32), out beside it
    for c in fake_trt.builds().values():
        assert c[2] == frozenset() and c[3] == {}  # TF32 cleared: exact float32
    assert all(not layer.precision_is_set for net in fake_trt.networks.values() for layer in net.layers)
    t = read_manifest(out)["tensorrt"]
    assert (t["precision"], t["precision_mode"], t["major"]) == ("fp32", "typed", 10)
    assert fake_trt.network_flags() == [1 << 1] * 3  # TensorRT 10: STRONGLY_TYPED (= 1) asked for
    assert out.name == "onnx.trt-fp32"


def test_rebuild_keeps_same_key_engines_and_never_overwrites(onnx_dir, tmp_path, fake_trt):
    cache = tmp_path / "timing.cache"
    out = T.build_trt(onnx_dir, tmp_path / "trt", timing_cache=cache, gpu=GPU)
    with pytest.raises(EngineError, match="not empty"):
        T.build_trt(onnx_dir, out, gpu=GPU)
    fake_trt.calls.clear()
    T.build_trt(onnx_dir, out, timing_cache=cache, gpu=GPU, overwrite=True)
    assert not fake_trt.builds()  # same keys: kept
    assert ("create_timing_cache", b"+") in fake_trt.calls  # the cache file was read
    T.build_trt(onnx_dir, out, gpu={**GPU, "name": "NVIDIA A100"}, overwrite=True)
    assert len(fake_trt.builds()) == 3  # another GPU: new keys, new engines


def test_build_refusals(onnx_dir, tmp_path, fake_trt, monkeypatch):
    with pytest.raises(OptionError, match="precision"):
        T.build_trt(onnx_dir, tmp_path / "a", precision="int8", gpu=GPU)
    with pytest.raises(OptionError, match="workspace"):
        T.build_trt(onnx_dir, tmp_path / "a", workspace_gb=0, gpu=GPU)
    with pytest.raises(EngineError, match="plugin library not found"):
        T.build_trt(onnx_dir, tmp_path / "a", plugins=tmp_path / "missing.so", gpu=GPU)
    m = _manifest("domain")
    write_manifest(onnx_dir, m)
    with pytest.raises(OptionError, match="--plugins"):
        T.build_trt(onnx_dir, tmp_path / "a", gpu=GPU)
    assert not (tmp_path / "a").exists()


def test_failed_build_leaves_nothing(onnx_dir, tmp_path, monkeypatch):
    fake = FakeTRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    n = {"i": 0}
    real = fake.Builder.build_serialized_network

    def fail_on_decoder(self, network, config):
        n["i"] += 1
        return None if n["i"] == 3 else real(self, network, config)
    monkeypatch.setattr(fake.Builder, "build_serialized_network", fail_on_decoder)
    with pytest.raises(EngineError, match="could not build"):
        T.build_trt(onnx_dir, tmp_path / "trt", gpu=GPU)
    assert not (tmp_path / "trt").exists()


def test_plugins_loaded_and_hashed(onnx_dir, tmp_path, fake_trt):
    lib = tmp_path / "libldmvfi_fast_trt_plugins.so"
    lib.write_bytes(b"\x7fELF fake")
    out = T.build_trt(onnx_dir, tmp_path / "trt", plugins=lib, gpu=GPU)
    assert ("load_library", lib.name) in fake_trt.calls
    assert read_manifest(out)["tensorrt"]["plugins"] == {"file": lib.name, "digest": T.file_digest(lib)}


# ---------------------------------------------------------------- TensorRT 11 (strongly typed only) and typed folders

@pytest.fixture
def trt11(monkeypatch):
    fake = FakeTRT(version="11.1.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def test_trt11_builds_fp32_folder_as_written(onnx_dir, tmp_path, trt11):
    out = T.build_trt(onnx_dir, tmp_path / "trt", gpu=GPU)
    t = read_manifest(out)["tensorrt"]
    assert (t["precision"], t["precision_mode"], t["major"], t["version"]) == ("fp32", "typed", 11, "11.1.0")
    assert trt11.network_flags() == [0, 0, 0]  # no (deprecated, ignored) STRONGLY_TYPED bit
    assert all(c[2] == frozenset() for c in trt11.builds().values())  # TF32 cleared, nothing else
    assert all(net.strongly_typed for net in trt11.networks.values())
    assert t["precision_policy"] is None  # an older float32 folder records none
    assert all(c[0] != "build_failed" for c in trt11.calls)


@pytest.mark.parametrize("precision, dtype", [("fp16", "float16"), ("bf16", "bfloat16")])
def test_trt11_refuses_a_precision_the_graphs_are_not_in(onnx_dir, tmp_path, trt11, capsys, precision, dtype):
    with pytest.raises(OptionError, match=f"--dtype {dtype} "):
        T.build_trt(onnx_dir, tmp_path / "a", precision=precision, gpu=GPU)
    assert not trt11.builds() and not (tmp_path / "a").exists()
    assert export_script("build_trt").main(["--engines", str(onnx_dir), "--out", str(tmp_path / "b"), "--precision", precision]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"python export/export_onnx.py --ckpt CKPT --dtype {dtype} --out DIR" in err
    assert "float32" in err and "11.1.0" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("version", ["10.13.0", "11.1.0"])
@pytest.mark.parametrize("dtype, precision", [("float16", "fp16"), ("bfloat16", "bf16")])
def test_half_folder_builds_typed(tmp_path, monkeypatch, version, dtype, precision):
    fake = FakeTRT(version=version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    src = _half_dir(tmp_path, dtype)
    out = T.build_trt(src, gpu=GPU)  # default precision: the folder's
    assert out.name == f"onnx-{dtype}.trt-{precision}"
    m = read_manifest(out)
    t = m["tensorrt"]
    assert (t["precision"], t["precision_mode"], t["major"]) == (precision, "typed", int(version[:2]))
    assert t["precision_policy"] == HALF_POLICY  # copied from the ONNX manifest
    assert t["source"]["io_dtype"] == "float32" and t["source"]["dtype"] == dtype
    assert all(c[2] == frozenset() for c in fake.builds().values())  # no FP16/BF16/OBEY flags
    assert all(net.strongly_typed for net in fake.networks.values())
    assert fake.network_flags() == ([1 << 1] * 3 if version.startswith("10") else [0] * 3)
    half = {"float16": "HALF", "bfloat16": "BF16"}[dtype]
    relu = fake.networks["decoder.onnx"].layers[1]
    assert relu.name == "decoder_relu" and relu.get_output_type(0) == half  # the graph's dtypes
    if version.startswith("10"):
        assert not any(la.precision_is_set or la.output_types for n in fake.networks.values() for la in n.layers)
    # the runtime's buffers: each I/O tensor in its own dtype (float32 frames, int64 t)
    from ldmvfi_fast.runtime import tensorrt as R

    assert m["graphs"]["unet_step"]["inputs"][1]["dtype"] == "int64"
    eng = _FakeEngine(["x_t", "t", "eps"])
    eng.ctx = _FakeContext(lambda: g)
    g = R._Graph("unet_step", eng, m["graphs"]["unet_step"], R.torch.device("cpu"), use_graph=False)
    g._buffer("x_t", 4), g._buffer("t", 1)
    assert g.dtypes == {"x_t": R.torch.float32, "t": R.torch.int64, "eps": R.torch.float32}
    assert (g.buffers["x_t"].dtype, g.buffers["t"].dtype) == (R.torch.float32, R.torch.int64)


def test_typed_folder_other_precision_refused_on_trt10(tmp_path, fake_trt):
    src = _half_dir(tmp_path, "float16")
    for precision, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        with pytest.raises(OptionError, match=f"--precision fp16, or .*--dtype {dtype} --out DIR"):
            T.build_trt(src, tmp_path / "a", precision=precision, gpu=GPU)
    assert not fake_trt.builds()


def test_manifest_io_dtype_checked(tmp_path, fake_trt):
    src = _half_dir(tmp_path, "float16")
    m = read_manifest(src)
    m["graphs"]["decoder"]["inputs"][0]["dtype"] = "float16"  # says float32 I/O, describes a float16 input
    write_manifest(src, m)
    with pytest.raises(EngineError, match="io_dtype float32"):
        T.build_trt(src, tmp_path / "a", gpu=GPU)


def test_stand_in_has_the_trt11_api_only(trt11):
    """TensorRT 11's bindings lack the weak-typing API: so does the stand-in (reading a removed
    member raises AttributeError), so a build that passes against it made no removed call."""
    for flag in ("FP16", "BF16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"):
        assert not hasattr(trt11.BuilderFlag, flag), flag
    assert not hasattr(trt11.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    assert trt11.NetworkDefinitionCreationFlag.STRONGLY_TYPED == 0  # 10 has it at 1
    net = trt11.Builder(None).create_network(0)
    assert net.strongly_typed and net.get_flag(trt11.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert trt11.Builder(None).create_network(1 << 3) is None  # no such flag
    parser = trt11.OnnxParser(net, None)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        onnx.save(_decoder_graph(), f"{d}/decoder.onnx")
        parser.parse_from_file(f"{d}/decoder.onnx")
    layer = net.get_layer(0)
    for member in ("precision", "precision_is_set", "set_output_type", "output_type_is_set", "reset_precision"):
        with pytest.raises(AttributeError):
            getattr(layer, member)
    with pytest.raises(AttributeError):
        layer.precision = trt11.DataType.FLOAT
    layer.name = "renamed"  # what 11 keeps still works
    assert layer.get_output_type(0) == "FLOAT"
    # the TensorRT 10 constraint code cannot run against it
    with pytest.raises(AttributeError):
        T.constrain_precision(trt11, net, T.fp32_nodes(_decoder_graph()), {})


def test_weak_typing_call_on_trt11_fails_the_build(onnx_dir, tmp_path, trt11, monkeypatch):
    """A planted constraints build on 11 (the weak-typing calls) fails against the stand-in."""
    monkeypatch.setattr(T, "_precision_mode", lambda trt, precision, onnx_dtype, src=None: "constraints")
    with pytest.raises(AttributeError, match="FP16"):
        T.build_trt(onnx_dir, tmp_path / "a", precision="fp16", gpu=GPU)
    assert not (tmp_path / "a").exists()


def test_trt10_refuses_weak_typing_on_a_typed_network(onnx_dir, tmp_path, fake_trt, monkeypatch):
    """TensorRT 10: layer precisions or FP16 flags on a strongly typed network fail the build."""
    net = fake_trt.Builder(None).create_network(1 << fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    fake_trt.networks["x.onnx"] = net
    config = fake_trt.Builder(None).create_builder_config()
    config.set_flag(fake_trt.BuilderFlag.FP16)
    assert fake_trt.Builder(None).build_serialized_network(net, config) is None
    real = T._build_one

    def typed_but_constrained(trt, logger, path, *, mode, **k):  # planted: constraints on a typed network
        orig = trt.Builder.create_network
        monkeypatch.setattr(trt.Builder, "create_network", lambda self, flags=0: orig(self, 1 << 1))
        return real(trt, logger, path, mode="constraints", **k)
    monkeypatch.setattr(T, "_build_one", typed_but_constrained)
    with pytest.raises(EngineError, match="could not build"):
        T.build_trt(onnx_dir, tmp_path / "a", precision="fp16", gpu=GPU)
    assert any(c[0] == "build_failed" for c in fake_trt.calls)


# ---------------------------------------------------------------- without TensorRT: the script

def test_script_without_tensorrt_one_line_exit_2(onnx_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    build_trt = export_script("build_trt")
    assert build_trt.main(["--engines", str(onnx_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install tensorrt" in err, err
    assert build_trt.main([]) == 2  # no options at all: the same one line
    assert capsys.readouterr().err.strip() == err


def test_script_subprocess_no_traceback(onnx_dir):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    r = subprocess.run([sys.executable, str(REPO / "export" / "build_trt.py"), "--engines", str(onnx_dir)],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "tensorrt" in r.stderr


# ---------------------------------------------------------------- the runtime's refusals

@pytest.fixture
def trt_dir(onnx_dir, tmp_path, fake_trt):
    return T.build_trt(onnx_dir, tmp_path / "trt", precision="fp16", gpu=GPU)


def _runtime(monkeypatch, gpu=GPU):
    from ldmvfi_fast.runtime import tensorrt as R

    monkeypatch.setattr(R.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(R.torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(R, "gpu_identity", lambda idx=None: gpu)
    return R


class _NoDevice:
    def __init__(self, idx):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_runtime_loads_with_matching_key(trt_dir, fake_trt, monkeypatch):
    R = _runtime(monkeypatch)
    monkeypatch.setattr(R.torch.cuda, "device", _NoDevice)
    base_init = R.TrtBackbone._init_facts

    def init_on_cpu(self, folder, manifest, device):  # the schedule tensor on the CPU: no GPU here
        base_init(self, folder, manifest, R.torch.device("cpu"))
        self.device = device
    monkeypatch.setattr(R.TrtBackbone, "_init_facts", init_on_cpu)
    m = read_manifest(trt_dir)
    fake_trt.engine_names = [[d["name"] for d in m["graphs"][g]["inputs"] + m["graphs"][g]["outputs"]]
                             for g in ("encoder", "unet_step", "decoder")]
    bb = R.TrtBackbone.from_dir(trt_dir)
    assert bb.name == "tensorrt" and bb.pad_unit == 256 and str(bb.device) == "cuda:0"
    assert [c[0] for c in fake_trt.calls].count("deserialize") == 3
    assert bb.graphs["unet_step"].use_graph and not bb.graphs["decoder"].use_graph
    # an engine whose tensors differ from the manifest
    fake_trt.engine_names = [["frame", "zz"], ["x_t", "t", "eps"], ["offset", "z", "frame"]]
    with pytest.raises(EngineError, match="rebuild"):
        R.TrtBackbone.from_dir(trt_dir)


@pytest.mark.parametrize("change, match", [
    ({"version": "10.14.0"}, "stale TensorRT engine"),
    ({"gpu": {"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}}, "stale TensorRT engine"),
])
def test_runtime_refuses_stale_engines(trt_dir, monkeypatch, change, match):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTRT(version=change.get("version", "10.13.0")))
    R = _runtime(monkeypatch, gpu=change.get("gpu", GPU))
    with pytest.raises(EngineError, match=match):
        R.TrtBackbone.from_dir(trt_dir)


def test_runtime_refuses_without_tensorrt_or_cuda(trt_dir, monkeypatch):
    from ldmvfi_fast.runtime import load_backbone
    from ldmvfi_fast.runtime import tensorrt as R

    monkeypatch.setattr(R.torch.cuda, "is_available", lambda: False)
    with pytest.raises((EngineError, OptionError), match="CUDA"):  # OptionError: checked before loading
        load_backbone("tensorrt", engines=trt_dir)
    with pytest.raises(EngineError, match="CUDA device, not cpu"):
        R.TrtBackbone.from_dir(trt_dir, device="cpu")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EngineError, match="pip install tensorrt"):
        R.TrtBackbone.from_dir(trt_dir)


def test_runtime_refuses_missing_plugin_library(onnx_dir, tmp_path, fake_trt, monkeypatch):
    lib = tmp_path / "lib" / "libldmvfi_fast_trt_plugins.so"
    lib.parent.mkdir()
    lib.write_bytes(b"\x7fELF fake")
    out = T.build_trt(onnx_dir, tmp_path / "trt", plugins=lib, gpu=GPU)
    R = _runtime(monkeypatch)
    monkeypatch.delenv(R.PLUGINS_ENV, raising=False)
    with pytest.raises(EngineError, match="plugin.*missing"):
        R.TrtBackbone.from_dir(out)  # not beside the engines, not named
    other = tmp_path / "other.so"
    other.write_bytes(b"\x7fELF another build")
    with pytest.raises(EngineError, match="stale"):  # another library: another key
        R.TrtBackbone.from_dir(out, plugins=other)


def test_runtime_wrong_folder_kind(onnx_dir):
    from ldmvfi_fast.runtime.tensorrt import TrtBackbone

    with pytest.raises(EngineError, match="'onnxruntime' engines"):
        TrtBackbone.from_dir(onnx_dir)


def test_manifest_json_is_plain(trt_dir):
    m = json.loads((trt_dir / "manifest.json").read_text())
    assert m["tensorrt"]["source"]["custom_ops_mode"] == "decompose"
    assert "timesteps" in m["ddim"]["schedules"]["1"]  # tables for the C++ application (2 training steps here)
    assert set(m["tensorrt"]["engines"]) == {"encoder", "unet_step", "decoder"}



# ---------------------------------------------------------------- the runtime's run loop, on CPU tensors

class _FakeContext:
    """Executes ``out = 2 * first input`` (+ the second input when there is one, cast) through the
    addresses it was given, as TensorRT would; counts runs."""

    def __init__(self, graph_ref):
        self.graph_ref, self.shapes, self.addresses, self.runs = graph_ref, {}, {}, 0

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def get_tensor_shape(self, name):
        return self.shapes[self.graph_ref().inputs[0]]

    def execute_async_v3(self, stream):
        g = self.graph_ref()
        bufs = g.buffers
        for n in g.inputs + g.outputs:
            assert self.addresses[n] == bufs[n].data_ptr(), f"{n}: stale address"
        shp = self.shapes[g.inputs[0]]
        n = 1
        for s in shp:
            n *= s
        x = bufs[g.inputs[0]][:n]
        bufs[g.outputs[0]][:n] = 2 * x
        self.runs += 1
        return True


class _FakeEngine:
    def __init__(self, names):
        self.names, self.num_io_tensors = names, len(names)
        self.ctx = None

    def get_tensor_name(self, i):
        return self.names[i]

    def create_execution_context(self):
        return self.ctx


def _graph(monkeypatch, use_graph=True, capture_fails=False):

    import torch

    from ldmvfi_fast.runtime import tensorrt as R

    captured, capturing = [], []

    class FakeCUDAGraph:
        def __init__(self):
            self.fn = None

        def replay(self):
            self.fn()

    class graph_ctx:
        def __init__(self, g):
            self.g = g

        def __enter__(self):
            if capture_fails:
                raise RuntimeError("operation not permitted when stream is capturing")
            captured.append(self.g)
            capturing.append(True)
            return self

        def __exit__(self, *a):
            capturing.clear()
            return False

    class Stream:
        cuda_stream = 0

    monkeypatch.setattr(R.torch.cuda, "CUDAGraph", FakeCUDAGraph)
    monkeypatch.setattr(R.torch.cuda, "graph", graph_ctx)
    monkeypatch.setattr(R.torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(R.torch.cuda, "synchronize", lambda device=None: None)
    spec = {"inputs": [{"name": "x_t", "dtype": "float32", "shape": ["batch", 3, "H/32", "W/32"]}],
            "outputs": [{"name": "eps", "dtype": "float32", "shape": ["batch", 3, "H/32", "W/32"]}],
            "profiles": {"x_t": {"min": [1, 3, 2, 2], "opt": [1, 3, 4, 4], "max": [2, 3, 8, 8]}}}
    eng = _FakeEngine(["x_t", "eps"])
    holder = {}
    eng.ctx = _FakeContext(lambda: holder["g"])
    g = R._Graph("unet_step", eng, spec, torch.device("cpu"), use_graph=use_graph)
    holder["g"] = g
    # inside a capture nothing runs: the launch is recorded, and replay() runs it
    real_execute = g._execute

    def execute(stream):
        if capturing:
            captured[-1].fn = lambda: real_execute(stream)
        else:
            real_execute(stream)
    monkeypatch.setattr(g, "_execute", execute)
    return g, eng.ctx, captured


def test_runtime_step_warms_up_captures_then_replays(monkeypatch):
    import torch

    g, ctx, captured = _graph(monkeypatch)
    x = torch.arange(48, dtype=torch.float32).view(1, 3, 4, 4)
    outs = [g.run([x + i])[0] for i in range(4)]
    for i, o in enumerate(outs):  # right values every step, fresh tensors (not views of the buffer)
        torch.testing.assert_close(o, 2 * (x + i))
        assert o.data_ptr() != g.buffers["eps"].data_ptr()
    assert len(captured) == 1 and ctx.runs == 4  # run 1 warm-up, run 2 captured, 3-4 replayed
    # a new shape: new buffers (larger), graphs dropped, warm-up again
    y = torch.ones(2, 3, 8, 8)
    torch.testing.assert_close(g.run([y])[0], 2 * y)
    assert not g.graphs and ctx.shapes["x_t"] == (2, 3, 8, 8)
    torch.testing.assert_close(g.run([y])[0], 2 * y)
    assert len(captured) == 2
    # back to the small shape: buffers kept (large enough), warm-up again
    torch.testing.assert_close(g.run([x])[0], 2 * x)
    assert not g.graphs and g.warm == {((1, 3, 4, 4),)}  # the context's shapes changed: graphs dropped
    with pytest.raises(InputError, match="profile"):
        g.run([torch.ones(1, 3, 16, 8)])


def test_runtime_capture_failure_falls_back(monkeypatch, caplog):
    import torch

    g, ctx, _ = _graph(monkeypatch, capture_fails=True)
    x = torch.ones(1, 3, 4, 4)
    with caplog.at_level("WARNING"):
        for _ in range(3):
            torch.testing.assert_close(g.run([x])[0], 2 * x)
    assert not g.use_graph and "capture failed" in caplog.text and ctx.runs == 3
