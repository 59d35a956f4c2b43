"""Frame interpolation pipeline: padding, encoding once per frame, sampling, decoding.

Frames are float tensors (B, 3, H, W) in [-1, 1]. :class:`Interpolator` pads them,
encodes each frame ONCE (latent + the decoder features), samples the middle latent with a
sampler of the registry (:data:`ldmvfi_fast.sampling.SAMPLERS`) conditioned on both
neighbours' latents, decodes it against both neighbours' features and frames, crops and
clamps. In a video every inner frame serves two pairs but is encoded once; recursive x4/x8
encodes each new middle frame once too; across a scene cut the earlier frame is repeated.

The model is reached only through the :class:`~ldmvfi_fast.runtime.base.Backbone` seam
(``encode`` / ``denoise`` / ``decode`` plus a few facts), so the eager PyTorch model,
exported programs and engines all run the same pipeline. Padding rules are in
:mod:`ldmvfi_fast.padding`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor

from . import precision
from .choices import MULTI
from .errors import InputError, OptionError, PaddingError  # noqa: F401 - PaddingError re-exported
from .padding import PADDING_MODES, check_padding_mode, pad_amounts, reflect_pad  # noqa: F401 - re-exported
from .runtime import Backbone, as_backbone
from .sampling import Callback, SamplingPlan, SamplingRequest, eps_from, resolve_sampling
from .scene import SceneDetector

log = logging.getLogger(__name__)

#: frames may exceed [-1, 1] by this much (rounding of a conversion) before they are refused
RANGE_TOLERANCE = 1e-3

__all__ = ["Interpolator", "Encoded", "check_frames", "pad_amounts", "reflect_pad", "PADDING_MODES", "MULTI",
           "InputError", "PaddingError"]


def _label(i: int, first_index: int, what: str) -> str:
    return f"{what} {first_index + i}"


def check_frames(*frames: Tensor, values: bool = True, first_index: int = 0, what: str = "frame") -> None:
    """Raise :class:`InputError` unless all frames are (B, 3, H, W) float tensors of one shape
    and (with ``values``) finite and within [-1, 1]. Frames are named ``{what} {first_index + i}``
    in messages. The value check reads every pixel once (one host sync on CUDA)."""
    ref = frames[0]
    for i, f in enumerate(frames):
        name = _label(i, first_index, what)
        if not isinstance(f, Tensor):
            raise InputError(f"{name} is a {type(f).__name__}, expected a torch.Tensor")
        if f.dim() != 4:
            raise InputError(f"{name} must be (B, 3, H, W), got shape {tuple(f.shape)}")
        if f.shape[1] != 3:
            raise InputError(f"{name} has {f.shape[1]} channels; LDMVFI needs RGB (3 channels)")
        if not f.is_floating_point():
            raise InputError(f"{name} has dtype {f.dtype}; expected floats in [-1, 1] "
                             "(use ldmvfi_fast.video.to_tensor for uint8 images)")
        if f.shape != ref.shape:
            raise InputError(f"frame sizes differ: {_label(0, first_index, what)} is {tuple(ref.shape)}, "
                             f"{name} is {tuple(f.shape)}")
        if f.shape[0] == 0 or f.shape[2] == 0 or f.shape[3] == 0:
            raise InputError(f"{name} is empty: shape {tuple(f.shape)}")
        if values:
            lo, hi = torch.aminmax(f.detach())
            lo, hi = (float(v) for v in torch.stack([lo, hi]).float().cpu())
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise InputError(f"{name} contains NaN or infinite values")
            if lo < -1.0 - RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
                hint = (" (it looks like 0..255 pixel values: divide by 127.5 and subtract 1, or use "
                        "ldmvfi_fast.video.to_tensor)" if hi > 2.0 else
                        " (0..1 images: multiply by 2 and subtract 1)" if lo >= -RANGE_TOLERANCE and hi <= 1.0 + RANGE_TOLERANCE
                        else "")
                raise InputError(f"{name} has values in [{lo:.4g}, {hi:.4g}]; frames must be in [-1, 1]{hint}")


def _distillation(backbone) -> dict | None:
    """The backbone's ``distillation`` dict (a distilled student's), or None (a teacher)."""
    d = getattr(backbone, "distillation", None)
    if d is None:
        return None
    if not isinstance(d, dict):
        raise OptionError(f"the backbone's distillation must be a dict or None, got {type(d).__name__}")
    return d


@dataclass
class Encoded:
    """One batch of frames, padded and encoded once: what :meth:`Interpolator.decode` needs.

    Attributes:
        frame: (B, 3, Hp, Wp) the padded frame, in [-1, 1];
        z: (B, C, Hp/32, Wp/32) latent (not quantised);
        phi: the feature maps, one per level (1/2 ... 1/32);
        size: the unpadded (H, W).
    """
    frame: Tensor
    z: Tensor
    phi: list[Tensor]
    size: tuple[int, int]


class Interpolator:
    """Interpolates middle frames with a :class:`~ldmvfi_fast.runtime.base.Backbone`.

    Args:
        backbone: a loaded :class:`~ldmvfi_fast.models.ldmvfi.LDMVFI` (wrapped in a
            :class:`~ldmvfi_fast.runtime.torch.TorchBackbone`) or any backbone (exported
            programs, engines, a distilled student).
        steps: sampling steps, 1..T (default :data:`~ldmvfi_fast.sampling.DEFAULT_STEPS`, the
            paper's DDIM count; a student's own count); refused by ``ddpm``, which runs all T.
        eta: stochasticity in [0, 1] for ``ddim`` and ``dpmpp_2m_sde`` (default
            :data:`~ldmvfi_fast.sampling.DEFAULT_ETA`, the paper's; a student's
            :data:`~ldmvfi_fast.sampling.STUDENT_ETA`); refused by the samplers that take none.
        sampler: a name of :data:`ldmvfi_fast.sampling.SAMPLERS` (default
            :data:`~ldmvfi_fast.sampling.DEFAULT_SAMPLER`; a student's own sampler).
        padding: ``reference`` or ``minimal`` (see :mod:`ldmvfi_fast.padding`).
        spacing: timestep spacing (:data:`ldmvfi_fast.sampling.SPACINGS`; default: the sampler's,
            ``uniform`` for DDIM as the original).
        timesteps: explicit descending timesteps (instead of a spacing; ``steps``, if given, must
            count them).
        options: the same sampling options as one :class:`~ldmvfi_fast.sampling.SamplingRequest`
            (built once, e.g. by the command line before the model loads), instead of the
            keywords ``steps``, ``eta``, ``sampler``, ``spacing`` and ``timesteps``.

    The options are resolved once by :func:`~ldmvfi_fast.sampling.resolve_sampling` against the
    backbone's own ``alphas_cumprod`` (:attr:`plan`). A distilled student (a backbone whose
    ``distillation`` attribute is a dict: ``method``, ``prediction``, ``steps``, ``timesteps``,
    ``sampler``) samples by default with its sampler on its timesteps; what the caller passes
    wins, and a step count or spacing other than the student's is warned about (the student was
    trained for its own timesteps).

    Attributes (what runs, from :attr:`plan`): ``sampler``, ``sampler_spec``, ``steps`` (U-Net
    calls: T for ``ddpm``), ``eta`` (None for a sampler that takes none), ``spacing``,
    ``timesteps`` (a list, or None) and ``schedule``.

    Bad options raise :class:`~ldmvfi_fast.errors.OptionError` here (a
    :class:`~ldmvfi_fast.sampling.SamplingOptionError` for the sampling options), before
    anything runs.
    """

    def __init__(self, backbone, steps: int | None = None, eta: float | None = None, sampler: str | None = None,
                 padding: str = "reference", spacing: str | None = None, timesteps=None, *,
                 options: SamplingRequest | None = None):
        self.backbone: Backbone = as_backbone(backbone)
        self.distillation = _distillation(self.backbone)
        keywords = {"steps": steps, "eta": eta, "sampler": sampler, "spacing": spacing, "timesteps": timesteps}
        if options is None:
            options = SamplingRequest(sampler=sampler, steps=steps, eta=eta, spacing=spacing, timesteps=timesteps)
        elif any(v is not None for v in keywords.values()):
            given = ", ".join(k for k, v in keywords.items() if v is not None)
            raise OptionError(f"give the sampling options either as options= or as keywords, not both ({given} "
                              "given beside options=)")
        self.device, self.dtype = self.backbone.device, self.backbone.dtype
        #: the sampling options resolved once: what runs, with its schedule on the backbone's alphas
        self.plan: SamplingPlan = resolve_sampling(options, self.backbone.alphas_cumprod, self.distillation,
                                                   device=self.device)
        self.padding = check_padding_mode(padding)
        plan = self.plan
        self.sampler, self.sampler_spec, self.steps, self.eta = plan.sampler, plan.spec, plan.steps, plan.eta
        self.spacing = plan.spacing
        self.timesteps = None if plan.timesteps is None else list(plan.timesteps)
        self.schedule = plan.schedule
        #: frames and latents the pipeline holds: float32 under half (precision islands io, sampler)
        self.io_dtype = precision.compute_dtype("io", self.dtype)
        self.state_dtype = precision.compute_dtype("sampler", self.dtype)
        self.arch_unit = self.backbone.pad_unit

    @property
    def model(self):
        """The eager :class:`~ldmvfi_fast.models.ldmvfi.LDMVFI` behind a torch backbone (None otherwise)."""
        return getattr(self.backbone, "model", None)

    @property
    def ddim(self):
        """The DDIM schedule (when the sampler is ``ddim``)."""
        return self.schedule if self.sampler == "ddim" else None

    # -- building blocks -------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, frames: Tensor, *, first_index: int = 0) -> Encoded:
        """(B, 3, H, W) frames in [-1, 1] -> :class:`Encoded` (padded, encoded once)."""
        check_frames(frames, first_index=first_index)
        H, W = frames.shape[-2:]
        ph, pw = pad_amounts(H, W, self.padding, self.arch_unit)
        self.backbone.check_size(H + ph, W + pw, frames.shape[0])
        x = reflect_pad(frames.to(self.device, self.io_dtype), ph, pw)
        z, phi = self.backbone.encode(x)
        return Encoded(x, z, list(phi), (H, W))

    def new_generator(self, seed: int | None) -> torch.Generator:
        g = torch.Generator(device=self.device)
        if seed is None:
            g.seed()
        else:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
                raise OptionError(f"seed must be an integer in [0, 2**63), got {seed!r}")
            g.manual_seed(seed)
        return g

    def _eps_fn(self, cond: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        bb = self.backbone
        if bb.prediction == "eps":
            return lambda x, t: bb.denoise(x, t, cond)
        return lambda x, t: eps_from(bb.denoise(x, t, cond), x, t, bb.alphas_cumprod, bb.prediction)

    @torch.no_grad()
    def sample_latent(self, e0: Encoded, e1: Encoded, generator: torch.Generator | None = None,
                      x_T: Tensor | None = None, return_intermediates: bool = False,
                      callback: Callback | None = None):
        """Sample the middle latent (B, C, h, w) conditioned on two encoded frames.

        ``callback(done, total)`` is called after each step (ints only: no host sync)."""
        cond = torch.cat([e0.z, e1.z], dim=1)
        shape = (cond.shape[0], self.backbone.latent_channels) + tuple(cond.shape[2:])
        if x_T is None:
            x_T = torch.randn(shape, generator=generator, device=self.device, dtype=torch.float32).to(self.state_dtype)
        elif tuple(x_T.shape) != shape:
            raise InputError(f"x_T must have shape {shape}, got {tuple(x_T.shape)}")
        else:
            x_T = x_T.to(self.device, self.state_dtype)
        return self.sampler_spec.sample(self._eps_fn(cond), x_T, self.schedule, generator=generator,
                                        callback=callback, return_intermediates=return_intermediates)

    @torch.no_grad()
    def decode(self, z: Tensor, e0: Encoded, e1: Encoded, quantize: bool = True) -> Tensor:
        """Latent -> (B, 3, H, W) frame cropped to the input size, NOT clamped.

        ``quantize=False`` (skip the codebook; parity checks) needs the torch backbone."""
        if e0.frame.shape != e1.frame.shape:
            raise InputError(f"frame sizes differ: {tuple(e0.frame.shape)} vs {tuple(e1.frame.shape)}")
        kw = {} if quantize else {"quantize": False}
        out = self.backbone.decode(z, e0.phi, e1.phi, e0.frame, e1.frame, **kw)
        H, W = e0.size
        return out[:, :, :H, :W]

    @torch.no_grad()
    def interpolate_encoded(self, e0: Encoded, e1: Encoded, generator: torch.Generator | None = None,
                            x_T: Tensor | None = None, callback: Callback | None = None) -> Tensor:
        """Middle frame (B, 3, H, W) in [-1, 1] between two encoded frames."""
        if e0.frame.shape != e1.frame.shape:
            raise InputError(f"frame sizes differ: {tuple(e0.frame.shape)} vs {tuple(e1.frame.shape)}")
        z = self.sample_latent(e0, e1, generator, x_T, callback=callback)
        return self.decode(z, e0, e1).clamp(-1.0, 1.0)

    # -- user-facing -----------------------------------------------------------------------
    @torch.no_grad()
    def interpolate(self, frame0: Tensor, frame1: Tensor, *, seed: int | None = None,
                    generator: torch.Generator | None = None, x_T: Tensor | None = None,
                    callback: Callback | None = None) -> Tensor:
        """Middle frame between ``frame0`` and ``frame1``.

        Args:
            frame0, frame1: (B, 3, H, W) or (3, H, W) float frames in [-1, 1] (a batch of pairs
                when B > 1), any size the padding mode supports.
            seed / generator / x_T: reproducibility: a seed, a ``torch.Generator`` on the
                backbone's device, or the explicit initial noise (B, C, Hp/32, Wp/32).
            callback: ``callback(done, total)`` after each sampling step (progress; ints only).

        Returns:
            (B, 3, H, W) (or (3, H, W)) in [-1, 1], on the backbone's device and dtype.
        """
        squeeze = isinstance(frame0, Tensor) and isinstance(frame1, Tensor) and frame0.dim() == frame1.dim() == 3
        if squeeze:
            frame0, frame1 = frame0[None], frame1[None]
        check_frames(frame0, frame1, values=False)  # fail fast on shapes; encode() checks the values
        if generator is None and x_T is None:
            generator = self.new_generator(seed)
        e0 = self.encode(frame0, first_index=0)
        e1 = self.encode(frame1, first_index=1)
        out = self.interpolate_encoded(e0, e1, generator, x_T, callback=callback)
        return out[0] if squeeze else out

    @torch.no_grad()
    def interpolate_multi(self, e0: Encoded, e1: Encoded, multi: int, generator: torch.Generator | None = None,
                          ) -> list[Tensor]:
        """The ``multi - 1`` frames between two encoded frames, in temporal order (recursive
        bisection for x4/x8; every new middle frame is encoded once)."""
        if multi not in MULTI:
            raise OptionError(f"multi must be one of {MULTI}, got {multi}")
        mid = self.interpolate_encoded(e0, e1, generator)
        if multi == 2:
            return [mid]
        em = self.encode(mid)
        return (self.interpolate_multi(e0, em, multi // 2, generator) + [mid]
                + self.interpolate_multi(em, e1, multi // 2, generator))

    @torch.no_grad()
    def interpolate_sequence(self, frames: Iterable[Tensor], multi: int = 2, *, seed: int | None = None,
                             generator: torch.Generator | None = None, scene_threshold: float | None = None,
                             on_scene_cut: Callable[[int], None] | None = None,
                             seed_for: Callable[[int], int] | None = None) -> Iterator[Tensor]:
        """Frame-rate up-conversion of a sequence.

        Args:
            frames: iterable of (1, 3, H, W) (or (3, H, W)) frames in [-1, 1], all one size.
            multi: 2, 4 or 8.
            scene_threshold: detect scene cuts (see :mod:`ldmvfi_fast.scene`; e.g.
                :data:`~ldmvfi_fast.scene.DEFAULT_SCENE_THRESHOLD`); None: no detection.
            on_scene_cut: called with ``i`` when a cut between inputs ``i`` and ``i + 1`` is found.
            seed_for: per-pair seeding: ``seed_for(i)`` is the seed of the pair starting at input
                frame ``i`` (a fresh generator per pair, used for all its x2/x4/x8 frames), so a
                pair's frames do not depend on the pairs before it (segmented jobs,
                :mod:`ldmvfi_fast.segments`). ``seed`` and ``generator`` are then ignored.

        Yields:
            (1, 3, H, W) frames in [-1, 1]: each input frame followed by the ``multi - 1`` new
            frames before the next one (copies of the earlier frame across a scene cut); N inputs
            give ``multi * (N - 1) + 1`` outputs. Each input frame is encoded once and reused for
            both pairs it belongs to.
        """
        if multi not in MULTI:
            raise OptionError(f"multi must be one of {MULTI}, got {multi}")
        if generator is None and seed_for is None:
            generator = self.new_generator(seed)
        detector = SceneDetector(scene_threshold) if scene_threshold is not None else None
        prev_frame, prev_enc, first_shape = None, None, None
        for i, f in enumerate(frames):
            if isinstance(f, Tensor) and f.dim() == 3:
                f = f[None]
            check_frames(f, values=False, first_index=i)
            if first_shape is None:
                first_shape = tuple(f.shape)
            elif tuple(f.shape) != first_shape:
                raise InputError(f"frame sizes differ within the sequence: frame 0 is {first_shape}, "
                                 f"frame {i} is {tuple(f.shape)}")
            f = f.to(self.device, self.io_dtype)
            enc = self.encode(f, first_index=i)
            cut = detector is not None and detector.is_cut(f)
            if prev_enc is not None:
                yield prev_frame
                if cut:
                    log.info("scene cut between input frames %d and %d: repeating frame %d", i - 1, i, i - 1)
                    if on_scene_cut is not None:
                        on_scene_cut(i - 1)
                    for _ in range(multi - 1):
                        yield prev_frame
                else:
                    g = generator if seed_for is None else self.new_generator(seed_for(i - 1))
                    yield from self.interpolate_multi(prev_enc, enc, multi, g)
            prev_frame, prev_enc = f, enc
        if prev_frame is not None:
            yield prev_frame
