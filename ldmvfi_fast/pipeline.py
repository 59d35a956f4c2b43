"""Frame interpolation pipeline: padding, encoding once per frame, sampling, decoding.

Frames are float tensors (B, 3, H, W) in [-1, 1]. :class:`Interpolator` pads them,
encodes each frame ONCE (latent + the five decoder features), samples the middle latent
with DDIM (or DDPM) conditioned on both neighbours' latents, decodes it against both
neighbours' features and frames, crops and clamps. In a video every inner frame serves two
pairs but is encoded once; recursive x4/x8 encodes each new middle frame once too.

Padding:
* ``reference`` (default): as the original. The unit is 256 when H <= 256, else 512,
  for both dimensions; reflect padding at the bottom and right; a pad equal to the size
  is skipped. Sizes the original cannot process (reflect pad >= the size, e.g. 100 px
  high) raise :class:`PaddingError` suggesting ``minimal``.
* ``minimal``: to multiples of 256 (what the architecture needs), reflect padding
  repeated as needed so tiny frames work too. Faster on large frames (1080p: 1280x2048
  instead of 1536x2048 pixels); its quality cost against ``reference`` needs trained
  weights to measure and has not been measured yet.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError, PaddingError  # noqa: F401 - re-exported
from .models.ldmvfi import LDMVFI
from .sampling import SAMPLERS, ddim_schedule

log = logging.getLogger(__name__)

PADDING_MODES = ("reference", "minimal")
MULTI = (2, 4, 8)


def pad_amounts(H: int, W: int, mode: str, arch_unit: int = 256) -> tuple[int, int]:
    """Bottom and right padding for an H x W frame."""
    if mode == "reference":
        unit = 256 if H <= 256 else 512

        def amount(n: int) -> int:
            p = (unit - n % unit) % unit
            return 0 if p == n else p

        ph, pw = amount(H), amount(W)
        for n, p, axis in ((H, ph, "height"), (W, pw, "width")):
            if p >= n:
                raise PaddingError(f"frame {axis} {n} is too small for the original's reflect padding to {unit} "
                                   f"(pad {p} >= {n}); use padding='minimal' (--padding minimal)")
            if (n + p) % arch_unit:
                raise PaddingError(f"the original's padding leaves the {axis} at {n + p}, not a multiple of "
                                   f"{arch_unit} that the model needs (the original fails here too); "
                                   "use padding='minimal' (--padding minimal)")
        return ph, pw
    if mode == "minimal":
        return (-H) % arch_unit, (-W) % arch_unit
    raise ValueError(f"padding must be one of {PADDING_MODES}, got {mode!r}")


def reflect_pad(x: Tensor, ph: int, pw: int) -> Tensor:
    """Reflect-pad bottom/right; pads larger than the frame are applied in several reflections."""
    while ph > 0 or pw > 0:
        sh, sw = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        if (ph and sh <= 0) or (pw and sw <= 0):  # 1-pixel dimension: nothing to reflect
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            break
        x = F.pad(x, (0, sw, 0, sh), mode="reflect")
        ph, pw = ph - sh, pw - sw
    return x


def check_frames(*frames: Tensor, values: bool = True) -> None:
    """Raise :class:`InputError` unless all frames are (B, 3, H, W) float tensors of one shape
    and (with ``values``) finite. The value check reads every pixel (and syncs on CUDA)."""
    ref = frames[0]
    for i, f in enumerate(frames):
        if not isinstance(f, Tensor):
            raise InputError(f"frame {i} is a {type(f).__name__}, expected a torch.Tensor")
        if f.dim() != 4:
            raise InputError(f"frame {i} must be (B, 3, H, W), got shape {tuple(f.shape)}")
        if f.shape[1] != 3:
            raise InputError(f"frame {i} has {f.shape[1]} channels; LDMVFI needs RGB (3 channels)")
        if not f.is_floating_point():
            raise InputError(f"frame {i} has dtype {f.dtype}; expected floats in [-1, 1] "
                             "(use ldmvfi_fast.video.to_tensor for uint8 images)")
        if f.shape != ref.shape:
            raise InputError(f"frame sizes differ: {tuple(ref.shape)} vs {tuple(f.shape)}")
        if f.shape[0] == 0 or f.shape[2] == 0 or f.shape[3] == 0:
            raise InputError(f"frame {i} is empty: shape {tuple(f.shape)}")
        if values and not torch.isfinite(f).all():
            raise InputError(f"frame {i} contains NaN or infinite values")


@dataclass
class Encoded:
    """One batch of frames, padded and encoded once.

    frame: (B, 3, Hp, Wp) padded frame; z: (B, 3, Hp/32, Wp/32) latent (not quantised);
    phi: five feature maps at 1/2 ... 1/32; size: the unpadded (H, W).
    """
    frame: Tensor
    z: Tensor
    phi: list[Tensor]
    size: tuple[int, int]


class Interpolator:
    """Interpolates middle frames with an :class:`LDMVFI` model.

    Args:
        model: a loaded model (eval mode, on its device and dtype).
        steps: DDIM steps (the paper: 200); ignored by the ``ddpm`` sampler (all T steps).
        eta: DDIM stochasticity (the paper: 1.0).
        sampler: ``ddim`` or ``ddpm``.
        padding: ``reference`` or ``minimal`` (see the module docstring).
    """

    def __init__(self, model: LDMVFI, steps: int = 200, eta: float = 1.0, sampler: str = "ddim",
                 padding: str = "reference"):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.model = model
        self.sampler, self.padding, self.eta = sampler, padding, float(eta)
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.arch_unit = model.cfg.min_pad_unit()
        self.ddim = ddim_schedule(model.alphas_cumprod, steps, eta, device=self.device) if sampler == "ddim" else None

    # -- building blocks -------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, frames: Tensor) -> Encoded:
        """(B, 3, H, W) frames in [-1, 1] -> :class:`Encoded` (padded, encoded once)."""
        check_frames(frames)
        H, W = frames.shape[-2:]
        ph, pw = pad_amounts(H, W, self.padding, self.arch_unit)
        x = reflect_pad(frames.to(self.device, self.dtype), ph, pw)
        z, phi = self.model.encode(x)
        return Encoded(x, z, phi, (H, W))

    def new_generator(self, seed: int | None) -> torch.Generator:
        g = torch.Generator(device=self.device)
        if seed is None:
            g.seed()
        else:
            g.manual_seed(int(seed))
        return g

    @torch.no_grad()
    def sample_latent(self, e0: Encoded, e1: Encoded, generator: torch.Generator | None = None,
                      x_T: Tensor | None = None, return_intermediates: bool = False):
        """Sample the middle latent (B, 3, h, w) conditioned on two encoded frames."""
        cond = torch.cat([e0.z, e1.z], dim=1)
        shape = (cond.shape[0], self.model.cfg.diffusion.channels) + tuple(cond.shape[2:])
        if x_T is None:
            x_T = torch.randn(shape, generator=generator, device=self.device, dtype=torch.float32).to(self.dtype)
        elif tuple(x_T.shape) != shape:
            raise InputError(f"x_T must have shape {shape}, got {tuple(x_T.shape)}")
        else:
            x_T = x_T.to(self.device, self.dtype)

        def eps_fn(x: Tensor, t: Tensor) -> Tensor:
            return self.model.eps(x, t, cond)

        if self.sampler == "ddim":
            return SAMPLERS["ddim"](eps_fn, x_T, self.ddim, generator=generator,
                                    return_intermediates=return_intermediates)
        return SAMPLERS["ddpm"](eps_fn, x_T, self.model.schedule, generator=generator,
                                return_intermediates=return_intermediates)

    @torch.no_grad()
    def decode(self, z: Tensor, e0: Encoded, e1: Encoded, quantize: bool = True) -> Tensor:
        """Latent -> (B, 3, H, W) frame cropped to the input size, NOT clamped."""
        out = self.model.decode(z, e0.phi, e1.phi, e0.frame, e1.frame, quantize=quantize)
        H, W = e0.size
        return out[:, :, :H, :W]

    @torch.no_grad()
    def interpolate_encoded(self, e0: Encoded, e1: Encoded, generator: torch.Generator | None = None,
                            x_T: Tensor | None = None) -> Tensor:
        """Middle frame (B, 3, H, W) in [-1, 1] between two encoded frames."""
        if e0.frame.shape != e1.frame.shape:
            raise InputError(f"frame sizes differ: {tuple(e0.frame.shape)} vs {tuple(e1.frame.shape)}")
        z = self.sample_latent(e0, e1, generator, x_T)
        return self.decode(z, e0, e1).clamp(-1.0, 1.0)

    # -- user-facing -----------------------------------------------------------------------
    @torch.no_grad()
    def interpolate(self, frame0: Tensor, frame1: Tensor, *, seed: int | None = None,
                    generator: torch.Generator | None = None, x_T: Tensor | None = None) -> Tensor:
        """Middle frame between ``frame0`` and ``frame1``.

        Args:
            frame0, frame1: (B, 3, H, W) or (3, H, W) float frames in [-1, 1] (a batch of pairs
                when B > 1), any size the padding mode supports.
            seed / generator / x_T: reproducibility: a seed, a ``torch.Generator`` on the model's
                device, or the explicit initial noise (B, 3, Hp/32, Wp/32).

        Returns:
            (B, 3, H, W) (or (3, H, W)) in [-1, 1], on the model's device and dtype.
        """
        squeeze = isinstance(frame0, Tensor) and isinstance(frame1, Tensor) and frame0.dim() == frame1.dim() == 3
        if squeeze:
            frame0, frame1 = frame0[None], frame1[None]
        check_frames(frame0, frame1, values=False)  # fail fast on shapes; encode() checks the values
        if generator is None and x_T is None:
            generator = self.new_generator(seed)
        out = self.interpolate_encoded(self.encode(frame0), self.encode(frame1), generator, x_T)
        return out[0] if squeeze else out

    @torch.no_grad()
    def interpolate_multi(self, e0: Encoded, e1: Encoded, multi: int, generator: torch.Generator | None = None,
                          ) -> list[Tensor]:
        """The ``multi - 1`` frames between two encoded frames, in temporal order (recursive
        bisection for x4/x8; every new middle frame is encoded once)."""
        if multi not in MULTI:
            raise ValueError(f"multi must be one of {MULTI}, got {multi}")
        mid = self.interpolate_encoded(e0, e1, generator)
        if multi == 2:
            return [mid]
        em = self.encode(mid)
        return (self.interpolate_multi(e0, em, multi // 2, generator) + [mid]
                + self.interpolate_multi(em, e1, multi // 2, generator))

    @torch.no_grad()
    def interpolate_sequence(self, frames: Iterable[Tensor], multi: int = 2, *, seed: int | None = None,
                             generator: torch.Generator | None = None) -> Iterator[Tensor]:
        """Frame-rate up-conversion of a sequence.

        Args:
            frames: iterable of (1, 3, H, W) (or (3, H, W)) frames in [-1, 1], all one size.
            multi: 2, 4 or 8.

        Yields:
            (1, 3, H, W) frames in [-1, 1]: each input frame followed by the ``multi - 1`` new
            frames before the next one; N inputs give ``multi * (N - 1) + 1`` outputs.
            Each input frame is encoded once and reused for both pairs it belongs to.
        """
        if multi not in MULTI:
            raise ValueError(f"multi must be one of {MULTI}, got {multi}")
        if generator is None:
            generator = self.new_generator(seed)
        prev_frame, prev_enc = None, None
        for f in frames:
            f = f[None] if f.dim() == 3 else f
            f = f.to(self.device, self.dtype)
            enc = self.encode(f)
            if prev_enc is not None:
                if enc.frame.shape != prev_enc.frame.shape:
                    raise InputError(f"frame sizes differ within the sequence: {prev_enc.size} vs {enc.size}")
                yield prev_frame
                yield from self.interpolate_multi(prev_enc, enc, multi, generator)
            prev_frame, prev_enc = f, enc
        if prev_frame is not None:
            yield prev_frame
