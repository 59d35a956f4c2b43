"""Half precision against float32: how far a bfloat16 / float16 interpolation is from the float32 one.

For a model (``--config tiny|official`` with seeded random weights, or ``--ckpt``) and a frame
pair of a bundled clip (bikes.mp4 frames 100 and 101, centre crop, ``--height/--width``):

* per stage, the half-precision model against the float32 model on the same inputs: the
  encoder's latent and features, one U-Net step (eps at t = 500), the decoder fed the float32
  latent and features (the "decoder alone" PSNR), each as the largest relative error
  ``max|half - fp32| / max|fp32|``, and the largest |activation| of each sub-model with the module
  where it occurs (float16 overflows above 65504: non-finite values are counted);
* the whole interpolation (encode both frames, ``--steps`` DDIM steps with eta 0 from the same
  x_T, decode; clamped to [-1, 1]) as PSNR in dB against float32, frames mapped to [0, 1]
  (what a user sees; identical frames are reported as inf);
* ``--runtimes``: ``torch`` (eager), ``onnxruntime`` (the typed ONNX graphs of
  ``export_onnx(dtype=...)``, fp32 inputs and outputs, run by ONNX Runtime's CPU provider; graphs
  it has no kernels for are reported as such) — every runtime against the float32 torch model;
* ``--ablate``: the whole-interpolation PSNR and time with each fp32 island of the precision
  policy (:mod:`ldmvfi_fast.precision`) turned off in turn: what each island buys and costs.

Writes JSON (``benchmarks/results/precision-<config>-<H>x<W>-<device>.json``) and prints a table.

    python benchmarks/precision.py --config tiny --ablate
    python benchmarks/precision.py --config official --height 256 --width 448 --ablate
    python benchmarks/precision.py --config tiny --runtimes torch,onnxruntime --height 256 --width 256
    python benchmarks/precision.py --config official --device cuda --height 1080 --width 1920
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

try:  # run as a script: this folder is sys.path[0]
    from _common import RESULTS, run_info, sync, write_json
except ImportError:  # imported as benchmarks.precision (tests)
    from benchmarks._common import RESULTS, run_info, sync, write_json

log = logging.getLogger("precision")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: the ablation row that computes as the code did before the policy (ed0a1cd^): frames, latents and the
#: sampler state in half, LayerNorm and attention scores in half (GroupNorm, DSepConv, the quantizer and
#: the timestep embedding were already float32)
PRE_POLICY = "(before the policy)"
PRE_POLICY_OFF = ("io", "sampler", "layernorm", "softmax")
#: targets on the whole interpolation (dB against float32), from issue 15
TARGETS = {"bfloat16": 40.0, "float16": 45.0}


def raw_pair(clip: str = "bikes.mp4", index: int = 100) -> list[np.ndarray]:
    """Frames ``index`` and ``index + 1`` of a bundled clip, (H, W, 3) uint8 (needs PyAV)."""
    from ldmvfi_fast.video import bundled_clip, read_video

    return [img for i, img in enumerate(read_video(bundled_clip(clip), max_frames=index + 2)) if i >= index]


def raw_pairs(indices: list[int], clip: str = "bikes.mp4") -> list[list[np.ndarray]]:
    """Frame pairs (i, i + 1) of a bundled clip for each i of ``indices`` (needs PyAV)."""
    from ldmvfi_fast.video import bundled_clip, read_video

    want = set(indices) | {i + 1 for i in indices}
    frames = {i: img for i, img in enumerate(read_video(bundled_clip(clip), max_frames=max(want) + 1)) if i in want}
    return [[frames[i], frames[i + 1]] for i in indices]


def pair_spread(ref, dtypes: list[str], indices: list[int], height: int, width: int, steps: int, device) -> dict:
    """Whole-interpolation PSNR against float32 over several pairs: {dtype: {indices, psnr_db, min, median}}."""
    out = {}
    pairs = [frame_pair(height, width, raw) for raw in raw_pairs(indices)]
    interp_ref = _interpolator(ref, steps)
    refs, xs = [], []
    for f0, f1 in pairs:
        f0, f1 = f0.to(device), f1.to(device)
        x_T = x_T_for(ref, f0, steps)
        xs.append(x_T)
        refs.append(_whole(interp_ref, f0, f1, x_T))
    for dname in dtypes:
        half = copy.deepcopy(ref).to(DTYPES[dname])
        it = _interpolator(half, steps)
        ps = [psnr01(_whole(it, f0.to(device), f1.to(device), x_T), r) for (f0, f1), x_T, r in zip(pairs, xs, refs)]
        out[dname] = {"clip": "bikes.mp4", "indices": indices, "psnr_db": ps, "min": min(ps),
                      "median": statistics.median(ps), "below_target": sum(p < TARGETS[dname] for p in ps)}
        del half
    return out


def frame_pair(height: int, width: int, raw: list[np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair of :func:`raw_pair` (or ``raw``), centre-cropped to height x width (resized up
    first when the clip is smaller), as (1, 3, H, W) float32 in [-1, 1]."""
    from ldmvfi_fast.video import to_tensor

    out = []
    for img in (raw if raw is not None else raw_pair()):
        f = to_tensor(np.ascontiguousarray(img))
        f = f[None] if f.dim() == 3 else f
        h, w = f.shape[-2:]
        s = max(height / h, width / w, 1.0)
        if s > 1.0:
            size = (max(height, math.ceil(h * s)), max(width, math.ceil(w * s)))
            f = torch.nn.functional.interpolate(f, size=size, mode="bilinear", align_corners=False)
        h, w = f.shape[-2:]
        top, left = (h - height) // 2, (w - width) // 2
        out.append(f[..., top:top + height, left:left + width].contiguous())
    return out[0], out[1]


def psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two frames in [-1, 1], mapped to [0, 1]; inf when identical."""
    mse = float((((a.double() - b.double()) / 2) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a - ref| / max |ref| (inf when a has non-finite values)."""
    a, ref = a.double(), ref.double()
    if not torch.isfinite(a).all():
        return math.inf
    return float((a - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


class ActivationWatch:
    """Forward hooks on every leaf module: the largest |output| per module and non-finite counts."""

    def __init__(self, module: torch.nn.Module):
        self.max: dict[str, float] = {}
        self.nonfinite: dict[str, int] = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in module.named_modules()
                        if not list(m.children())]

    def _hook(self, name):
        def hook(_m, _inp, out):
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for o in outs:
                if isinstance(o, torch.Tensor) and o.is_floating_point() and o.numel():
                    bad = int((~torch.isfinite(o)).sum())
                    if bad:
                        self.nonfinite[name] = self.nonfinite.get(name, 0) + bad
                    fin = o[torch.isfinite(o)] if bad else o
                    m = float(fin.abs().max()) if fin.numel() else 0.0
                    self.max[name] = max(self.max.get(name, 0.0), m)
        return hook

    def top(self, prefix: str = "") -> tuple[str, float]:
        items = [(n, v) for n, v in self.max.items() if n.startswith(prefix)]
        return max(items, key=lambda kv: kv[1]) if items else ("", 0.0)

    def close(self):
        for h in self.handles:
            h.remove()


def build_model(config: str, ckpt: str | None, device) -> torch.nn.Module:
    from ldmvfi_fast.config import resolve_config
    from ldmvfi_fast.models.ldmvfi import LDMVFI

    if ckpt:
        from ldmvfi_fast import load_model

        return load_model(ckpt, config, device=device)
    torch.manual_seed(0)
    return LDMVFI(resolve_config(config)).eval().requires_grad_(False).to(device)


def _interpolator(model, steps: int):
    from ldmvfi_fast.pipeline import Interpolator

    return Interpolator(model, sampler="ddim", steps=steps, eta=0.0, padding="minimal")


def _whole(interp, f0, f1, x_T) -> torch.Tensor:
    with torch.no_grad():
        out = interp.interpolate(f0, f1, x_T=x_T)
    return out.float()


def x_T_for(model, f0, steps) -> torch.Tensor:
    interp = _interpolator(model, steps)
    with torch.no_grad():
        e = interp.encode(f0)
    g = torch.Generator(device="cpu").manual_seed(0)
    shape = (f0.shape[0], model.cfg.diffusion.channels) + tuple(e.z.shape[2:])
    return torch.randn(shape, generator=g, dtype=torch.float32).to(f0.device)


def stage_errors(ref, half, f0, f1, x_T) -> dict:
    """Per-stage errors of ``half`` against ``ref`` on the same (float32) inputs, and activation maxima."""
    dev = f0.device
    from ldmvfi_fast.padding import pad_amounts, reflect_pad

    unit = ref.cfg.min_pad_unit()
    ph, pw = pad_amounts(f0.shape[-2], f0.shape[-1], "minimal", unit)
    p0, p1 = reflect_pad(f0, ph, pw), reflect_pad(f1, ph, pw)
    watch = ActivationWatch(half)
    out: dict = {}
    with torch.no_grad():
        z0, phi0 = ref.encode(p0)
        z1, phi1 = ref.encode(p1)
        hz0, hphi0 = half.encode(p0)
        out["encoder"] = {"latent_rel_err": rel_err(hz0, z0),
                          "features_rel_err": max(rel_err(a, b) for a, b in zip(hphi0, phi0))}
        cond = torch.cat([z0, z1], 1)
        t = torch.full((f0.shape[0],), 500, dtype=torch.long, device=dev)
        e_ref = ref.eps(x_T, t, cond)
        e_half = half.eps(x_T, t, cond)
        out["unet_step"] = {"eps_rel_err": rel_err(e_half, e_ref)}
        d_ref = ref.decode(x_T, phi0, phi1, p0, p1).clamp(-1, 1)
        d_half = half.decode(x_T, phi0, phi1, p0, p1).float().clamp(-1, 1)
        H, W = f0.shape[-2:]
        out["decoder"] = {"frame_rel_err": rel_err(d_half, d_ref),
                          "psnr_db": psnr01(d_half[..., :H, :W], d_ref[..., :H, :W])}
    for stage, prefix in (("encoder", "first_stage.encoder"), ("unet_step", "unet"), ("decoder", "first_stage.decoder")):
        name, m = watch.top(prefix)
        out[stage]["max_activation"] = m
        out[stage]["max_activation_at"] = name
        bad = {n: c for n, c in watch.nonfinite.items() if n.startswith(prefix)}
        out[stage]["nonfinite"] = sum(bad.values())
        if bad:
            out[stage]["nonfinite_first"] = sorted(bad)[:5]
    watch.close()
    return out


def timed(fn, device, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def ort_whole(half_model, dtype, f0, f1, x_T, steps, workdir: Path) -> dict:
    """Export ``half_model``'s dtype as typed ONNX graphs and run the whole interpolation in ONNX Runtime."""
    from ldmvfi_fast.export.onnx import export_onnx
    from ldmvfi_fast.pipeline import Interpolator
    from ldmvfi_fast.runtime.onnxruntime import OrtBackbone

    out = workdir / f"onnx-{str(dtype).replace('torch.', '')}"
    t0 = time.perf_counter()
    fp32 = copy.deepcopy(half_model).float()
    export_onnx(fp32, out, dtype=dtype, opset=22 if dtype == torch.bfloat16 else 20, verify=False,
                height=2 * fp32.cfg.min_pad_unit(), width=2 * fp32.cfg.min_pad_unit(), max_units=4)
    export_s = time.perf_counter() - t0
    try:
        bb = OrtBackbone.from_dir(out)
        interp = Interpolator(bb, sampler="ddim", steps=steps, eta=0.0, padding="minimal")
        with torch.no_grad():
            frame = interp.interpolate(f0, f1, x_T=x_T).float()
    except Exception as exc:  # noqa: BLE001 - reported in the table, not fatal
        msg = str(exc).splitlines()[0][:300]
        return {"error": f"{type(exc).__name__}: {msg}", "export_s": export_s}
    return {"frame": frame, "export_s": export_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="tiny", help="tiny (default), official, or a YAML (random weights)")
    p.add_argument("--ckpt", default=None, help="a checkpoint instead of random weights")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=448)
    p.add_argument("--steps", type=int, default=4, help="DDIM steps of the whole interpolation (eta 0)")
    p.add_argument("--dtypes", default="bfloat16,float16", help="comma-separated: bfloat16, float16")
    p.add_argument("--runtimes", default="torch", help="comma-separated: torch, onnxruntime")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ablate", action="store_true", help="each fp32 island off in turn (PSNR and time)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (ablation)")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/precision-...json)")
    p.add_argument("--pairs", type=int, default=0, metavar="N",
                   help="also the whole-interpolation PSNR over N pairs of bikes.mp4 (spread over the clip)")
    p.add_argument("--only-pairs", action="store_true", help="with --pairs: only the spread over the pairs")
    p.add_argument("--pair", default=None, help="the decoded pair from an .npz (--save-pair) instead of bikes.mp4")
    p.add_argument("--save-pair", default=None, help="write the decoded pair (uint8 frames) to this .npz and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    from ldmvfi_fast import precision

    device = torch.device(args.device)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    for d in dtypes:
        if d not in DTYPES:
            p.error(f"unknown dtype {d!r}")
    if args.save_pair:
        a, b = raw_pair()
        np.savez(args.save_pair, frame0=a, frame1=b)
        print(f"wrote {args.save_pair}")
        return 0
    raw = None
    if args.pair:  # machines without PyAV (the GPU image): the same decoded pair, saved by --save-pair
        with np.load(args.pair) as z:
            raw = [z["frame0"], z["frame1"]]
    f0, f1 = (f.to(device) for f in frame_pair(args.height, args.width, raw))
    ref = build_model(args.config, args.ckpt, device)
    x_T = x_T_for(ref, f0, args.steps)
    interp_ref = _interpolator(ref, args.steps)
    frame_ref = _whole(interp_ref, f0, f1, x_T)
    t_ref = timed(lambda: _whole(interp_ref, f0, f1, x_T), device, args.repeats) if args.ablate else None
    report = {"info": run_info(device, argv, "precision.py"), "config": args.config,
              "weights": args.ckpt or "random (torch.manual_seed(0))", "size": [args.height, args.width],
              "steps": args.steps, "sampler": "ddim eta 0", "policy": precision.describe(),
              "islands": {n: {"covers": i.covers, "why": i.why} for n, i in precision.ISLANDS.items()},
              "targets_db": TARGETS, "float32_whole_s": t_ref, "results": {}}
    if args.pairs:
        idx = [int(i) for i in np.linspace(10, 240, args.pairs)]
        report["pairs"] = pair_spread(ref, dtypes, idx, args.height, args.width, args.steps, device)
        for dname, r in report["pairs"].items():
            print(f"{dname}: whole-interpolation PSNR over {len(idx)} bikes.mp4 pairs: min {r['min']:.2f} dB, "
                  f"median {r['median']:.2f} dB, {r['below_target']} below {TARGETS[dname]} dB; "
                  + " ".join(f"{p:.1f}" for p in r["psnr_db"]))
        if args.only_pairs:
            path = Path(args.out) if args.out else RESULTS / f"precision-{Path(args.config).stem}-pairs.json"
            write_json(path, report)
            print(f"wrote {path}")
            return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="ldmvfi-precision-") as work:
        for dname in dtypes:
            dt = DTYPES[dname]
            half = copy.deepcopy(ref).to(dt)
            res: dict = {}
            if "torch" in runtimes:
                interp = _interpolator(half, args.steps)
                frame = _whole(interp, f0, f1, x_T)
                res["torch"] = {"whole_psnr_db": psnr01(frame, frame_ref),
                                "stages": stage_errors(ref, half, f0, f1, x_T)}
                if args.ablate:
                    res["torch"]["whole_s"] = timed(lambda: _whole(interp, f0, f1, x_T), device, args.repeats)
                    abl = {}
                    for island in [*precision.ISLANDS, PRE_POLICY, "(all off)"]:
                        off = (list(precision.ISLANDS) if island == "(all off)" else
                               list(PRE_POLICY_OFF) if island == PRE_POLICY else [island])
                        with precision.disabled(*off):
                            try:
                                it = _interpolator(half, args.steps)
                                fr = _whole(it, f0, f1, x_T)
                                s = timed(lambda: _whole(it, f0, f1, x_T), device, args.repeats)
                            except Exception as exc:  # noqa: BLE001 - e.g. half coordinates index out of bounds
                                abl[island] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
                                log.info("%s without %s: %s", dname, island, abl[island]["error"])
                                continue
                        abl[island] = {"whole_psnr_db": psnr01(fr, frame_ref), "whole_s": s}
                        log.info("%s without %s: %.2f dB, %.3f s", dname, island, abl[island]["whole_psnr_db"], s)
                    res["torch"]["ablation"] = abl
            if "onnxruntime" in runtimes:
                r = ort_whole(half, dt, f0.cpu(), f1.cpu(), x_T.cpu(), args.steps, Path(work))
                if "frame" in r:
                    res["onnxruntime"] = {"whole_psnr_db": psnr01(r["frame"].to(device), frame_ref),
                                          "export_s": r["export_s"]}
                else:
                    res["onnxruntime"] = r
            report["results"][dname] = res
            for rt, r in res.items():
                rows.append((dname, rt, r))
            del half
    # table
    print(f"precision vs float32: {args.config} {args.height}x{args.width}, {args.steps}-step DDIM eta 0, {device}")
    print(f"{'dtype':9} {'runtime':12} {'whole dB':>9} {'target':>7} {'decoder dB':>10} {'latent rel':>10} "
          f"{'eps rel':>9} {'max |act| enc/unet/dec':>28}")
    for dname, rt, r in rows:
        if "error" in r:
            print(f"{dname:9} {rt:12} not run: {r['error']}")
            continue
        st = r.get("stages")
        acts = "/".join(f"{st[s]['max_activation']:.3g}" for s in ("encoder", "unet_step", "decoder")) if st else "-"
        print(f"{dname:9} {rt:12} {r['whole_psnr_db']:9.2f} {TARGETS[dname]:7.1f} "
              f"{(st['decoder']['psnr_db'] if st else float('nan')):10.2f} "
              f"{(st['encoder']['latent_rel_err'] if st else float('nan')):10.3g} "
              f"{(st['unet_step']['eps_rel_err'] if st else float('nan')):9.3g} {acts:>28}")
        for island, a in (r.get("ablation") or {}).items():
            if "error" in a:
                print(f"{'':9} {'  no ' + island:24} fails: {a['error']}")
                continue
            print(f"{'':9} {'  no ' + island:24} {a['whole_psnr_db']:9.2f} dB  {a['whole_s']:.3f} s "
                  f"(all islands on: {r['whole_s']:.3f} s)")
    path = Path(args.out) if args.out else RESULTS / (
        f"precision-{Path(args.config).stem}-{args.height}x{args.width}-{device.type}.json")
    for dname, rt, r in rows:
        r.pop("frame", None)
    write_json(path, report)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
