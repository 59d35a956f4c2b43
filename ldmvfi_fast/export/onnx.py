"""Export the three sub-models to ONNX (``encoder.onnx``, ``unet_step.onnx``, ``decoder.onnx``).

``export_onnx(model, out_dir)`` writes the graphs and a ``manifest.json`` (the schema of
:mod:`.manifest`, runtime ``onnxruntime``, plus ``opset``, ``custom_ops_mode``, the exporter
used and TensorRT-style min/opt/max shape profiles per graph input);
:class:`~ldmvfi_fast.runtime.onnxruntime.OrtBackbone` runs the pipeline from them.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (needs ``onnxscript``) over the
``torch.export`` programs of :func:`.specs.export_specs` (:func:`.specs.export_program`),
opsets 18-23 (20 by default). One graph per sub-model keeps batch, height and width
symbolic: sides of 1 to ``max_units`` pad units (256 to 4096 pixels by default), batch 1-64.
The dynamo exporter can freeze a dimension silently, so every export is checked:
``onnx.checker.check_model(full_check=True)`` (strict shape inference), the graph inputs
and outputs must keep the named axes symbolic, and with ``verify=True`` (default) each
graph runs at a second size and batch (one unit high, two wide, batch 1: not the example's)
and is compared with PyTorch.

Custom ops (``custom_ops=``):

* ``"decompose"``: DSepConv and the fused decoder output are traced as the vectorised
  formulation of :mod:`ldmvfi_fast.ops.dsepconv_export` (one flattened ``Gather`` per
  bilinear corner and row of 5 taps), MaxViT attention as the reference (MatMul, Softmax,
  ...): standard ONNX ops that any ONNX runtime, and TensorRT without plugins, can run.
* ``"domain"``: DSepConv and the decoder output become single nodes ``DSepConv`` /
  ``DecoderOutput`` of the operator domain ``ldmvfi_fast`` (version 1), for TensorRT
  plugins of those names; the exporter rules and the contract live beside the ops
  (:mod:`ldmvfi_fast.ops._onnx`), which also registers their ``onnx.defs`` schemas (for the
  checker's shape inference) and ``onnx.reference`` implementations. The trace keeps the
  ops as ``torch.ops.ldmvfi_fast.*`` (needs the compiled extension). ONNX Runtime cannot
  run these graphs (:class:`~ldmvfi_fast.runtime.onnxruntime.OrtBackbone` refuses them);
  ``verify`` runs the graphs that contain domain nodes with ``onnx.reference`` instead.

Cost (tiny model, 2 shared CPU cores): see :data:`COSTS_NOTE`. ``optimize=True``
(onnxscript's optimizer: constant folding, dead code, ...) is off by default: ONNX Runtime
and TensorRT do their own graph optimisation when the session / engine is built.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
import warnings
from pathlib import Path

import torch

from .. import precision
from ..errors import EngineError, OptionError
from ..models.ldmvfi import LDMVFI
from ..ops import export_formulation, use_backend
from ..padding import padded_size
from .. import formats
from .._atomic import staged_folder
from ..manifest import MANIFEST_NAME, check_engine_target, describe_tensor, manifest_header, write_manifest
from .specs import MAX_BATCH, MIN_UNITS, ExportSpec, _sym, export_program, export_specs

log = logging.getLogger(__name__)

__all__ = [
    "CUSTOM_OPS_MODES",
    "DEFAULT_PROFILE",
    "ONNX_FILES",
    "OPSETS",
    "check_graph",
    "export_graph",
    "export_onnx",
    "onnx_manifest",
    "shape_profiles",
]

#: the registry's entry of this exporter (:mod:`ldmvfi_fast.formats`): the runtime it writes, its files
FORMAT = formats.for_module(__name__)
FORMAT_RUNTIME = FORMAT.runtime
ONNX_FILES = FORMAT.files()
#: opsets the dynamo exporter writes (torch 2.13 + onnxscript 0.7); 20 is its default
OPSETS = range(18, 24)
CUSTOM_OPS_MODES = ("decompose", "domain")
#: frame sizes (height, width) of the shape profiles before padding and clipping: from
#: 256x256 to 4K UHD, optimal at 1080p (padded "minimal": 1280x2048); batch 1..4, optimal 1
DEFAULT_PROFILE = {"min": (256, 256), "opt": (1080, 1920), "max": (2160, 3840), "batch": (1, 1, 4)}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: measured costs, for the docs (tiny config, 2 shared CPU cores, torch 2.13, onnxscript 0.7)
COSTS_NOTE = ("decoder graph, decompose mode: ~13 800 ONNX nodes and minutes to export with the reference "
              "DSepConv (25 taps x 4 corners, twice); the vectorised formulation: see the README numbers")


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise EngineError(f"ONNX export needs the packages onnx and onnxscript ({exc}): "
                          "pip install onnx onnxscript onnxruntime  (or: pip install 'ldmvfi_fast[export]')") from None


def _check_target(out: Path, overwrite: bool) -> None:
    check_engine_target(out, overwrite, ONNX_FILES.values())


def _check_options(opset: int, custom_ops: str, dtype) -> None:
    if custom_ops not in CUSTOM_OPS_MODES:
        raise OptionError(f"custom_ops must be one of {CUSTOM_OPS_MODES}, got {custom_ops!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in OPSETS:
        raise OptionError(f"ONNX opset {opset!r} is not supported: the exporter writes opsets "
                          f"{OPSETS.start}..{OPSETS.stop - 1}")
    if dtype is not None and dtype not in _DTYPES.values():
        raise OptionError(f"dtype must be one of {list(_DTYPES)}, got {dtype}")
    if dtype == torch.bfloat16 and isinstance(opset, int) and opset < 22:
        # measured: opset 20 graphs fail onnx.checker (Conv has no bfloat16 type before opset 22)
        raise OptionError(f"bfloat16 graphs need opset 22 or later (ONNX Conv has no bfloat16 before), got {opset}")


def output_axes(spec: ExportSpec, latent_factor: int) -> dict[str, dict[int, str]]:
    """Named dynamic axes of a spec's outputs (the specs name only the inputs')."""
    if spec.name == "encoder":
        return {n: _sym(latent_factor if n == "z" else 2 ** (int(n[3:]) + 1)) for n in spec.output_names}
    if spec.name == "unet_step":
        return {"eps": _sym(latent_factor)}
    return {"frame": _sym(1)}


def export_graph(spec: ExportSpec, path: str | Path, *, opset: int = 20, optimize: bool = False,
                 custom_ops: str | None = None) -> None:
    """Export one sub-model (a :class:`.specs.ExportSpec`) to an ONNX file with the dynamo
    exporter; batch, height and width stay dynamic as ``spec.dynamic_shapes`` says.

    ``custom_ops``: ``"decompose"`` or ``"domain"`` (see the module doc); None traces the
    custom ops as whatever backend is in scope."""
    _require_onnx()
    table = None
    if custom_ops == "domain":
        from ..ops import _onnx

        table = _onnx.translation_table()
    with warnings.catch_warnings():  # the exporter's chatter about axis renaming and pytree
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        with export_formulation(custom_ops):
            ep = export_program(spec)
        # the exporter warns, per graph, that torchvision's ops (nms, roi_align, ...) are not registered
        registration = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registration.level
        registration.setLevel(logging.ERROR)
        try:
            prog = torch.onnx.export(ep, spec.inputs, dynamo=True, input_names=spec.input_names,
                                     output_names=spec.output_names, opset_version=opset, optimize=optimize,
                                     verbose=False, custom_translation_table=table)
        finally:
            registration.setLevel(level)
    prog.save(str(path))


def check_graph(path: str | Path, spec: ExportSpec, out_axes: dict[str, dict[int, str]] | None = None) -> list[dict]:
    """``onnx.checker`` with full (strict) shape inference, and every named dynamic axis of
    the inputs and outputs still symbolic (not frozen at the example size).

    Returns the outputs described for the manifest (``{"name", "dtype", "shape"}``, dynamic
    axes named as in ``out_axes``), read from the graph.
    """
    import onnx

    from ..ops import _onnx

    _onnx.register_schemas()  # the checker's shape inference then knows the ldmvfi_fast domain ops
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types
        raise EngineError(f"{path} fails onnx.checker: {type(exc).__name__}: {exc}") from None
    model = onnx.load(str(path), load_external_data=False)
    axes = {**(spec.axes or {}), **(out_axes or {})}
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        for ax in (axes.get(vi.name) or {}):
            if ax >= len(dims) or not dims[ax].dim_param:
                raise EngineError(f"{path}: axis {ax} of {vi.name!r} is fixed at "
                                  f"{dims[ax].dim_value if ax < len(dims) else '?'} in the ONNX graph; the exporter "
                                  "froze a dynamic dimension")
    described = []
    for vi in model.graph.output:
        ax = (out_axes or {}).get(vi.name) or {}
        shape = []
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if i in ax:
                shape.append(ax[i])
            elif d.dim_param:
                raise EngineError(f"{path}: axis {i} of output {vi.name!r} is dynamic ({d.dim_param}) but should be "
                                  "fixed")
            else:
                shape.append(int(d.dim_value))
        dt = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        described.append({"name": vi.name, "dtype": "bfloat16" if "bfloat16" in str(dt) else str(dt),
                          "shape": shape})
    return described


def _verify(path: Path, spec: ExportSpec, second: ExportSpec, dtype: torch.dtype, described: list[dict]) -> None:
    """Run the graph at another size and batch than the example's: the output shapes must
    follow the inputs' (a frozen dimension shows here), and in float32 the values must match
    PyTorch. Graphs run in ONNX Runtime (CPU), or with ``onnx.reference`` (float32 only) when
    they contain ``ldmvfi_fast`` domain nodes. float16 graphs are checked for shapes only
    (PyTorch's float16 on CPU is slow), and not run where ONNX Runtime's CPU provider lacks a
    float16 kernel; bfloat16 graphs are not run (numpy has no bfloat16)."""
    import onnx

    from ..ops import _onnx

    at = f"{tuple(second.inputs[0].shape)} (example {tuple(spec.inputs[0].shape)})"
    feeds = {n: t.detach().cpu().numpy() for n, t in zip(second.input_names, second.inputs)
             } if dtype != torch.bfloat16 else None
    domain_ops = _onnx.domain_ops_in(onnx.load(str(path), load_external_data=False))
    if dtype == torch.bfloat16:
        log.warning("%s: bfloat16 graphs are not run here (checked by onnx.checker only)", path.name)
        return
    if domain_ops:
        if dtype != torch.float32:
            log.warning("%s: %s graphs with %s domain nodes are not run here (checked by onnx.checker only)",
                        path.name, dtype, _onnx.DOMAIN)
            return
        from onnx.reference import ReferenceEvaluator

        try:
            got = ReferenceEvaluator(str(path), new_ops=_onnx.reference_ops()).run(None, feeds)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"{path.name} does not run in onnx.reference at {at}: {type(exc).__name__}: "
                              f"{exc}") from None
        _compare(path, spec, second, dtype, described, got, at)
        return
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: %s not run at a second size (verify skipped)", path.name)
        return
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        got = sess.run(None, feeds)
    except Exception as exc:  # noqa: BLE001
        if dtype != torch.float32 and ("NOT_IMPLEMENTED" in str(exc) or "Could not find an implementation" in str(exc)):
            log.warning("%s: not run at a second size: ONNX Runtime's CPU provider lacks a %s kernel (%s)",
                        path.name, dtype, str(exc).splitlines()[0][:200])
            return
        raise EngineError(f"{path.name} does not run in ONNX Runtime at {at}: {type(exc).__name__}: {exc}") from None
    _compare(path, spec, second, dtype, described, got, at)


def _compare(path: Path, spec: ExportSpec, second: ExportSpec, dtype: torch.dtype, described: list[dict],
             got: list, at: str) -> None:
    """Output shapes of a run at the second size vs the manifest's; float32 values vs PyTorch."""
    import numpy as np

    env: dict[str, int] = {}
    for t, ax in ((t, (spec.axes or {}).get(n) or {}) for n, t in zip(second.input_names, second.inputs)):
        for i, sym in ax.items():
            base, _, div = sym.partition("/")
            env.setdefault(base, int(t.shape[i]) * (int(div) if div else 1))
    for desc, g in zip(described, got):
        want = tuple(d if isinstance(d, int) else env[d.partition("/")[0]] // int(d.partition("/")[2] or 1)
                     for d in desc["shape"])
        if tuple(g.shape) != want:
            raise EngineError(f"{path.name}: output {desc['name']} has shape {tuple(g.shape)} at input {at}, "
                              f"expected {want}: the exporter froze a dimension")
    if dtype != torch.float32:
        return
    with torch.no_grad():
        ref = second.module(*second.inputs)
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    # DSepConv floors each tap position: where an offset puts a tap within rounding of a pixel edge
    # at the clamped border, ONNX Runtime and PyTorch pick neighbouring corners (seen: 3 of 2.4 M
    # values, ~3e-3 apart, depending on the random example inputs). The decoder may differ at such
    # isolated values (as tests/test_onnx.py allows); everything else must match within 1e-3.
    for name, g, r in zip(second.output_names, got, ref):
        r = r.float().cpu().numpy()
        isolated = max(4, r.size // 100_000) if second.name == "decoder" else 0
        diff = np.abs(g.astype(np.float32) - r) if r.size else np.zeros(1, np.float32)
        scale = max(1.0, float(np.abs(r).max()) if r.size else 0.0)
        bad = int((~(diff <= 1e-3 * scale)).sum())
        if bad > isolated:
            raise EngineError(f"{path.name}: output {name} differs from PyTorch by {float(diff.max()):.3g} at {at} "
                              f"({bad} values beyond 1e-3 x {scale:.3g})")


def shape_profiles(spec: ExportSpec, *, unit: int, max_units: int,
                   profile: dict | None = None) -> dict[str, dict[str, list[int]]]:
    """TensorRT-style ``{input: {"min", "opt", "max": shape}}`` from frame sizes
    (``DEFAULT_PROFILE``): padded as the pipeline's ``minimal`` padding does, clipped to the
    sizes the graphs accept ([MIN_UNITS, max_units] pad units; batch <= MAX_BATCH)."""
    p = {**DEFAULT_PROFILE, **(profile or {})}
    lo, hi = MIN_UNITS * unit, max_units * unit

    def frame(hw):
        h, w = padded_size(int(hw[0]), int(hw[1]), "minimal", unit)
        return min(max(h, lo), hi), min(max(w, lo), hi)

    sizes = {k: frame(p[k]) for k in ("min", "opt", "max")}
    batches = dict(zip(("min", "opt", "max"), (max(1, min(int(b), MAX_BATCH)) for b in p["batch"])))
    out = {}
    for name, t in zip(spec.input_names, spec.inputs):
        ax = (spec.axes or {}).get(name, {})
        shapes = {}
        for k in ("min", "opt", "max"):
            H, W = sizes[k]
            s = []
            for i, n in enumerate(t.shape):
                sym = ax.get(i)
                if sym is None:
                    s.append(int(n))
                elif sym == "batch":
                    s.append(batches[k])
                else:
                    side = H if sym[0] == "H" else W
                    s.append(side // int(sym.split("/")[1]) if "/" in sym else side)
            shapes[k] = s
        out[name] = shapes
    return out


def onnx_manifest(model: LDMVFI, specs: list[ExportSpec], *, opset: int, custom_ops: str, max_units: int,
                  profile: dict | None = None, optimize: bool = False, outputs: dict | None = None,
                  domain_ops: dict[str, list[str]] | None = None) -> dict:
    """The manifest of an ONNX engine folder for ``model`` (graphs described from ``specs``;
    ``outputs``: graph name -> output descriptions as :func:`check_graph` returns, else the
    sub-models are run on the example inputs to describe them; ``domain_ops``: graph name ->
    op types of the ``ldmvfi_fast`` domain it uses, for ``custom_ops="domain"``)."""
    from ..ops import _onnx

    unit = model.cfg.min_pad_unit()
    graphs = {}
    for spec in specs:
        oax = output_axes(spec, model.latent_factor)
        if outputs and spec.name in outputs:
            described = outputs[spec.name]
        else:
            with torch.no_grad():
                outs = spec.module(*spec.inputs)
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            described = [describe_tensor(n, t, oax.get(n)) for n, t in zip(spec.output_names, outs)]
        graphs[spec.name] = {
            "file": ONNX_FILES[spec.name],
            "inputs": [describe_tensor(n, t, (spec.axes or {}).get(n)) for n, t in zip(spec.input_names, spec.inputs)],
            "outputs": described,
            "profiles": shape_profiles(spec, unit=unit, max_units=max_units, profile=profile),
        }
        if custom_ops == "domain":
            graphs[spec.name]["domain_ops"] = list((domain_ops or {}).get(spec.name, []))
    used = sorted({op for ops in (domain_ops or {}).values() for op in ops})
    return {
        **manifest_header(model, FORMAT_RUNTIME, min_units=MIN_UNITS, max_units=max_units, max_batch=MAX_BATCH,
                          device="cpu"),
        "op_backend": "reference" if custom_ops == "decompose" else f"{_onnx.DOMAIN} domain (TensorRT plugins)",
        # domain op types the graphs use (empty in decompose mode): a runtime without them refuses the folder
        "custom_ops": used if custom_ops == "domain" else [], "custom_ops_mode": custom_ops,
        "custom_op_domains": {_onnx.DOMAIN: _onnx.VERSION} if custom_ops == "domain" and used else {},
        "exporter": f"torch.onnx.export(dynamo=True) torch {torch.__version__.split('+')[0]}",
        "opset": opset, "onnx_optimized": bool(optimize), "graphs": graphs,
    }


def _domain_ops(path: Path) -> list[str]:
    import onnx

    from ..ops import _onnx

    return _onnx.domain_ops_in(onnx.load(str(path), load_external_data=False))


def _cast(spec: ExportSpec, dtype: torch.dtype) -> ExportSpec:
    """The spec with its example inputs in the graphs' input dtype for a model in ``dtype``:
    float32 under half (precision island ``io``: the graph casts inside)."""
    io = precision.compute_dtype("io", dtype)
    return dataclasses.replace(spec, inputs=tuple(t.to(io) if t.is_floating_point() else t for t in spec.inputs))


def export_onnx(model: LDMVFI, out_dir: str | Path, *, dtype: torch.dtype | None = None, opset: int = 20,
                custom_ops: str = "decompose", overwrite: bool = False, height: int = 512, width: int = 768,
                max_units: int = 16, profile: dict | None = None, optimize: bool = False,
                verify: bool = True) -> Path:
    """Export ``model``'s encoder, U-Net step and decoder as ONNX graphs into ``out_dir``.

    Args:
        model: a loaded :class:`LDMVFI` (not modified; a copy is cast when ``dtype`` differs).
        out_dir: a new or empty folder (with ``overwrite``, an existing one: only the engine
            files are replaced, nothing else in it is touched).
        dtype: float32, float16 or bfloat16 graphs (default: the model's). Exported on CPU.
        opset: ONNX opset, 18..23.
        custom_ops: ``"decompose"`` (standard ONNX ops) or ``"domain"`` (``ldmvfi_fast``
            domain nodes for TensorRT plugins; needs the compiled extension to trace).
        height, width: example frame size (multiples of the pad unit, >= 2 units: an example
            side of 1 unit would be specialised; the graphs accept 1 unit).
        max_units: largest side, in pad units, the graphs accept.
        profile: overrides of :data:`DEFAULT_PROFILE` (frame sizes of the min/opt/max profiles).
        optimize: run onnxscript's graph optimizer (slow on the decoder; see the module doc).
        verify: run each graph in ONNX Runtime at a second size and compare with PyTorch.

    Returns:
        the folder. Files are written to a temporary folder beside it and moved in only when
        all are complete and checked: an error leaves the target as it was.
    """
    _check_options(opset, custom_ops, dtype)
    unit = model.cfg.min_pad_unit()
    if (height % unit or width % unit or min(height, width) < 2 * unit
            or max(height, width) > max_units * unit):
        raise OptionError(f"example size {height}x{width}: sides must be multiples of {unit} from {2 * unit} to "
                          f"{max_units * unit} (max_units={max_units})")
    if custom_ops == "domain":
        from ..ops._native import LOAD_ERROR

        if LOAD_ERROR is not None:
            raise EngineError("custom_ops='domain' traces the ops as torch.ops.ldmvfi_fast.*, registered by the "
                              f"compiled extension ldmvfi_fast._C, which did not load ({LOAD_ERROR})")
    out = Path(out_dir)
    _check_target(out, overwrite)
    _require_onnx()
    p = next(model.parameters())
    dt = dtype or p.dtype
    if p.device.type != "cpu" or p.dtype != torch.float32 or dt != torch.float32:
        # example inputs are made by running the encoder: in float32 (float16 convolutions
        # on CPU are very slow), then this copy of the model and the inputs are cast
        model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    model.eval()
    # graphs (and any external-data files), the manifest last: no manifest, no engine folder
    with staged_folder(out, last=[MANIFEST_NAME]) as tmp:
        with use_backend("reference"):
            specs = export_specs(model, height, width, max_units=max_units)
            # a second size and batch for the check: frozen dims (example batch 2, sides >= 2
            # units) show there; one unit high (the smallest size), two wide: not square
            seconds = export_specs(model, MIN_UNITS * unit, (MIN_UNITS + 1) * unit, batch=1, max_units=max_units)
            if dt != torch.float32:
                model.to(dt)  # the copy made above, which the specs' modules wrap
                specs = [_cast(s, dt) for s in specs]
                seconds = [_cast(s, dt) for s in seconds]
            outputs, domain_ops, timings = {}, {}, {}
            for spec, second in zip(specs, seconds):
                t0 = time.perf_counter()
                path = tmp / ONNX_FILES[spec.name]
                try:
                    export_graph(spec, path, opset=opset, optimize=optimize, custom_ops=custom_ops)
                except EngineError:
                    raise
                except Exception as exc:
                    raise EngineError(f"the ONNX exporter failed on {spec.name} (opset {opset}): "
                                      f"{type(exc).__name__}: {exc}") from exc
                t1 = time.perf_counter()
                outputs[spec.name] = check_graph(path, spec, output_axes(spec, model.latent_factor))
                domain_ops[spec.name] = _domain_ops(path)
                if verify:
                    _verify(path, spec, second, dt, outputs[spec.name])
                timings[spec.name] = {"export": round(t1 - t0, 2), "check": round(time.perf_counter() - t1, 2)}
                log.info("exported %s in %.1f s (checked in %.1f s), %.1f MB", spec.name, t1 - t0,
                         time.perf_counter() - t1, path.stat().st_size / 1e6)
            if custom_ops == "domain" and not any(domain_ops.values()):
                raise EngineError("custom_ops='domain' but no graph has a node of the ldmvfi_fast domain: the ops "
                                  "were not traced as torch.ops.ldmvfi_fast.*")
            manifest = onnx_manifest(model, specs, opset=opset, custom_ops=custom_ops, max_units=max_units,
                                     profile=profile, optimize=optimize, outputs=outputs, domain_ops=domain_ops)
            manifest["build_seconds"] = timings
        write_manifest(tmp, manifest)
    log.info("wrote %s", out)
    return out
