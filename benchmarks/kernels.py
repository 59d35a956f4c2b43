"""Benchmark of the CUDA kernels against the PyTorch reference and torch.compile(reference).

Cases (1080p-sized, as the model runs them):

* ``dsepconv``: B=1, C=3, K=5, output 1080x1920, input padded by 4 (1084x1924);
* ``decoder_output``: the fused two-warp + mask + residual output at 1080x1920;
* ``attn_dec_*``: decoder cross-attention (q from the decoder, k/v from the context) at
  1/2 .. 1/32 of a 1080p frame padded to 1536x2048, channels 64, 128, 128, 128, 256,
  32-channel heads, window 8, block and grid windows;
* ``attn_ae_mid``: autoencoder middle MaxViT, 1 head of 256 channels, window 8, 48x64;
* ``attn_unet_*``: U-Net MaxViT self-attention at latent 48x64 (1x, 1/2, 1/4) with
  channels 256, 512, 1024, head dim 32, window 2, block and grid.

Each in float32 and bfloat16: median (and min) over ``--repeats`` runs timed with CUDA
events after ``--warmup`` runs, the L2 cache flushed before each run. For dsepconv and
decoder_output it also reports the achieved bandwidth against the bytes the op must move
(every input plane read once, the output written once), and for every case the max abs
difference between the kernel and the reference.

Usage::

    python benchmarks/kernels.py [--out benchmarks/results/kernels_<device>.json]
        [--dtypes float32 bfloat16] [--cases dsepconv decoder_output attn]
        [--repeats 50] [--warmup 10] [--no-compile]

Needs a CUDA GPU and the extension ``ldmvfi_fast._C`` built with CUDA (the reference and
compiled columns run without it). Nothing CUDA is touched at import time.
"""
from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from _common import RESULTS, git_info, now, time_cuda_events, write_json


@dataclass
class Case:
    name: str
    op: str
    shape: str
    make: Callable  # (dtype) -> (args tuple, kernel fn, reference fn)
    bytes_moved: Callable | None = None  # (dtype) -> bytes the op must read + write
    extra: dict = field(default_factory=dict)


def _device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def build_cases(torch, which: set[str]) -> list[Case]:
    from ldmvfi_fast.ops.decoder_output_ref import decoder_output_reference
    from ldmvfi_fast.ops.dsepconv_ref import dsepconv_reference
    from ldmvfi_fast.ops.maxvit_ref import maxvit_attention_reference

    ops = torch.ops.ldmvfi_fast
    dev = "cuda"
    cases: list[Case] = []

    def elem(dtype):
        return torch.empty((), dtype=dtype).element_size()

    # ---- DSepConv, 1080p
    B, C, K, H, W = 1, 3, 5, 1080, 1920
    Hin, Win = H + K - 1, W + K - 1

    def make_dsep(dtype):
        g = torch.Generator(device=dev).manual_seed(0)

        def u(*s, lo=-1.0, hi=1.0):
            return (torch.rand(*s, device=dev, generator=g) * (hi - lo) + lo).to(dtype)
        args = (u(B, C, Hin, Win), u(B, K, H, W, lo=0.0), u(B, K, H, W, lo=0.0), u(B, K * K, H, W, lo=-4.0, hi=4.0),
                u(B, K * K, H, W, lo=-4.0, hi=4.0), u(B, K * K, H, W, lo=0.0))
        return args, ops.dsepconv, dsepconv_reference

    def dsep_bytes(dtype):
        planes_in = B * C * Hin * Win + B * (2 * K + 3 * K * K) * H * W
        return (planes_in + B * C * H * W) * elem(dtype)

    if "dsepconv" in which:
        cases.append(Case("dsepconv_1080p", "dsepconv", f"B={B} C={C} K={K} {H}x{W}", make_dsep, dsep_bytes))

    # ---- decoder output, 1080p
    def make_dec(dtype):
        g = torch.Generator(device=dev).manual_seed(1)

        def u(*s, lo=-1.0, hi=1.0):
            return (torch.rand(*s, device=dev, generator=g) * (hi - lo) + lo).to(dtype)
        heads = lambda: (u(B, K, H, W, lo=0.0), u(B, K, H, W, lo=0.0), u(B, K * K, H, W, lo=-4.0, hi=4.0),  # noqa: E731
                         u(B, K * K, H, W, lo=-4.0, hi=4.0))
        args = (u(B, C, H, W), u(B, C, H, W), *heads(), *heads(), u(B, K * K, H, W, lo=0.0),
                u(B, C, H, W, lo=-0.1, hi=0.1))
        return args, ops.decoder_output, decoder_output_reference

    def dec_bytes(dtype):
        planes = B * (2 * C + 2 * (2 * K + 2 * K * K) + K * K + C + C) * H * W  # reads + the write
        return planes * elem(dtype)

    if "decoder_output" in which:
        cases.append(Case("decoder_output_1080p", "decoder_output", f"B={B} C={C} K={K} {H}x{W}", make_dec,
                          dec_bytes))

    # ---- attention
    def make_attn(Hs, Ws, Cc, heads, window, mode, cross, seed):
        def make(dtype):
            g = torch.Generator(device=dev).manual_seed(seed)
            q = torch.randn(1, Hs, Ws, Cc, device=dev, generator=g).to(dtype)
            k = torch.randn(1, Hs, Ws, Cc, device=dev, generator=g).to(dtype) if cross else q * 0.5
            v = torch.randn(1, Hs, Ws, Cc, device=dev, generator=g).to(dtype) if cross else q * -1.0
            table = torch.randn((2 * window - 1) ** 2, heads, device=dev, generator=g) * 0.5
            scale = (Cc // heads) ** -0.5
            grid = mode == "grid"
            kern = lambda q, k, v, t: ops.maxvit_attention(q, k, v, t, window, grid, heads, scale)  # noqa: E731
            ref = lambda q, k, v, t: maxvit_attention_reference(q, k, v, t, window, mode, heads, scale)  # noqa: E731
            return (q, k, v, table), kern, ref
        return make

    def attn_bytes(Hs, Ws, Cc):
        return lambda dtype: 4 * Hs * Ws * Cc * elem(dtype)

    if "attn" in which:
        full_h, full_w = 1536, 2048
        for div, ch in zip((2, 4, 8, 16, 32), (64, 128, 128, 128, 256)):
            Hs, Ws = full_h // div, full_w // div
            for mode in ("block", "grid"):
                cases.append(Case(f"attn_dec_1/{div}_{mode}", "maxvit_attention",
                                  f"{Hs}x{Ws} C={ch} heads={ch // 32} w=8 cross",
                                  make_attn(Hs, Ws, ch, ch // 32, 8, mode, True, div), attn_bytes(Hs, Ws, ch)))
        for mode in ("block", "grid"):
            cases.append(Case(f"attn_ae_mid_{mode}", "maxvit_attention", "48x64 C=256 heads=1 w=8 self",
                              make_attn(48, 64, 256, 1, 8, mode, False, 40), attn_bytes(48, 64, 256)))
        for div, ch in zip((1, 2, 4), (256, 512, 1024)):
            Hs, Ws = 48 // div, 64 // div
            for mode in ("block", "grid"):
                cases.append(Case(f"attn_unet_1/{div}_{mode}", "maxvit_attention",
                                  f"{Hs}x{Ws} C={ch} heads={ch // 32} w=2 self",
                                  make_attn(Hs, Ws, ch, ch // 32, 2, mode, False, 50 + div), attn_bytes(Hs, Ws, ch)))
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default benchmarks/results/kernels_<device>.json)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--cases", nargs="+", default=["dsepconv", "decoder_output", "attn"],
                        choices=["dsepconv", "decoder_output", "attn"])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile(reference) column")
    parser.add_argument("--no-flush", action="store_true", help="do not flush the L2 cache between runs")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("benchmarks/kernels.py: CUDA is not available (no GPU or a CPU build of torch); nothing to do.",
              file=sys.stderr)
        return 2
    try:
        import ldmvfi_fast._C  # noqa: F401  (registers torch.ops.ldmvfi_fast.*)
        have_kernels = torch._C._dispatch_has_kernel_for_dispatch_key("ldmvfi_fast::dsepconv", "CUDA")
        why = "" if have_kernels else "ldmvfi_fast._C has no CUDA kernels"
    except ImportError as exc:
        have_kernels, why = False, f"cannot import ldmvfi_fast._C: {exc}"
    if not have_kernels:
        print(f"warning: {why}; only the reference columns are measured", file=sys.stderr)

    props = torch.cuda.get_device_properties(0)
    device_name = props.name
    out_path = args.out or RESULTS / f"kernels_{_device_slug(device_name)}.json"
    flush = None
    if not args.no_flush:
        l2 = getattr(props, "L2_cache_size", 50 * 2**20) or 50 * 2**20
        flush = torch.empty(int(2 * l2) // 4, dtype=torch.float32, device="cuda")

    meta = {
        "device": device_name,
        "capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": now(),
        "git": git_info(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "l2_flush": flush is not None,
        "statistic": "median over repeats of CUDA-event time per call (ms)",
    }
    results = []
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    cases = build_cases(torch, set(args.cases))
    header = (f"{'case':<24} {'dtype':<9} {'backend':<9} {'median ms':>10} {'min ms':>9} {'GB/s':>8} "
              f"{'x ref':>7}  max|k-ref|")
    print(f"# {device_name}  torch {torch.__version__}  CUDA {torch.version.cuda}")
    print(header)
    print("-" * len(header))
    compiled_cache: dict = {}
    for case in cases:
        for dname in args.dtypes:
            dtype = dtypes[dname]
            try:
                inputs, kern, ref = case.make(dtype)
            except torch.cuda.OutOfMemoryError as exc:
                results.append({"case": case.name, "dtype": dname, "error": f"OOM building inputs: {exc}"})
                continue
            nbytes = case.bytes_moved(dtype) if case.bytes_moved else None
            backends = [("reference", ref)]
            if not args.no_compile:
                key = (case.name, dname)
                compiled_cache[key] = torch.compile(ref, dynamic=False)
                backends.append(("compiled", compiled_cache[key]))
            if have_kernels:
                backends.append(("cuda", kern))
            ref_ms = None
            ref_out = None
            for bname, fn in backends:
                row = {"case": case.name, "op": case.op, "shape": case.shape, "dtype": dname, "backend": bname}
                try:
                    with torch.no_grad():
                        out = fn(*inputs)
                        if bname == "reference":
                            ref_out = out.float()
                        elif ref_out is not None:
                            row["max_abs_diff_vs_reference"] = (out.float() - ref_out).abs().max().item()
                        del out
                        times = time_cuda_events(fn, inputs, args.warmup, args.repeats, flush)
                except Exception as exc:  # one failing backend must not stop the run
                    row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                    results.append(row)
                    print(f"{case.name:<24} {dname:<9} {bname:<9} ERROR {row['error'][:80]}")
                    torch.cuda.empty_cache()
                    continue
                med = statistics.median(times)
                row.update(median_ms=med, min_ms=min(times), repeats=len(times))
                if nbytes:
                    row["bytes"] = nbytes
                    row["gbps"] = nbytes / (med * 1e-3) / 1e9
                if bname == "reference":
                    ref_ms = med
                if ref_ms:
                    row["speedup_vs_reference"] = ref_ms / med
                results.append(row)
                gb = f"{row['gbps']:8.1f}" if "gbps" in row else f"{'':>8}"
                sp = f"{row['speedup_vs_reference']:7.2f}" if "speedup_vs_reference" in row else f"{'':>7}"
                diff = row.get("max_abs_diff_vs_reference")
                diff_s = "" if diff is None else (f"{diff:.2e}" if math.isfinite(diff) else "nan")
                print(f"{case.name:<24} {dname:<9} {bname:<9} {med:10.3f} {min(times):9.3f} {gb} {sp}  {diff_s}")
            del inputs, ref_out
            torch.cuda.empty_cache()

    write_json(out_path, {"meta": meta, "results": results})
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
