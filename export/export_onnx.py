#!/usr/bin/env python
"""Export an LDMVFI checkpoint to ONNX: encoder.onnx, unet_step.onnx, decoder.onnx + manifest.json.

    python export/export_onnx.py --ckpt CKPT --out DIR [--config CFG] [--dtype float32|float16|bfloat16]
                                 [--opset N] [--custom-ops decompose|domain] [--overwrite]

Run the result with ``ldmvfi_fast.runtime.onnxruntime.OrtBackbone.from_dir(DIR)`` (or
``load_backbone("onnxruntime", engines=DIR)``). A thin wrapper over
:func:`ldmvfi_fast.export.onnx.export_onnx`; needs ``pip install onnx onnxscript onnxruntime``.
Exit status: 0 done, 2 a user error (one line on stderr, nothing written), 1 a bug.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from ldmvfi_fast.export.onnx import CUSTOM_OPS_MODES, OPSETS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="exit status: 0 done, 2 user error, 1 internal error")
    p.add_argument("--ckpt", required=True, help="LDMVFI checkpoint (.ckpt)")
    p.add_argument("--out", required=True, help="output folder (new or empty; see --overwrite)")
    p.add_argument("--config", help="preset (official, tiny) or original YAML; default: inferred from the ckpt")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="precision of the graphs (default float32)")
    p.add_argument("--opset", type=int, default=20, help=f"ONNX opset, {OPSETS.start}..{OPSETS.stop - 1} (default 20)")
    p.add_argument("--custom-ops", default="decompose", choices=CUSTOM_OPS_MODES,
                   help="decompose: standard ONNX ops, any ONNX runtime (default); domain: DSepConv/DecoderOutput "
                        "nodes of the ldmvfi_fast domain, for TensorRT plugins (not runnable by ONNX Runtime)")
    p.add_argument("--raw-weights", action="store_true", help="the raw U-Net weights instead of the EMA ones")
    p.add_argument("--optimize", action="store_true", help="run onnxscript's graph optimizer (slow on the decoder)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip running each graph in ONNX Runtime at a second size against PyTorch")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the engine files in a non-empty --out (nothing else in it is touched)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    import torch

    from ldmvfi_fast.checkpoint import load_model
    from ldmvfi_fast.errors import EXIT_USER_ERROR, LdmvfiError
    from ldmvfi_fast.export.onnx import export_onnx

    t0 = time.perf_counter()
    try:
        model = load_model(args.ckpt, args.config, use_ema=False if args.raw_weights else None)
        out = export_onnx(model, args.out, dtype=getattr(torch, args.dtype), opset=args.opset,
                          custom_ops=args.custom_ops, overwrite=args.overwrite, optimize=args.optimize,
                          verify=not args.no_verify)
    except LdmvfiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"wrote {out} (ONNX opset {args.opset}, {args.dtype}) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
