#!/usr/bin/env python
"""Compile LDMVFI's sub-models with AOTInductor: encoder.pt2, unet_step.pt2, decoder.pt2 (AOTI packages) + manifest.json.

    python export/build_aoti.py --ckpt CKPT --out DIR [--config CFG] [--device cpu|cuda] [--jobs N] [--overwrite]
    python export/build_aoti.py --engines PT2_DIR --out DIR [--device cpu|cuda] [--jobs N] [--overwrite]

--ckpt exports the checkpoint with torch.export first; --engines compiles the programs of an
existing torch.export folder (made by `ldmvfi-fast export`). Run the result with
``ldmvfi_fast.runtime.aoti.AotiBackbone.from_dir(DIR)`` (or ``load_backbone("aoti", engines=DIR)``).
CPU packages are compiled for this machine's processor (-march=native): build where they run.
A thin wrapper over :func:`ldmvfi_fast.export.aoti.build_aoti`.
Exit status: 0 done, 2 a user error (one line on stderr, nothing written), 1 a bug.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="exit status: 0 done, 2 user error, 1 internal error")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="LDMVFI checkpoint (.ckpt): exported with torch.export, then compiled")
    src.add_argument("--engines", help="a torch.export engine folder (ldmvfi-fast export) to compile")
    p.add_argument("--out", required=True, help="output folder (new or empty; see --overwrite)")
    p.add_argument("--config", help="with --ckpt: preset (official, tiny) or original YAML; default: inferred")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]: what the packages run on")
    p.add_argument("--raw-weights", action="store_true", help="with --ckpt: the raw U-Net weights, not the EMA ones")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the engine files in a non-empty --out (nothing else in it is touched)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="compile N sub-models at once, in worker processes (default 1; 2-3 on a multi-core "
                        "machine: the compiler's code generation is single-threaded)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be a positive integer, got {args.jobs}")
    if args.engines and (args.config or args.raw_weights):
        p.error("--config and --raw-weights go with --ckpt (an engine folder already holds its weights)")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    from pathlib import Path

    from ldmvfi_fast.errors import EXIT_USER_ERROR, LdmvfiError
    from ldmvfi_fast.export.aoti import AOTI_FILES, aoti_device, build_aoti
    from ldmvfi_fast.manifest import MANIFEST_NAME
    from ldmvfi_fast.export.pt2 import check_export_target

    t0 = time.perf_counter()
    try:
        aoti_device(args.device)
        check_export_target(Path(args.out), args.overwrite)  # before the (slow) load, export and compile
        if args.ckpt:
            from ldmvfi_fast.checkpoint import load_model

            source = load_model(args.ckpt, args.config, use_ema=False if args.raw_weights else None,
                                device=args.device)
        else:
            source = args.engines
        out = build_aoti(source, args.out, device=args.device, overwrite=args.overwrite, jobs=args.jobs)
    except (LdmvfiError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    size = sum((out / f).stat().st_size for f in [*AOTI_FILES.values(), MANIFEST_NAME]) / 1e6
    print(f"wrote {out} (AOTInductor packages for {args.device}, {size:.1f} MB) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
