"""Padding rules, in one place: the pipeline and the export specs both read them.

Frames are padded at the bottom and right before encoding and the output is cropped back.

* ``reference`` (default): as the original. The unit is 256 when H <= 256, else 512, for
  both dimensions; reflect padding; a pad equal to the size is skipped. Sizes the original
  cannot process (reflect pad >= the size, e.g. 100 px high) raise :class:`PaddingError`
  suggesting ``minimal``.
* ``minimal``: to multiples of the architecture's unit (256), reflect padding repeated as
  needed so tiny frames work too. Faster on large frames (1080p: 1280x2048 instead of
  1536x2048 pixels); its quality cost against ``reference`` needs trained weights to
  measure and has not been measured yet.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .choices import PADDING_MODES
from .errors import OptionError, PaddingError

__all__ = ["PADDING_MODES", "ARCH_UNIT", "pad_amounts", "padded_size", "reflect_pad", "check_padding_mode"]

#: what the official architecture needs (``LDMVFIConfig.min_pad_unit()``: latent factor 32 x the
#: MaxViT windows, 8 in the autoencoder and 2 at the U-Net's 1/4 level); a backbone states its own
ARCH_UNIT = 256


def check_padding_mode(mode: str) -> str:
    if mode not in PADDING_MODES:
        raise OptionError(f"padding must be one of {PADDING_MODES}, got {mode!r}")
    return mode


def pad_amounts(H: int, W: int, mode: str, arch_unit: int = ARCH_UNIT) -> tuple[int, int]:
    """Bottom and right padding for an H x W frame under ``mode``."""
    check_padding_mode(mode)
    if mode == "minimal":
        return (-H) % arch_unit, (-W) % arch_unit
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


def padded_size(H: int, W: int, mode: str, arch_unit: int = ARCH_UNIT) -> tuple[int, int]:
    """(Hp, Wp) of an H x W frame after padding."""
    ph, pw = pad_amounts(H, W, mode, arch_unit)
    return H + ph, W + pw


def reflect_pad(x: Tensor, ph: int, pw: int) -> Tensor:
    """Reflect-pad (..., H, W) at the bottom/right; pads larger than the frame are applied in
    several reflections; a 1-pixel dimension is replicated."""
    while ph > 0 or pw > 0:
        sh, sw = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        if (ph and sh <= 0) or (pw and sw <= 0):  # 1-pixel dimension: nothing to reflect
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            break
        x = F.pad(x, (0, sw, 0, sh), mode="reflect")
        ph, pw = ph - sh, pw - sw
    return x
