#!/usr/bin/env python
"""Small driver for compute-sanitizer: every op x backend x dtype at awkward shapes, and once
at the real padded 1080p shapes (1536x2048).

Run by ``benchmarks/gpu_check.sh`` under ``compute-sanitizer --tool memcheck|racecheck|initcheck``
(with ``PYTORCH_NO_CUDA_MEMORY_CACHING=1`` so that out-of-bounds accesses hit unallocated
memory). Each case calls the op with a forced backend (``native`` CUDA kernels, ``triton``)
and compares with the PyTorch reference in float32 on the same inputs; a backend that does not
support a case (the dispatcher says why) is listed as skipped, not failed.

Cases (``--list`` prints them, no GPU needed):

* dsepconv / decoder_output: odd sizes (7x9, 13x17, 1x1, 31x33), K = 3 and 5, batch 1-2,
  C = 3 and 5, strided (channel-last input / column-sliced frames);
* maxvit_attention: windows 1, 2, 4, 7, 8; head widths 32, 96, 256; block and grid;
  q/k/v as strided views of one qkv tensor;
* ``--big``: dsepconv and decoder_output at 1536x2048 (K = 5), decoder cross-attention at
  768x1024 (C 64, window 8) and latent self-attention at 48x64 (C 256, window 2).

Usage::

    python benchmarks/gpu_check_driver.py [--list] [--big | --small] [--ops dsepconv ...]
        [--backends native triton] [--dtypes float32 float16 bfloat16] [--device cuda]
        [--bench --out FILE.json]

``--bench``: median time of each backend and of the reference (CUDA events; for attention also
``F.scaled_dot_product_attention`` with the window partition copies included) at the --big
shapes. Exit status 0 when every case ran and matched; 1 otherwise. No PyAV, no network.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field

OPS = ("dsepconv", "decoder_output", "maxvit_attention")
TOL = {"float32": 1e-3, "float16": 2e-2, "bfloat16": 1e-1, "float64": 1e-6}


@dataclass
class Case:
    op: str
    desc: str
    big: bool = False
    params: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.op}[{self.desc}]"


def cases(big: bool | None) -> list[Case]:
    """All cases; ``big``: True only the 1080p ones, False only the small, None both."""
    out: list[Case] = []
    for B, C, K, H, W, strided in [(1, 3, 5, 7, 9, False), (2, 3, 3, 13, 17, True), (1, 5, 5, 1, 1, False),
                                   (1, 3, 5, 31, 33, True), (2, 3, 3, 8, 8, False)]:
        p = {"B": B, "C": C, "K": K, "H": H, "W": W, "strided": strided}
        desc = f"B{B} C{C} K{K} {H}x{W}{' strided' if strided else ''}"
        out.append(Case("dsepconv", desc, params=p))
        out.append(Case("decoder_output", desc, params=dict(p, C=3)))
    for window in (1, 2, 4, 7, 8):
        for head_dim, heads in ((32, 2), (96, 1), (256, 1)):
            for mode in ("block", "grid"):
                H, W = window * 3, window * 2
                out.append(Case("maxvit_attention", f"w{window} hd{head_dim}x{heads} {mode} {H}x{W} strided",
                                params={"B": 2, "H": H, "W": W, "window": window, "head_dim": head_dim, "heads": heads, "mode": mode,
                                            "strided": True}))
    out.append(Case("maxvit_attention", "w8 hd32x2 block 16x24 contiguous",
                    params={"B": 1, "H": 16, "W": 24, "window": 8, "head_dim": 32, "heads": 2, "mode": "block", "strided": False}))
    # the real padded 1080p shapes (1536x2048)
    out.append(Case("dsepconv", "1080p padded: B1 C3 K5 1536x2048", True,
                    {"B": 1, "C": 3, "K": 5, "H": 1536, "W": 2048, "strided": False}))
    out.append(Case("decoder_output", "1080p padded: B1 C3 K5 1536x2048", True,
                    {"B": 1, "C": 3, "K": 5, "H": 1536, "W": 2048, "strided": False}))
    out.append(Case("maxvit_attention", "1080p decoder 1/2: 768x1024 C64 hd32 w8 block", True,
                    {"B": 1, "H": 768, "W": 1024, "window": 8, "head_dim": 32, "heads": 2, "mode": "block", "strided": False}))
    out.append(Case("maxvit_attention", "1080p decoder 1/2: 768x1024 C64 hd32 w8 grid", True,
                    {"B": 1, "H": 768, "W": 1024, "window": 8, "head_dim": 32, "heads": 2, "mode": "grid", "strided": False}))
    out.append(Case("maxvit_attention", "1080p latent 48x64 C256 hd32 w2 block", True,
                    {"B": 1, "H": 48, "W": 64, "window": 2, "head_dim": 32, "heads": 8, "mode": "block", "strided": True}))
    if big is None:
        return out
    return [c for c in out if c.big == big]


def make_args(torch, case: Case, dtype, device):
    """(args, kwargs) of the op for one case, random but seeded."""
    g = torch.Generator(device="cpu").manual_seed(zlib.crc32(case.desc.encode()))
    p = case.params

    def r(*shape, lo=-1.0, hi=1.0):
        return (torch.rand(*shape, generator=g) * (hi - lo) + lo).to(device=device, dtype=dtype)

    if case.op in ("dsepconv", "decoder_output"):
        B, C, K, H, W = p["B"], p["C"], p["K"], p["H"], p["W"]
        heads = lambda: [r(B, K, H, W, lo=0.0), r(B, K, H, W, lo=0.0), r(B, K * K, H, W, lo=-4.0, hi=4.0),
                         r(B, K * K, H, W, lo=-4.0, hi=4.0)]
        if case.op == "dsepconv":
            Hin, Win = H + K - 1, W + K - 1
            x = r(B, Hin, Win, C).permute(0, 3, 1, 2) if p["strided"] else r(B, C, Hin, Win)
            return (x, *heads(), r(B, K * K, H, W, lo=0.0)), {}
        f0 = r(B, H, W, C).permute(0, 3, 1, 2) if p["strided"] else r(B, C, H, W)
        f1 = r(B, C, H, W + 3)[..., 1:W + 1] if p["strided"] else r(B, C, H, W)
        return (f0, f1, *heads(), *heads(), r(B, K * K, H, W, lo=0.0), r(B, C, H, W)), {}
    B, H, W, w, hd, nh = p["B"], p["H"], p["W"], p["window"], p["head_dim"], p["heads"]
    C = hd * nh
    if p["strided"]:
        q, k, v = r(B, H, W, 3 * C).chunk(3, dim=-1)
    else:
        q, k, v = r(B, H, W, C), r(B, H, W, C), r(B, H, W, C)
    table = r((2 * w - 1) ** 2, nh).float()
    return (q, k, v, table, w, p["mode"], nh, hd ** -0.5), {}


def reference(ops_ref, torch, case: Case, args):
    up = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
    return ops_ref[case.op](*up)


def run_checks(torch, selected: list[Case], backends: list[str], dtypes: list[str], device: str) -> list[dict]:
    from ldmvfi_fast import ops
    from ldmvfi_fast.ops import available_backends

    op_fn = {"dsepconv": ops.dsepconv, "decoder_output": ops.decoder_output, "maxvit_attention": ops.maxvit_attention}
    ops_ref = {"dsepconv": ops.dsepconv_reference, "decoder_output": ops.decoder_output_reference,
               "maxvit_attention": ops.maxvit_attention_reference}
    results = []
    for case in selected:
        for dt in dtypes:
            dtype = getattr(torch, dt)
            args, _ = make_args(torch, case, dtype, device)
            ref = None
            for be in backends:
                row = {"case": str(case), "dtype": dt, "backend": be}
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                kw = {}
                if case.op == "maxvit_attention":
                    kw = {"window": args[4], "mode": args[5], "num_heads": args[6]}
                why = available_backends(case.op, tensors[:4] if kw else tensors, **kw).get(be)
                if why:
                    row.update(status="skipped", reason=str(why))
                    results.append(row)
                    print(f"SKIP {case} {dt} {be}: {why}", flush=True)
                    continue
                t0 = time.perf_counter()
                try:
                    out = op_fn[case.op](*args, backend=be)
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    if ref is None:
                        ref = reference(ops_ref, torch, case, args)
                    err = float((out.float() - ref).abs().max()) if out.numel() else 0.0
                    scale = max(1.0, float(ref.abs().max()) if ref.numel() else 0.0)
                    ok = bool(torch.isfinite(out).all()) and err <= TOL[dt] * scale and out.shape == ref.shape
                    row.update(status="ok" if ok else "MISMATCH", max_abs_err=err, ref_scale=scale,
                               seconds=round(time.perf_counter() - t0, 4))
                except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                    row.update(status="ERROR", error=f"{type(exc).__name__}: {exc}"[:500])
                results.append(row)
                print(f"{row['status']:8s} {case} {dt} {be} {row.get('max_abs_err', row.get('error', ''))}",
                      flush=True)
    return results


def _time(torch, fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def sdpa_attention(torch, q, k, v, table, window, mode, heads, scale):
    """Windowed attention with F.scaled_dot_product_attention (window partition copies included)."""
    from ldmvfi_fast.ops.maxvit_ref import (
        relative_position_bias,
        window_partition,
        window_unpartition,
    )

    B, H, W, C = q.shape
    hd = C // heads

    def part(x):  # (B*nW, w*w, C) -> (B*nW, heads, w*w, hd)
        xw = window_partition(x, window, mode)
        return xw.reshape(xw.shape[0], -1, heads, hd).transpose(1, 2)
    bias = relative_position_bias(table, window).to(q.dtype)
    o = torch.nn.functional.scaled_dot_product_attention(part(q), part(k), part(v), attn_mask=bias, scale=scale)
    o = o.transpose(1, 2).reshape(o.shape[0], window * window, C)
    return window_unpartition(o, window, mode, B, H, W)


def run_bench(torch, backends: list[str], dtypes: list[str], repeats: int, warmup: int) -> list[dict]:
    from ldmvfi_fast import ops
    from ldmvfi_fast.ops import available_backends

    rows = []
    for case in cases(big=True):
        for dt in dtypes:
            args, _ = make_args(torch, case, getattr(torch, dt), "cuda")
            fn = {"dsepconv": ops.dsepconv, "decoder_output": ops.decoder_output,
                  "maxvit_attention": ops.maxvit_attention}[case.op]
            cols = {"reference": lambda fn=fn, args=args: fn(*args, backend="reference")}
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            kw = {"window": args[4], "mode": args[5], "num_heads": args[6]} if case.op == "maxvit_attention" else {}
            avail = available_backends(case.op, tensors, **kw)
            for be in backends:
                if not avail.get(be):
                    cols[be] = (lambda b=be, fn=fn, args=args: fn(*args, backend=b))
            if case.op == "maxvit_attention":
                cols["sdpa"] = lambda args=args: sdpa_attention(torch, *args)
            row = {"case": str(case), "dtype": dt}
            for name, f in cols.items():
                try:
                    row[f"{name}_ms"] = round(_time(torch, f, repeats, warmup), 4)
                except Exception as exc:  # noqa: BLE001 - one failed column, the others go on
                    row[f"{name}_ms"] = None
                    row[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
            ref = row.get("reference_ms")
            for name in cols:
                if ref and row.get(f"{name}_ms"):
                    row[f"{name}_speedup"] = round(ref / row[f"{name}_ms"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="print the cases and exit (no GPU needed)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--big", action="store_true", help="only the 1080p (1536x2048) cases")
    size.add_argument("--small", action="store_true", help="only the awkward small cases")
    p.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    p.add_argument("--backends", nargs="+", default=["native", "triton"])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float16", "bfloat16"], choices=sorted(TOL))
    p.add_argument("--device", default="cuda")
    p.add_argument("--bench", action="store_true", help="time the backends, the reference and SDPA at --big shapes")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    big = True if a.big else False if a.small else None
    selected = [c for c in cases(big) if c.op in a.ops]
    if a.list:
        for c in selected:
            print(c)
        return 0
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("ldmvfi_fast") is None:  # not installed (the GPU image): this checkout's
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (use --list, or --device cpu with --backends native reference)",
              file=sys.stderr)
        return 2
    if a.bench:
        rows = run_bench(torch, a.backends, a.dtypes, a.repeats, a.warmup)
        bad = 0
    else:
        rows = run_checks(torch, selected, a.backends, a.dtypes, a.device)
        bad = sum(r["status"] in ("ERROR", "MISMATCH") for r in rows)
        ran = sum(r["status"] == "ok" for r in rows)
        print(f"{ran} ok, {bad} failed, {sum(r['status'] == 'skipped' for r in rows)} skipped "
              f"({len(selected)} cases x {len(a.dtypes)} dtypes x {len(a.backends)} backends)")
    if a.out:
        info = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                "torch": torch.__version__, "argv": sys.argv[1:]}
        with open(a.out, "w") as f:
            json.dump({"info": info, "results": rows}, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
