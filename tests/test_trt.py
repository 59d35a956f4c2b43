"""TensorRT engine builder and runtime, without TensorRT.

TensorRT cannot be installed here, so these tests run ``build_trt`` and ``TrtBackbone`` against
a FAKE ``tensorrt`` module (:class:`FakeTRT`, put in ``sys.modules``): a small object graph
with the TensorRT 10 Python API's names that records the calls. They check that the code
calls the API as documented (profiles, flags, precision constraints, timing cache, engine
keys, refusals), not that TensorRT builds or runs anything. The pure-Python parts (profiles
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
from onnx import TensorProto, helper

from ldmvfi_fast.errors import EngineError, InputError, OptionError
from ldmvfi_fast.export import tensorrt as T
from ldmvfi_fast.export.manifest import (
    FORMAT,
    FORMAT_VERSION,
    read_manifest,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]
GPU = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


# ---------------------------------------------------------------- a small ONNX engine folder

def _decoder_graph():
    """Decomposed DSepConv-like sampling (Floor, fractions, Gather) and an attention Softmax."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Constant", [], ["grid"], name="c_grid", value=helper.make_tensor("g", f, [1], [1.0])),
        helper.make_node("Add", ["offset", "grid"], ["pos"], name="coord_add"),
        helper.make_node("Clip", ["pos", "lo", "hi"], ["posc"], name="coord_clip"),
        helper.make_node("Floor", ["pos"], ["fl"], name="coord_floor"),
        helper.make_node("Sub", ["posc", "fl"], ["frac"], name="coord_frac"),
        helper.make_node("Cast", ["fl"], ["idx"], name="coord_cast", to=TensorProto.INT64),
        helper.make_node("Gather", ["z", "idx"], ["pix"], name="gather_pix", axis=0),
        helper.make_node("Mul", ["pix", "frac"], ["warped"], name="pixel_times_weight"),
        helper.make_node("MatMul", ["z", "zt"], ["scores"], name="attn_scores"),
        helper.make_node("Add", ["scores", "bias"], ["biased"], name="attn_bias"),
        helper.make_node("Softmax", ["biased"], ["probs"], name="attn_softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "z"], ["attended"], name="attn_out"),
        helper.make_node("Add", ["warped", "attended"], ["frame"], name="out_add"),
    ]
    inits = [helper.make_tensor(n, f, [1], [v]) for n, v in (("lo", 0.0), ("hi", 7.0))]
    inits += [helper.make_tensor("bias", f, [1], [0.5]), helper.make_tensor("zt", f, [4, 4], [0.1] * 16)]
    g = helper.make_graph(nodes, "decoder", [helper.make_tensor_value_info("offset", f, [4, 4]),
                                             helper.make_tensor_value_info("z", f, [4, 4])],
                          [helper.make_tensor_value_info("frame", f, [4, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])


def _simple_graph(name, inp, out):
    f = TensorProto.FLOAT
    g = helper.make_graph([helper.make_node("Relu", [inp], [out], name=f"{name}_relu")], name,
                          [helper.make_tensor_value_info(inp, f, None)], [helper.make_tensor_value_info(out, f, None)])
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
    onnx.save(_simple_graph("encoder", "frame", "z"), str(d / "encoder.onnx"))
    onnx.save(_simple_graph("unet_step", "x_t", "eps"), str(d / "unet_step.onnx"))
    onnx.save(_decoder_graph(), str(d / "decoder.onnx"))
    write_manifest(d, _manifest())
    return d


# ---------------------------------------------------------------- the fake tensorrt module

class _Enum:
    def __init__(self, **members):
        for k, v in members.items():
            setattr(self, k, v)


class FakeTRT(types.ModuleType):
    """Stand-in for ``tensorrt`` 10.x: records the calls (``calls``) and turns each ONNX node
    into one layer named after it (metadata ``[ONNX Layer: name]``, as the ONNX parser does)."""

    def __init__(self, version="10.13.0", strongly_typed_only=False, plan=b"PLAN"):
        super().__init__("tensorrt")
        self.__version__ = version
        self.calls: list[tuple] = []
        self.plan = plan
        self.DataType = _Enum(FLOAT="FLOAT", HALF="HALF", BF16="BF16", INT32="INT32", INT64="INT64", BOOL="BOOL")
        flags = {"REFIT": "REFIT", "DEBUG": "DEBUG", "TF32": "TF32"}
        if not strongly_typed_only:
            flags.update(FP16="FP16", BF16="BF16flag", OBEY_PRECISION_CONSTRAINTS="OBEY")
        self.BuilderFlag = _Enum(**flags)
        self.NetworkDefinitionCreationFlag = _Enum(STRONGLY_TYPED=0)
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
            def __init__(self, node):
                self.name = node.name
                self.type = node.op_type
                self.metadata = f"[ONNX Layer: {node.name}]"
                to_int = node.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.INT64
                                                        for a in node.attribute)
                self._outs = [Tensor(o, "INT64" if to_int else "FLOAT") for o in node.output]
                self.precision = None
                self.output_types = {}

            @property
            def num_outputs(self):
                return len(self._outs)

            def get_output(self, i):
                return self._outs[i]

            def set_output_type(self, i, dtype):
                self.output_types[i] = dtype

        class Network:
            def __init__(self, flags):
                self.flags, self.layers = flags, []

            @property
            def num_layers(self):
                return len(self.layers)

            def get_layer(self, i):
                return self.layers[i]

        class OnnxParser:
            def __init__(self, network, logger):
                self.network, self.num_errors = network, 0

            def parse_from_file(self, path):
                trt.calls.append(("parse", Path(path).name))
                model = onnx.load(path)
                self.network.layers = [Layer(n) for n in model.graph.node if n.op_type != "Constant"]
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
                return Network(flags)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                name = next(k for k, v in trt.networks.items() if v is network)
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
               {"profiles": T.profiles_from_manifest(_manifest(), {"min": (768, 768)})["decoder"]}]
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


def test_fp32_nodes_coordinates_softmax_not_pixels():
    keep = T.fp32_nodes(_decoder_graph())
    assert {k for k, v in keep.items() if v == "coordinate"} == {"coord_add", "coord_clip", "coord_floor",
                                                                  "coord_frac", "coord_cast"}
    assert {k for k, v in keep.items() if v == "softmax"} == {"attn_scores", "attn_bias", "attn_softmax"}
    for pixel_math in ("gather_pix", "pixel_times_weight", "attn_out", "out_add"):
        assert pixel_math not in keep


def test_fp32_nodes_plugins_in_domain_mode():
    f = TensorProto.FLOAT
    ins = ["input", "vertical", "horizontal", "offset_x", "offset_y", "mask"]
    nodes = [helper.make_node("DSepConv", ins, ["y"], name="dsep", domain="ldmvfi_fast"),
             helper.make_node("MaxViTAttention", ["y", "y", "y", "b"], ["a"], name="attn", domain="ldmvfi_fast"),
             helper.make_node("Relu", ["a"], ["out"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, f, None) for n in ins + ["b"]],
                          [helper.make_tensor_value_info("out", f, None)])
    assert T.fp32_nodes(g) == {"dsep": "plugin"}


# ---------------------------------------------------------------- build with the fake module

def test_build_fp16_calls_tensorrt_as_documented(onnx_dir, tmp_path, fake_trt):
    cache = tmp_path / "timing.cache"
    out = T.build_trt(onnx_dir, tmp_path / "trt", precision="fp16", timing_cache=cache, workspace_gb=2,
                      refittable=True, gpu=GPU)
    m = read_manifest(out)
    assert m["runtime"] == "tensorrt" and m["tensorrt"]["precision"] == "fp16" and m["tensorrt"]["gpu"] == GPU
    builds = fake_trt.builds()
    assert set(builds) == {"encoder.onnx", "unet_step.onnx", "decoder.onnx"}
    for g in ("encoder", "unet_step", "decoder"):
        _, _, flags, pools, profiles, has_cache = builds[f"{g}.onnx"]
        assert flags == {"FP16", "OBEY", "REFIT", "TF32"} and pools == {"WORKSPACE": 2 << 30} and has_cache
        want = {n: (s["min"], s["opt"], s["max"]) for n, s in _manifest()["graphs"][g]["profiles"].items()}
        assert profiles == [want]
        key = m["tensorrt"]["engines"][g]["key"]
        assert m["graphs"][g]["file"] == f"{g}.fp16.{key[:16]}.engine"
        assert (out / m["graphs"][g]["file"]).read_bytes() == b"PLAN"
    layers = {layer.name: layer for layer in fake_trt.networks["decoder.onnx"].layers}
    for name in ("coord_add", "coord_clip", "coord_floor", "coord_frac", "attn_scores", "attn_bias",
                 "attn_softmax"):
        assert layers[name].precision == "FLOAT" and layers[name].output_types == {0: "FLOAT"}, name
    for name in ("gather_pix", "pixel_times_weight", "attn_out", "out_add", "coord_cast"):  # cast: int output
        assert layers[name].precision is None and not layers[name].output_types, name
    assert m["tensorrt"]["engines"]["decoder"]["fp32_layers"] == {"coordinate": 4, "softmax": 3}
    assert cache.read_bytes() == b"+"  # created empty, written back
    assert sorted(p.name for p in out.iterdir()) == sorted([*(m["graphs"][g]["file"] for g in m["graphs"]),
                                                            "manifest.json"])


def test_build_fp32_sets_no_precision_flags(onnx_dir, tmp_path, fake_trt):
    out = T.build_trt(onnx_dir, tmp_path / "trt", gpu=GPU)
    for c in fake_trt.builds().values():
        assert c[2] == frozenset() and c[3] == {}  # TF32 cleared: exact float32
    assert all(layer.precision is None for layer in fake_trt.networks["decoder.onnx"].layers)
    assert read_manifest(out)["tensorrt"]["precision_mode"] == "typed"


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
    # TensorRT 11: no FP16 flag, strongly typed only
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTRT(version="11.1.0", strongly_typed_only=True))
    write_manifest(onnx_dir, _manifest())
    with pytest.raises(EngineError, match="strongly typed"):
        T.build_trt(onnx_dir, tmp_path / "a", precision="fp16", gpu=GPU)


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


# ---------------------------------------------------------------- without TensorRT: the script

def test_script_without_tensorrt_one_line_exit_2(onnx_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    sys.path.insert(0, str(REPO / "export"))
    try:
        import build_trt
    finally:
        sys.path.pop(0)
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
    with pytest.raises(EngineError, match="CUDA"):
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
