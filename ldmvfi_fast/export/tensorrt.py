"""Build TensorRT engines (``encoder``, ``unet_step``, ``decoder``) from an ONNX engine folder.

``build_trt(onnx_dir, out_dir, precision=...)`` parses each ``*.onnx`` graph of a folder made
by :func:`ldmvfi_fast.export.onnx.export_onnx` with TensorRT's ONNX parser, builds one
serialized engine per sub-model with the TensorRT 10 or 11 Python API (no shell strings) and writes
them, with a ``manifest.json`` of runtime ``tensorrt``, into ``out_dir``;
:class:`~ldmvfi_fast.runtime.tensorrt.TrtBackbone` runs them.

* **Profiles**: one optimisation profile per sub-model, from the ONNX manifest's
  ``profiles`` (TensorRT-style ``{input: {min, opt, max}}``), or from frame sizes given by
  the user (:func:`parse_profile`) checked against the sizes the graphs accept.
* **Engine key**: sha256 over the ONNX bytes (and external-data files), the TensorRT
  version, the GPU (name + compute capability), the precision, the precision policy (version
  and islands), the graph's profile and the plugin library's bytes (:func:`engine_key`). It is in
  the engine's file name and the manifest; the runtime recomputes it and refuses an engine built for anything else.
* **Precision** (``fp32``, ``fp16``, ``bf16``; default: the ONNX folder's, from its manifest's
  ``dtype``). The TensorRT major version decides how (:func:`_precision_mode`):

  - ``typed``: the graph builds in the dtypes written in it (a strongly typed network). Always
    on TensorRT 11, which has nothing else (no FP16/BF16 builder flags, no
    OBEY_PRECISION_CONSTRAINTS, no ``ILayer.precision`` / ``set_output_type``; its
    ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is deprecated and ignored): ``--precision``
    must be the folder's, else the build is refused with the export command that makes the
    graphs wanted (``export_onnx.py --dtype float16``). On TensorRT 10: fp32 from a float32
    folder, and a float16 / bfloat16 folder at its own precision (the exporter wrote the
    float32 islands as ``Cast`` nodes).
  - ``constraints`` (TensorRT 10 only): a float32 folder at fp16/bf16: the FP16/BF16 builder
    flag, ``OBEY_PRECISION_CONSTRAINTS`` and ``layer.precision`` / ``set_output_type(float32)``
    on the layers of the precision policy's islands (:mod:`ldmvfi_fast.precision`; graph
    patterns in :func:`fp32_nodes`, only the islands :func:`~ldmvfi_fast.precision.keeps_fp32`
    says are on).

  The build manifest records the precision, the mode, the TensorRT major version and the
  policy (the ONNX manifest's for typed builds, :func:`ldmvfi_fast.precision.describe` for
  constraint builds); the engine key includes that record (version and islands).
* Engines are built with ``BuilderFlag.TF32`` cleared (TensorRT enables TF32 by default): the
  float32 layers (all of an fp32 engine, the islands of a half one) compute in float32.
* **Timing cache**: read from and written back to ``timing_cache`` (atomically).
* **Plugins**: ``plugins`` (the library built by ``CMakeLists.txt`` with
  ``-DTENSORRT_ROOT``) is loaded into TensorRT's plugin registry before parsing.

``import tensorrt`` happens only in :func:`import_tensorrt`; everything else here (profiles,
keys, the fp32 layer list, names, manifest) is plain Python and tested without TensorRT.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path

from .. import __version__, dtypes, formats, precision as _policy
from .._atomic import write_bytes_atomic
from .._tensorrt import (  # noqa: F401 - part of this module's interface too
    describe,
    engine_key,
    expected_key,
    file_digest,
    gpu_identity,
    import_tensorrt,
    load_plugins,
    make_logger,
    trt_major,
    trt_version,
)
from ..errors import EngineError, OptionError
from ..manifest import (
    GRAPHS,
    check_engine_target,
    read_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)

__all__ = [
    "PLUGIN_DOMAIN",
    "PLUGIN_OPS",
    "PRECISIONS",
    "build_trt",
    "default_out_dir",
    "engine_file_name",
    "engine_key",
    "file_digest",
    "folder_precision",
    "fp32_nodes",
    "gpu_identity",
    "import_tensorrt",
    "load_plugins",
    "onnx_digest",
    "parse_profile",
    "profiles_from_manifest",
    "trt_major",
    "trt_version",
]

#: the registry's entry of this builder (:mod:`ldmvfi_fast.formats`) and of the folders it builds from
FORMAT = formats.for_module(__name__)
ONNX = formats.by_format("onnx")
PRECISIONS = tuple(dtypes.SHORT.values())
#: engine precision -> ONNX dtype of a graph in that precision (the manifest's ``dtype``)
PRECISION_DTYPES = {v: k for k, v in dtypes.SHORT.items()}
DTYPE_PRECISIONS = dict(dtypes.SHORT)
#: ops of the ``ldmvfi_fast`` ONNX domain (``custom_ops="domain"``) that the plugins implement
PLUGIN_OPS = ("DSepConv", "DecoderOutput", "MaxViTAttention")
PLUGIN_DOMAIN = "ldmvfi_fast"
#: plugin ops of the ``dsepconv`` island (kept float32 whole: the island is inside them)
FP32_PLUGIN_OPS = ("DSepConv", "DecoderOutput")
ENGINE_SUFFIX = ".engine"
_SIDES = ("min", "opt", "max")

# ---- how the islands' ONNX ops (ldmvfi_fast.precision.ISLANDS[...].onnx_ops) extend to their layers
#: elementwise / index arithmetic followed backwards from Floor and from gather indices
_COORD_BACK = {"Add", "Sub", "Mul", "Div", "Floor", "Ceil", "Round", "Clip", "Min", "Max", "Neg", "Cast",
               "CastLike", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Expand", "Concat", "Slice",
               "Transpose", "Range", "Where"}
#: data-movement ops whose first input is data and the rest shapes / axes (followed on input 0 only)
_DATA_INPUT0 = {"Unsqueeze", "Squeeze", "Reshape", "Expand", "Slice", "Transpose"}
#: arithmetic on coordinates followed forwards (fractions, 1 - fraction, their products)
_COORD_FWD = {"Add", "Sub", "Mul", "Clip", "Min", "Max", "Cast", "CastLike", "Identity", "Neg", "Floor"}
#: gather ops: which inputs are indices
_GATHERS = {"Gather": (1,), "GatherElements": (1,), "GatherND": (1,)}
#: from the gathered samples forwards: the weighted K x K accumulation, the mask blend and the
#: residual sum (the decoder's output stage; nothing but data movement and arithmetic follows)
_SAMPLE_FWD = {"Add", "Sub", "Mul", "Div", "Sum", "ReduceSum", "Cast", "CastLike", "Identity", "Neg", "Clip",
               "Min", "Max", "Unsqueeze", "Squeeze", "Reshape", "Expand", "Concat", "Slice", "Transpose"}
#: ops between a Softmax and the score MatMul that feeds it
_SOFTMAX_BACK = {"Add", "Mul", "Div", "Sub", "Cast", "CastLike", "Reshape", "Transpose", "Identity"}
#: ops between a Softmax and the ``attn @ v`` MatMul it feeds
_SOFTMAX_FWD = {"Cast", "CastLike", "Reshape", "Transpose", "Identity"}
#: codebook distances |z|^2 + |e|^2 - 2 z.e back from the ArgMin to the z.e MatMul
_DIST_BACK = {"Add", "Sub", "Mul", "Neg", "Pow", "ReduceSum", "Cast", "CastLike", "Identity", "Unsqueeze",
              "Squeeze", "Reshape", "Transpose"}
#: the phase t * freq back from Cos / Sin (t's Cast included)
_PHASE_BACK = {"Mul", "Div", "Cast", "CastLike", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Expand",
               "Slice", "Exp", "Range"}


# ---------------------------------------------------------------- profiles

def parse_profile(items: list[str] | None) -> dict:
    """``--profile`` values (``min=HxW``, ``opt=HxW``, ``max=HxW``, ``batch=MIN,OPT,MAX``) as a dict
    ``{"min": (h, w), ..., "batch": (b0, b1, b2)}``; :class:`OptionError` on a malformed one."""
    out: dict = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        key = key.strip()
        try:
            if not sep:
                raise ValueError
            if key in _SIDES:
                h, w = (int(v) for v in val.lower().split("x"))
                if h <= 0 or w <= 0:
                    raise ValueError
                out[key] = (h, w)
            elif key == "batch":
                b = tuple(int(v) for v in val.split(","))
                if len(b) != 3 or min(b) < 1:
                    raise ValueError
                out[key] = b
            else:
                raise ValueError
        except ValueError:
            raise OptionError(f"--profile {item!r}: expected min=HxW, opt=HxW, max=HxW (frame sizes) or "
                              "batch=MIN,OPT,MAX") from None
    return out


def _padded(h: int, w: int, unit: int) -> tuple[int, int]:
    from ..padding import padded_size

    return padded_size(int(h), int(w), "minimal", unit)


def _shape_of(desc: dict, H: int, W: int, batch: int) -> list[int]:
    s = []
    for sym in desc["shape"]:
        if isinstance(sym, int):
            s.append(sym)
        elif sym == "batch":
            s.append(batch)
        else:
            base, _, div = sym.partition("/")
            side = H if base == "H" else W if base == "W" else None
            if side is None:
                raise EngineError(f"input {desc['name']}: unknown axis {sym!r} in the manifest")
            s.append(side // int(div) if div else side)
    return s


def profiles_from_manifest(manifest: dict, overrides: dict | None = None) -> dict[str, dict[str, dict]]:
    """``{graph: {input: {"min", "opt", "max": shape}}}``: the ONNX manifest's profiles, or, for
    the sides given in ``overrides`` (:func:`parse_profile`), shapes made from those frame
    sizes (padded as the pipeline pads them). :class:`OptionError` when a size is outside
    what the graphs accept or min <= opt <= max does not hold."""
    overrides = overrides or {}
    s = manifest["sizes"]
    unit = manifest["pad_unit"]
    out: dict[str, dict[str, dict]] = {}
    if overrides:
        frames = {}
        for side in _SIDES:
            if side in overrides:
                h, w = _padded(*overrides[side], unit)
                if not (s["min_height"] <= h <= s["max_height"] and s["min_width"] <= w <= s["max_width"]):
                    raise OptionError(
                        f"--profile {side}={overrides[side][0]}x{overrides[side][1]} (padded {h}x{w}) is outside "
                        f"the sizes the ONNX graphs accept: heights {s['min_height']}..{s['max_height']}, widths "
                        f"{s['min_width']}..{s['max_width']} (export them again with a larger max size)")
                frames[side] = (h, w)
        batch = overrides.get("batch")
        if batch is not None and not (batch[0] <= batch[1] <= batch[2] <= s["max_batch"]):
            raise OptionError(f"--profile batch={','.join(map(str, batch))}: need 1 <= min <= opt <= max <= "
                              f"{s['max_batch']} (the graphs' largest batch)")
    for g in GRAPHS:
        spec = manifest["graphs"][g]
        base = spec.get("profiles")
        if base is None and not overrides:
            raise EngineError(f"the manifest has no shape profiles for {g}: give --profile min=HxW opt=HxW max=HxW")
        prof = {}
        for desc in spec["inputs"]:
            name = desc["name"]
            shapes = {k: list(v) for k, v in (base or {}).get(name, {}).items()}
            if overrides:
                # frame size and batch of each side: the override, else what the base profile says
                for i, side in enumerate(_SIDES):
                    H, W, b = _side_facts(spec, base, side, s)
                    if side in frames:
                        H, W = frames[side]
                    if overrides.get("batch"):
                        b = overrides["batch"][i]
                    shapes[side] = _shape_of(desc, H, W, b)
            if set(shapes) != set(_SIDES):
                raise EngineError(f"the manifest's profile of {g}.{name} lacks min/opt/max shapes")
            prof[name] = shapes
        _check_order(g, prof)
        out[g] = prof
    return out


def _side_facts(spec: dict, base: dict | None, side: str, sizes: dict) -> tuple[int, int, int]:
    """(H, W, batch) of one side of a base profile, read back from the inputs' named axes
    (``H/32`` of size n means H = 32 n)."""
    found: dict[str, int] = {}
    for desc in spec["inputs"] if base else []:
        shp = base.get(desc["name"], {}).get(side)
        for sym, n in zip(desc["shape"], shp or []):
            if isinstance(sym, str):
                b, _, div = sym.partition("/")
                found.setdefault(b, int(n) * (int(div) if div else 1))
    default = {"min": (sizes["min_height"], sizes["min_width"], 1),
               "opt": (sizes["min_height"], sizes["min_width"], 1),
               "max": (sizes["max_height"], sizes["max_width"], sizes["max_batch"])}[side]
    return found.get("H", default[0]), found.get("W", default[1]), found.get("batch", default[2])


def _check_order(graph: str, prof: dict) -> None:
    for name, sh in prof.items():
        lo, op, hi = (sh[k] for k in _SIDES)
        if not (len(lo) == len(op) == len(hi) and all(a <= b <= c for a, b, c in zip(lo, op, hi))):
            raise OptionError(f"profile of {graph}.{name}: need min <= opt <= max on every axis, got "
                              f"{lo} / {op} / {hi}")


# ---------------------------------------------------------------- keys and names

def _external_files(path: Path) -> list[Path]:
    """External-data files an ONNX model refers to (sorted, unique)."""
    try:
        import onnx
    except ImportError:  # without onnx: every other file of the folder with the graph's stem
        return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.stem) and p != path
                      and p.suffix not in (".onnx", ENGINE_SUFFIX) and p.is_file())
    model = onnx.load(str(path), load_external_data=False)
    names = set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in t.external_data if e.key == "location")
    return [path.parent / n for n in sorted(names)]


def onnx_digest(path: str | Path) -> str:
    """sha256 over an ONNX file and the external-data files it names (names and bytes)."""
    path = Path(path)
    h = hashlib.sha256()
    for p in [path, *_external_files(path)]:
        if not p.is_file():
            raise EngineError(f"{path.name} refers to the external data file {p.name}, which is missing")
        h.update(p.name.encode() + b"\0" + file_digest(p).encode() + b"\0")
    return "sha256:" + h.hexdigest()


def engine_file_name(graph: str, precision: str, key: str) -> str:
    """``<graph>.<precision>.<first 16 hex of the key>.engine``."""
    return f"{graph}.{precision}.{key[:16]}{ENGINE_SUFFIX}"


def default_out_dir(onnx_dir: str | Path, precision: str) -> Path:
    d = Path(onnx_dir)
    return d.parent / f"{d.name}.trt-{precision}"


# ---------------------------------------------------------------- float32 layers

def fp32_nodes(model, islands=None) -> dict[str, str]:
    """ONNX node name -> precision-policy island name, for the nodes of a float32 graph kept in
    float32 by a TensorRT 10 fp16 / bf16 build (``constraints`` mode).

    ``model``: an ``onnx.ModelProto`` (or its graph). ``islands``: the island names to mark
    (default: those :func:`ldmvfi_fast.precision.keeps_fp32` says are on). Each island's
    :attr:`~ldmvfi_fast.precision.Island.onnx_ops` are the seeds; how a seed extends to the
    island's other nodes is per island (below; an island without a walk here marks its ops
    only, one without ops - ``io``, ``sampler`` - has nothing in a graph to mark):

    * ``dsepconv``: every Floor and the index input of every GatherElements, followed backwards
      through index arithmetic (Add, Sub, Mul, Clip, Min, Max, Cast, reshapes...) up to a
      non-arithmetic op (the Conv that makes the offsets), then forwards through the
      arithmetic whose every input is a coordinate or a constant (fractions ``x - floor(x)``,
      ``1 - fraction`` and their products); and forwards from the gathered samples through
      arithmetic and data movement (the weighted accumulation, the mask blend, the residual
      sum). In a ``domain`` export: the ``ldmvfi_fast`` DSepConv / DecoderOutput nodes;
    * ``softmax``: every Softmax, its inputs back to the score MatMul (included) and the
      ``attn @ v`` MatMul it feeds;
    * ``quantizer``: every ArgMin and its distance arithmetic back to the ``z . e`` MatMul;
    * ``timestep_embedding``: Cos / Sin and the phase ``t * freq`` back to ``t``;
    * ``groupnorm``, ``layernorm``: the normalisation nodes.
    """
    graph = getattr(model, "graph", model)
    nodes = list(graph.node)
    producer = {o: n for n in nodes for o in n.output if o}
    consts = {t.name for t in graph.initializer} | {o for n in nodes if n.op_type == "Constant" for o in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    keep: dict[str, str] = {}

    def back(start: list[str], allowed: set[str], reason: str, stop_after: set[str] = frozenset()) -> None:
        stack = list(start)
        while stack:
            name = stack.pop()
            n = producer.get(name)
            if n is None or n.name in keep or n.op_type == "Constant":
                continue
            if n.op_type in stop_after:
                keep[n.name] = reason
                continue
            if n.op_type not in allowed:
                continue
            keep[n.name] = reason
            ins = n.input[:1] if n.op_type in _DATA_INPUT0 else n.input
            stack.extend(i for i in ins if i)

    def forward(start: list[str], allowed: set[str], reason: str, stop_after: set[str] = frozenset()) -> None:
        frontier = list(start)
        while frontier:
            t = frontier.pop()
            for c in consumers.get(t, []):
                if c.name in keep or (c.op_type not in allowed and c.op_type not in stop_after):
                    continue
                keep[c.name] = reason
                if c.op_type not in stop_after:
                    frontier.extend(o for o in c.output if o)

    def of_type(ops) -> list:
        return [n for n in nodes if n.op_type in ops and n.domain in ("", "ai.onnx")]

    def dsepconv(name: str, ops: tuple[str, ...]) -> None:
        seeds, samples = [], []
        for n in of_type(ops):
            if n.op_type in _GATHERS:  # index inputs: coordinates; the output: samples
                seeds.extend(n.input[i] for i in _GATHERS[n.op_type] if i < len(n.input))
                samples.extend(n.output)
            else:  # Floor (and any other coordinate op the policy names)
                keep[n.name] = name
                seeds.extend(n.input)
        back(seeds, _COORD_BACK, name)
        # forwards: arithmetic on coordinates and constants only
        coord = {o for n in nodes if keep.get(n.name) == name for o in n.output}
        frontier = list(coord)
        while frontier:
            t = frontier.pop()
            for c in consumers.get(t, []):
                if c.name in keep or c.op_type not in _COORD_FWD:
                    continue
                if all((not i) or i in coord or i in consts for i in c.input):
                    keep[c.name] = name
                    for o in c.output:
                        coord.add(o)
                        frontier.append(o)
        forward(samples, _SAMPLE_FWD, name)
        for n in nodes:
            if n.domain == PLUGIN_DOMAIN and n.op_type in FP32_PLUGIN_OPS:
                keep[n.name] = name

    def softmax(name: str, ops: tuple[str, ...]) -> None:
        for n in of_type(ops):
            keep[n.name] = name
            back(list(n.input), _SOFTMAX_BACK, name, stop_after={"MatMul", "Gemm"})
            forward(list(n.output), _SOFTMAX_FWD, name, stop_after={"MatMul"})

    def quantizer(name: str, ops: tuple[str, ...]) -> None:
        for n in of_type(ops):
            keep[n.name] = name
            back(list(n.input), _DIST_BACK, name, stop_after={"MatMul", "Gemm"})

    def timestep_embedding(name: str, ops: tuple[str, ...]) -> None:
        for n in of_type(ops):
            keep[n.name] = name
            back(list(n.input), _PHASE_BACK, name)

    def ops_only(name: str, ops: tuple[str, ...]) -> None:
        for n in of_type(ops):
            keep.setdefault(n.name, name)

    walkers = {"dsepconv": dsepconv, "softmax": softmax, "quantizer": quantizer,
               "timestep_embedding": timestep_embedding}
    names = [n for n in _policy.ISLANDS if _policy.keeps_fp32(n)] if islands is None else list(islands)
    for name in names:
        island = _policy.ISLANDS[name]  # KeyError on an unknown island
        if island.onnx_ops or name in walkers:
            walkers.get(name, ops_only)(name, island.onnx_ops)
    return keep


_LAYER_META = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def _layer_nodes(layer) -> set[str]:
    """ONNX node names a parsed TensorRT layer came from: the parser's metadata
    (``[ONNX Layer: name]``), else the layer's name and the names of its output tensors."""
    meta = getattr(layer, "metadata", "") or ""
    names = set(_LAYER_META.findall(meta))
    if not names:
        names.add(layer.name)
        names.update(layer.get_output(i).name for i in range(layer.num_outputs))
    return names


def constrain_precision(trt, network, keep: dict[str, str], onnx_outputs: dict[str, str]) -> dict[str, int]:
    """TensorRT 10 only: mark the layers of ``network`` made from the ``keep`` nodes float32
    (``layer.precision`` and ``set_output_type`` on their floating outputs; TensorRT 11 has
    neither); returns layer counts per island.
    ``onnx_outputs``: ONNX tensor name -> node name (to match layers by output tensor)."""
    floating = {trt.DataType.FLOAT, trt.DataType.HALF, getattr(trt.DataType, "BF16", trt.DataType.HALF)}
    counts: dict[str, int] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        names = _layer_nodes(layer)
        hits = [keep[n] for n in names if n in keep]
        hits += [keep[onnx_outputs[n]] for n in names if n in onnx_outputs and onnx_outputs[n] in keep]
        if not hits:
            continue
        outs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floating]
        if not outs:
            continue  # integer index arithmetic: nothing to keep
        layer.precision = trt.DataType.FLOAT
        for j in outs:
            layer.set_output_type(j, trt.DataType.FLOAT)
        counts[hits[0]] = counts.get(hits[0], 0) + 1
    return counts


# ---------------------------------------------------------------- TensorRT calls

def folder_precision(manifest: dict) -> str:
    """The engine precision of an ONNX folder's graphs (its manifest's ``dtype``)."""
    dtype = manifest.get("dtype")
    if dtype not in DTYPE_PRECISIONS:
        raise EngineError(f"the ONNX manifest's dtype is {dtype!r}; expected one of {sorted(DTYPE_PRECISIONS)}")
    return DTYPE_PRECISIONS[dtype]


def _export_command(dtype: str) -> str:
    return f"python export/export_onnx.py --ckpt CKPT --dtype {dtype} --out DIR"


def _precision_mode(trt, precision: str, onnx_dtype: str, src: str | Path = "the ONNX folder") -> str:
    """How ``precision`` engines are built from graphs of ``onnx_dtype``: ``"typed"`` (the graph's
    dtypes are the engine's: a strongly typed network) or ``"constraints"`` (TensorRT 10 only:
    a float32 graph, the FP16/BF16 builder flag and per-layer float32 constraints on the
    policy's islands). :class:`OptionError` (one line, naming the export command) when the
    graphs cannot give ``precision``: on TensorRT 11 any precision other than the graphs',
    on TensorRT 10 any other than the graphs' from a float16 / bfloat16 folder."""
    want = PRECISION_DTYPES[precision]
    if onnx_dtype == want:
        return "typed"
    have = DTYPE_PRECISIONS.get(onnx_dtype, onnx_dtype)
    major = trt_major(trt)
    if major >= 11:
        raise OptionError(
            f"the ONNX graphs in {src} are {onnx_dtype} and TensorRT {trt_version(trt)} builds a graph in the dtypes "
            f"written in it (strongly typed only: no FP16/BF16 builder flags): build them at --precision {have}, "
            f"or for {precision} engines export {want} graphs first: {_export_command(want)}")
    if onnx_dtype != "float32":
        raise OptionError(
            f"the ONNX graphs in {src} are {onnx_dtype} (typed: TensorRT builds them as written): build them at "
            f"--precision {have}, or for {precision} engines export {want} graphs first: {_export_command(want)}")
    flag = {"fp16": "FP16", "bf16": "BF16"}[precision]
    if not hasattr(trt.BuilderFlag, flag) or not hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"):
        raise EngineError(f"TensorRT {trt_version(trt)} has no BuilderFlag.{flag} / OBEY_PRECISION_CONSTRAINTS: "
                          f"export {want} graphs ({_export_command(want)}) and build those")
    return "constraints"


def _build_one(trt, logger, onnx_path: Path, *, precision: str, mode: str, profile: dict, cache,
               workspace_gb: float | None, refittable: bool, keep: dict[str, str], onnx_outputs: dict[str, str]):
    builder = trt.Builder(logger)
    flags = 0
    if mode == "typed" and trt_major(trt) < 11:
        # TensorRT 10: strongly typed on request (11: always; its STRONGLY_TYPED flag is deprecated,
        # ignored, and has another value - 0 - than 10's, 1)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT's ONNX parser failed on {onnx_path.name}: {errs or 'no error text'}")
    config = builder.create_builder_config()
    if workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if refittable:
        config.set_flag(trt.BuilderFlag.REFIT)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: float32 layers compute in float32
    counts: dict[str, int] = {}
    if mode == "constraints":  # TensorRT 10 only (_precision_mode)
        config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        counts = constrain_precision(trt, network, keep, onnx_outputs)
    prof = builder.create_optimization_profile()
    for name, sh in profile.items():
        prof.set_shape(name, tuple(sh["min"]), tuple(sh["opt"]), tuple(sh["max"]))
    config.add_optimization_profile(prof)
    config.set_timing_cache(cache, False)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT could not build an engine from {onnx_path.name} at {precision} "
                          "(run with -v for TensorRT's log)")
    return bytes(memoryview(plan)), counts, time.perf_counter() - t0


_FLOATS = ("float32", "float16", "bfloat16")


def _io_dtype(manifest: dict) -> str | None:
    """The dtype of the graphs' floating inputs and outputs: the manifest's ``io_dtype`` (checked
    against the tensor descriptions, which the runtime allocates by), else what those say
    (folders exported before ``io_dtype`` was recorded; ``None`` if they disagree)."""
    found = {d["dtype"] for g in GRAPHS for d in manifest["graphs"][g]["inputs"] + manifest["graphs"][g]["outputs"]
             if d["dtype"] in _FLOATS}
    io = manifest.get("io_dtype")
    if io is None:
        return found.pop() if len(found) == 1 else None
    if found - {io}:
        raise EngineError(f"the ONNX manifest says io_dtype {io} but its graphs' tensors are {sorted(found)}: "
                          "export the folder again")
    return io


def build_trt(onnx_dir: str | Path, out_dir: str | Path | None = None, *, precision: str | None = None,
              profile: dict | None = None, timing_cache: str | Path | None = None,
              plugins: str | Path | None = None, refittable: bool = False, workspace_gb: float | None = None,
              overwrite: bool = False, gpu: dict | None = None) -> Path:
    """Build TensorRT engines from the ONNX engine folder ``onnx_dir`` into ``out_dir``.

    Args:
        precision: ``fp32``, ``fp16`` or ``bf16``; default (``None``): the ONNX graphs' own
            (the manifest's ``dtype``). See the module doc for how each TensorRT version builds it.
        profile: frame-size overrides of the manifest's profiles (:func:`parse_profile`).
        timing_cache: a timing-cache file, read if present and written back.
        plugins: the ldmvfi_fast TensorRT plugin library (needed by ``domain`` exports).
        refittable: build with ``BuilderFlag.REFIT`` (weights can be replaced later).
        workspace_gb: the builder's workspace limit.
        overwrite: replace the engine files and manifest in a non-empty ``out_dir``; engines
            whose key is unchanged are kept, not rebuilt.
        gpu: the GPU identity for the keys (default: :func:`gpu_identity` of the current device).

    Returns the output folder. Engines are written to temporary names and renamed; the
    manifest is written last.
    """
    if precision is not None and precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if workspace_gb is not None and not workspace_gb > 0:
        raise OptionError(f"--workspace must be a positive number of GB, got {workspace_gb}")
    trt = import_tensorrt()  # first: without it nothing below can be used
    src = Path(onnx_dir)
    m = read_manifest(src)
    if m["runtime"] != ONNX.runtime:
        raise EngineError(f"{src} holds {m['runtime']!r} engines; build_trt needs an ONNX folder "
                          f"({ONNX.made_by} or export/export_onnx.py)")
    mode_ops = m.get("custom_ops_mode", "decompose")
    if mode_ops == "domain" and plugins is None:
        raise OptionError(f"the graphs in {src} use the {PLUGIN_DOMAIN} ONNX domain: give the plugin library "
                          "(--plugins PATH, built by CMakeLists.txt with -DTENSORRT_ROOT=...)")
    if precision is None:
        precision = folder_precision(m)
    mode = _precision_mode(trt, precision, m["dtype"], src)
    io_dtype = _io_dtype(m)
    # the policy the engines follow: the one the exporter wrote into typed graphs (absent in
    # folders exported before it was recorded), or the islands constrained here
    policy = m.get("precision_policy") if mode == "typed" else _policy.describe()
    out = Path(out_dir) if out_dir is not None else default_out_dir(src, precision)
    profiles = profiles_from_manifest(m, profile)
    gpu = gpu or gpu_identity()
    version = trt_version(trt)
    major = trt_major(trt)
    onnx_paths = {g: src / m["graphs"][g]["file"] for g in GRAPHS}
    for p in onnx_paths.values():
        if not p.is_file():
            raise EngineError(f"ONNX graph missing: {p} (named in the manifest)")
    logger = make_logger(trt)
    plugins_digest = load_plugins(trt, plugins, logger)
    digests = {g: onnx_digest(p) for g, p in onnx_paths.items()}
    keys = {g: engine_key(onnx_digest=digests[g], trt_version=version, gpu=gpu, precision=precision,
                          profiles=profiles[g], plugins_digest=plugins_digest, policy=policy)
            for g in GRAPHS}
    files = {g: engine_file_name(g, precision, keys[g]) for g in GRAPHS}
    check_engine_target(out, overwrite, files.values())

    cache_bytes = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_bytes = Path(timing_cache).read_bytes()
    builder_config = trt.Builder(logger).create_builder_config()
    cache = builder_config.create_timing_cache(cache_bytes)

    graphs, record = {}, {}
    created = not out.exists()
    out.mkdir(exist_ok=True)
    written: list[Path] = []
    try:
        for g in GRAPHS:
            target = out / files[g]
            spec = m["graphs"][g]
            if target.is_file():  # same key: same ONNX, TensorRT, GPU, precision, policy, profile, plugins
                log.info("%s: engine %s is up to date (same key), kept", g, target.name)
                counts, secs, reused = {}, 0.0, True
            else:
                keep, outputs = {}, {}
                if mode == "constraints":
                    import onnx

                    model = onnx.load(str(onnx_paths[g]), load_external_data=False)
                    keep = fp32_nodes(model)  # the islands precision.keeps_fp32 says are on
                    outputs = {o: n.name for n in model.graph.node for o in n.output}
                log.info("%s: building %s engine from %s (%d layers kept float32)", g, precision,
                         onnx_paths[g].name, len(keep))
                plan, counts, secs = _build_one(trt, logger, onnx_paths[g], precision=precision, mode=mode,
                                                profile=profiles[g], cache=cache, workspace_gb=workspace_gb,
                                                refittable=refittable, keep=keep, onnx_outputs=outputs)
                write_bytes_atomic(target, plan)
                written.append(target)
                reused = False
            graphs[g] = {"file": files[g], "inputs": spec["inputs"], "outputs": spec["outputs"],
                         "profiles": profiles[g]}
            record[g] = {"key": keys[g], "onnx": spec["file"], "onnx_digest": digests[g], "build_s": round(secs, 2),
                         "fp32_layers": counts, "reused": reused}
        if timing_cache is not None:
            write_bytes_atomic(Path(timing_cache), bytes(memoryview(cache.serialize())))
        from ..sampling import ddim_tables

        manifest = {k: v for k, v in m.items() if k not in ("graphs", "exporter", "onnx_optimized")}
        manifest.update({
            # the DDIM coefficient tables the C++ application samples with (export/cpp)
            "ddim": m.get("ddim") or ddim_tables(m["alphas_cumprod"]),
            "runtime": FORMAT.runtime, "toolkit_version": __version__, "graphs": graphs, "device": "cuda",
            "tensorrt": {"version": version, "major": major, "gpu": gpu, "precision": precision,
                         "precision_mode": mode, "precision_policy": policy,
                         "refittable": bool(refittable), "workspace_gb": workspace_gb,
                         "plugins": {"file": Path(plugins).name, "digest": plugins_digest} if plugins else None,
                         "source": {"folder": str(src.resolve()), "custom_ops_mode": mode_ops,
                                    "opset": m.get("opset"), "dtype": m["dtype"], "io_dtype": io_dtype,
                                    "precision_policy": m.get("precision_policy")},
                         "engines": record, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        })
        write_manifest(out, manifest)
    except BaseException:
        for p in written:  # only what this call wrote
            p.unlink(missing_ok=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    log.info("wrote %s", out)
    return out
