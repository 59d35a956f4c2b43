"""CPU speed of the compiled ops against the pure-PyTorch references (same run, same inputs).

    python benchmarks/ops_cpu.py                    # 1080p, float32, medians of 3
    python benchmarks/ops_cpu.py --height 540 --width 960 --repeats 5

DSepConv forward at full resolution (forward+backward at half size), K = 5, 3 channels;
the fused decoder output (two warps + mask blend + residual) at full resolution. The
backends are timed alternately, run by run, so machine noise affects both alike. Reports medians, the
speed-up (reference / native) and the max difference. Writes JSON under
benchmarks/results/ (device, date, commit, command).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from _common import RESULTS, run_info, time_interleaved, write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-backward", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from ldmvfi_fast import ops

    H, W, K = args.height, args.width, 5
    g = torch.Generator().manual_seed(0)

    def heads():
        return (torch.rand(1, K, H, W, generator=g), torch.rand(1, K, H, W, generator=g),
                torch.randn(1, K * K, H, W, generator=g), torch.randn(1, K * K, H, W, generator=g))

    frame0, frame1 = torch.rand(1, 3, H, W, generator=g) * 2 - 1, torch.rand(1, 3, H, W, generator=g) * 2 - 1
    h0, h1 = heads(), heads()
    mask = torch.rand(1, K * K, H, W, generator=g)
    res = torch.randn(1, 3, H, W, generator=g)
    padded = torch.nn.functional.pad(frame0, (2, 2, 2, 2), mode="replicate")
    dev = torch.device("cpu")
    rows = {}

    def compare(name, fn):
        out = time_interleaved({b: (lambda b=b: fn(b)) for b in ("native", "reference")}, dev, args.repeats, 1)
        a, b = fn("native"), fn("reference")
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        out["max_abs_diff"] = max((x - y).abs().max().item() for x, y in zip(a, b))
        out["speedup"] = out["reference"]["median_ms"] / out["native"]["median_ms"]
        rows[name] = out

    with torch.inference_mode():
        compare("dsepconv forward", lambda be: ops.dsepconv(padded, *h0, mask, backend=be))
        compare("decoder_output (fused)", lambda be: ops.decoder_output(frame0, frame1, *h0, *h1, mask, res, backend=be))
    if not args.no_backward:  # at half size: the reference's autograd graph of 25 taps is large
        hb, wb = H // 2, W // 2
        bwd_in = [padded[..., :hb + 4, :wb + 4]] + [t[..., :hb, :wb] for t in (*h0, mask)]

        def fwd_bwd(be):
            xs = [t.contiguous().requires_grad_() for t in bwd_in]
            ops.dsepconv(*xs, backend=be).sum().backward()
            return tuple(x.grad for x in xs)
        compare(f"dsepconv fwd+bwd ({hb}x{wb})", fwd_bwd)

    meta = {**run_info(dev), "shape": [1, 3, H, W], "K": K, "dtype": "float32"}
    print(f"CPU ops at {H}x{W} float32, {meta['threads']} threads, commit {meta['commit']}")
    print(f"{'op':28s} {'native ms':>10s} {'reference ms':>13s} {'speed-up':>9s} {'max |diff|':>11s}")
    for name, r in rows.items():
        print(f"{name:28s} {r['native']['median_ms']:10.1f} {r['reference']['median_ms']:13.1f} "
              f"{r['speedup']:8.1f}x {r['max_abs_diff']:11.2e}")
    out = write_json(Path(args.out) if args.out else RESULTS / f"ops-cpu-{H}x{W}.json", {"meta": meta, "results": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
