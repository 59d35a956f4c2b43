#!/usr/bin/env python
"""Build TensorRT engines (encoder, U-Net step, decoder) from an ONNX engine folder.

    python export/build_trt.py --engines ONNX_DIR [--out DIR] [--precision fp32|fp16|bf16]
        [--profile min=HxW] [--profile opt=HxW] [--profile max=HxW] [--profile batch=1,1,4]
        [--timing-cache PATH] [--plugins libldmvfi_fast_trt_plugins.so] [--refittable]
        [--workspace GB] [--overwrite]

ONNX_DIR comes from ``python export/export_onnx.py`` (its manifest gives the graphs, their
inputs and the min/opt/max shape profiles; ``--profile`` replaces the frame sizes, padded as
the pipeline pads them). ``--precision`` defaults to the graphs' own (the manifest's dtype:
float32 -> fp32, float16 -> fp16, bfloat16 -> bf16). TensorRT 11 builds graphs in the dtypes
written in them (strongly typed only), so there it must be the graphs' precision: for fp16
engines export float16 graphs (``export_onnx.py --dtype float16``); asking another is refused
with that command. TensorRT 10 also builds a float32 folder at fp16/bf16, keeping the
precision policy's islands (ldmvfi_fast/precision.py) float32 by layer constraints.
The output folder (default ``ONNX_DIR.trt-<precision>`` beside it)
gets one ``<graph>.<precision>.<key>.engine`` per sub-model and a ``manifest.json`` of runtime
``tensorrt``; run it with ``ldmvfi-fast interpolate --runtime tensorrt --engines DIR``.
Engines only run with the TensorRT version, GPU and plugin library they were built with.
A thin wrapper over :func:`ldmvfi_fast.export.tensorrt.build_trt`.
Exit status: 0 done, 2 a user error or missing TensorRT (one line on stderr), 1 a bug.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="exit status: 0 done, 2 user error, 1 internal error")
    p.add_argument("--engines", help="ONNX engine folder (export/export_onnx.py); required")
    p.add_argument("--out", help="output folder (new or empty; see --overwrite); default ENGINES.trt-PRECISION")
    from ldmvfi_fast.dtypes import SHORT

    p.add_argument("--precision", choices=tuple(SHORT.values()),
                   help="engine precision; default: the ONNX graphs' (their manifest's dtype). TensorRT 11 builds "
                        "only that; TensorRT 10 also builds float32 graphs at fp16/bf16 with the precision "
                        "policy's float32 islands kept by layer constraints")
    p.add_argument("--profile", action="append", metavar="SIDE=VALUE",
                   help="min=HxW, opt=HxW, max=HxW (frame sizes) or batch=MIN,OPT,MAX; repeatable; default: "
                        "the ONNX manifest's profiles")
    p.add_argument("--timing-cache", help="timing cache file (read if present, written back)")
    p.add_argument("--plugins", help="the ldmvfi_fast TensorRT plugin library (needed by custom_ops=domain graphs)")
    p.add_argument("--refittable", action="store_true", help="build refittable engines (BuilderFlag.REFIT)")
    p.add_argument("--workspace", type=float, metavar="GB", help="builder workspace limit in GB")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the engine files and manifest in a non-empty --out (nothing else is touched)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    from ldmvfi_fast.errors import EXIT_USER_ERROR, LdmvfiError
    from ldmvfi_fast.manifest import read_manifest
    from ldmvfi_fast.export.tensorrt import build_trt, import_tensorrt, parse_profile

    t0 = time.perf_counter()
    try:
        import_tensorrt()  # first: without TensorRT nothing here can run, whatever the options
        if not args.engines:
            p.error("the following arguments are required: --engines")
        out = build_trt(args.engines, args.out, precision=args.precision, profile=parse_profile(args.profile),
                        timing_cache=args.timing_cache, plugins=args.plugins, refittable=args.refittable,
                        workspace_gb=args.workspace, overwrite=args.overwrite)
    except (LdmvfiError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    rec = read_manifest(out)["tensorrt"]
    print(f"wrote {out} (TensorRT {rec['version']} {rec['precision']} engines, {rec['precision_mode']}) "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
