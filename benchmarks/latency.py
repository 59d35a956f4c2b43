"""Latency of LDMVFI inference, per stage and end to end.

Times, at one resolution, device and dtype: encoding one frame, one U-Net (denoising)
step, decoding, and a whole interpolation (2 encodes + S sampling steps + decode).
Weights are random unless --ckpt is given: speed does not depend on their values.
Warm-up runs first; each figure is the median over --repeats runs, with CUDA synchronised
around every timed call. Prints a table and writes JSON (device, date, commit, command).

    python benchmarks/latency.py --config official --height 256 --width 448 --device cpu --steps 200
    python benchmarks/latency.py --config official --height 1080 --width 1920 --device cuda --dtype bfloat16
    python benchmarks/latency.py --backend auto,reference ...   # op backends timed alternately
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn, device, repeats: int, warmup: int) -> dict:
    """Median/min/max milliseconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    return time_interleaved({"-": fn}, device, repeats, warmup)["-"]


def time_interleaved(fns: dict, device, repeats: int, warmup: int, setup=None) -> dict:
    """Time several variants of one computation, alternating them run by run so that a noisy
    machine affects all alike. ``setup(name)`` runs (untimed) before each call of variant ``name``."""
    times = {name: [] for name in fns}
    for name, fn in fns.items():
        for _ in range(warmup):
            if setup:
                setup(name)
            fn()
    _sync(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            if setup:
                setup(name)
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: {"median_ms": statistics.median(t) * 1e3, "min_ms": min(t) * 1e3, "max_ms": max(t) * 1e3,
                   "repeats": repeats} for name, t in times.items()}


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        return "unknown"


def build_model(args, device, dtype):
    from ldmvfi_fast import load_model
    from ldmvfi_fast.config import resolve_config
    from ldmvfi_fast.models.ldmvfi import LDMVFI

    if args.ckpt:
        return load_model(args.ckpt, args.config, device=device, dtype=dtype)
    torch.manual_seed(0)
    model = LDMVFI(resolve_config(args.config or "official"))
    return model.eval().requires_grad_(False).to(device=device, dtype=dtype)


def _set_backend(name: str) -> None:
    if name == "auto":
        os.environ.pop("LDMVFI_FAST_BACKEND", None)
    else:
        os.environ["LDMVFI_FAST_BACKEND"] = name


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
            results[name] = time_interleaved({b: fn for b in backends}, device, args.repeats, args.warmup,
                                             _set_backend)
        results[f"interpolate ({it.ddim.num_steps} steps)"] = time_interleaved(
            {b: (lambda: it.interpolate(f0, f1, seed=0)) for b in backends}, device, args.whole_repeats,
            min(args.warmup, 1), _set_backend)
    _set_backend("auto")
    padded = tuple(e0.frame.shape[-2:])
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(), "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device_type": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
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
    p.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/latency-....json)")
    args = p.parse_args(argv)
    report = run(args)
    print(table(report))
    m = report["meta"]
    out = Path(args.out) if args.out else (ROOT / "benchmarks" / "results" / (
        f"latency-{m['config']}-{m['input_hw'][0]}x{m['input_hw'][1]}-{m['device_type']}-{m['dtype']}"
        f"-{'+'.join(m['backends'])}.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
