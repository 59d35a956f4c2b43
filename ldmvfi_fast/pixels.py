"""Pixel layouts kept end to end: bit depth, gray or colour, and alpha.

A *picture* is an ``(H, W, C)`` numpy array whose shape and dtype say what it holds:

====  ============  ==========================
C     holds         dtype
====  ============  ==========================
1     gray          uint8 (8-bit) or uint16 (more: 10-, 12-, 16-bit sources, scaled to 16)
2     gray + alpha  uint8 or uint16
3     RGB           uint8 or uint16
4     RGBA          uint8 or uint16
====  ============  ==========================

The model sees RGB in [-1, 1] (float32): 8-bit values ``v`` become ``v / 127.5 - 1`` (exactly what
:func:`ldmvfi_fast.video.to_tensor` gives), 16-bit values ``v / 32767.5 - 1``, with no 8-bit step on
the way; gray is copied to the three channels, and the model's RGB goes back to gray as the mean of
its channels. Alpha never goes through the model; a new frame's alpha is the input alphas blended
with the weights of its time (:func:`blend_alpha`: ``(1 - w) * a0 + w * a1`` at ``w`` = its position
between the two input frames, 1/2 for the middle frame), rounded, and the earlier frame's alpha
across a scene cut (where the frame itself is a copy of the earlier frame).

Reading and writing of these arrays through PyAV (exact: no colour conversion for gray + alpha,
whose layouts PyAV cannot convert to numpy) is in :func:`decode_picture` / :func:`encode_frame`.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .errors import MediaError

__all__ = ["layout_of", "describe", "array_format", "decode_picture", "encode_frame", "picture_to_model",
           "model_to_picture", "blend_alpha", "common_layout", "convert",
           "AlphaTrack"]

#: (channels, deep) -> the PyAV array format of a picture
_ARRAY_FORMAT = {(1, False): "gray", (1, True): "gray16le", (2, False): "ya8", (2, True): "ya16le",
                 (3, False): "rgb24", (3, True): "rgb48le", (4, False): "rgba", (4, True): "rgba64le"}
_NAMES = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}


def layout_of(fmt) -> tuple[int, bool]:
    """(channels of the picture, deep: more than 8 bits) for a PyAV pixel format (or its name)."""
    import av

    f = av.VideoFormat(fmt) if isinstance(fmt, str) else fmt
    if f.name == "pal8":  # a palette may carry transparency (PNG tRNS): read as RGBA, RGB when opaque
        return 4, False
    comps = f.components
    alpha = any(c.is_alpha for c in comps)
    colour = sum(1 for c in comps if not c.is_alpha)
    deep = max((c.bits for c in comps), default=8) > 8
    return (1 if colour == 1 else 3) + int(alpha), deep


def _check(img: np.ndarray) -> tuple[int, bool]:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] not in _NAMES \
            or img.dtype not in (np.uint8, np.uint16):
        got = f"{getattr(img, 'shape', None)} {getattr(img, 'dtype', type(img).__name__)}"
        raise MediaError(f"expected an (H, W, C) picture, C in 1..4, uint8 or uint16; got {got}")
    return img.shape[2], img.dtype == np.uint16


def describe(img: np.ndarray) -> str:
    """``"RGB 8-bit"``, ``"RGBA 16-bit"``, ``"gray 16-bit"`` ..."""
    c, deep = _check(img)
    return f"{_NAMES[c]} {16 if deep else 8}-bit"


def array_format(channels: int, deep: bool) -> str:
    return _ARRAY_FORMAT[(channels, deep)]


# ------------------------------------------------------------------------------------ PyAV frames
def _packed(frame, width: int, height: int, itemsize: int, channels: int, dtype) -> np.ndarray:
    """A packed single-plane frame's pixels (row padding dropped), exactly as stored."""
    plane = frame.planes[0]
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(height, plane.line_size)
    return rows[:, :width * channels * itemsize].copy().view(dtype).reshape(height, width, channels)


def decode_picture(frame, layout: tuple[int, bool] | None = None) -> np.ndarray:
    """A decoded PyAV frame as a picture, in its own layout (or ``layout``: (channels, deep))."""
    c, deep = layout_of(frame.format) if layout is None else layout
    if c == 2:  # gray + alpha: PyAV has no numpy conversion; read the packed plane
        want = "ya16le" if deep else "ya8"
        f = frame if frame.format.name == want else frame.reformat(format=want)
        arr = _packed(f, f.width, f.height, 2 if deep else 1, 2, np.dtype("<u2") if deep else np.uint8)
        return arr.astype(np.uint16) if deep else arr
    arr = frame.to_ndarray(format=_ARRAY_FORMAT[(c, deep)])
    if layout is None and frame.format.name == "pal8" and (arr[:, :, 3] == 255).all():
        arr = arr[:, :, :3]  # a palette without transparency: RGB
    if c == 1:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def encode_frame(img: np.ndarray):
    """A PyAV frame holding a picture exactly (in the picture's own packed format)."""
    import av

    c, deep = _check(img)
    name = _ARRAY_FORMAT[(c, deep)]
    img = np.ascontiguousarray(img)
    if c == 2:
        h, w = img.shape[:2]
        frame = av.VideoFrame(w, h, name)
        plane = frame.planes[0]
        rows = np.zeros((h, plane.line_size), np.uint8)
        data = img.astype("<u2") if deep else img
        rows[:, :w * 2 * data.itemsize] = data.reshape(h, -1).view(np.uint8)
        plane.update(rows.tobytes())
        return frame
    return av.VideoFrame.from_ndarray(img[:, :, 0] if c == 1 else img, format=name)


# ------------------------------------------------------------------------------------ model side
def picture_to_model(img: np.ndarray):
    """A picture -> ((1, 3, H, W) float32 RGB in [-1, 1], its alpha (H, W) in the picture's dtype or None)."""
    import torch

    c, deep = _check(img)
    colour = img[:, :, :3] if c >= 3 else np.repeat(img[:, :, :1], 3, axis=2)
    alpha = img[:, :, -1].copy() if c in (2, 4) else None
    t = torch.from_numpy(np.ascontiguousarray(colour).astype(np.float32 if deep else np.uint8, copy=False))
    t = t.permute(2, 0, 1)[None].float()
    return t.div(32767.5 if deep else 127.5).sub(1.0), alpha


def model_to_picture(x, channels: int, deep: bool, alpha: np.ndarray | None = None) -> np.ndarray:
    """The model's (1, 3, H, W) or (3, H, W) RGB in [-1, 1] -> a picture with ``channels`` (1..4) and
    depth (``deep``: uint16); ``alpha`` (H, W) fills the alpha channel of 2- and 4-channel layouts.
    8-bit RGB is bit for bit :func:`ldmvfi_fast.video.to_image`."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise MediaError(f"expected a single frame, got a batch of {x.shape[0]}")
        x = x[0]
    x = x.detach().float().clamp(-1, 1)
    if channels in (1, 2):
        x = x.mean(dim=0, keepdim=True)
    scale = 32767.5 if deep else 127.5
    dtype = np.uint16 if deep else np.uint8
    colour = ((x + 1.0) * scale).round().permute(1, 2, 0).cpu().numpy().astype(dtype)
    if channels in (1, 3):
        return np.ascontiguousarray(colour)
    if alpha is None:
        alpha = np.full(colour.shape[:2], np.iinfo(dtype).max, dtype)
    return np.ascontiguousarray(np.concatenate([colour, alpha.astype(dtype)[:, :, None]], axis=2))


def blend_alpha(a0: np.ndarray, a1: np.ndarray, w) -> np.ndarray:
    """The alpha of a frame at position ``w`` in [0, 1] between two input frames:
    ``round((1 - w) * a0 + w * a1)`` (exact for ``w`` = 0 and 1), in their dtype."""
    w = float(Fraction(w)) if not isinstance(w, float) else w
    out = (1.0 - w) * a0.astype(np.float64) + w * a1.astype(np.float64)
    return np.rint(out).astype(a0.dtype)


# ------------------------------------------------------------------------------------ layouts of many
def common_layout(*imgs: np.ndarray) -> tuple[int, bool]:
    """The layout that holds every picture given without loss: colour if any is colour, alpha if
    any has alpha, 16-bit if any is."""
    layouts = [_check(i) for i in imgs]
    colour = any(c >= 3 for c, _ in layouts)
    alpha = any(c in (2, 4) for c, _ in layouts)
    return (3 if colour else 1) + int(alpha), any(d for _, d in layouts)


def convert(img: np.ndarray, channels: int, deep: bool, *, name: object = "picture") -> np.ndarray:
    """``img`` in the layout (``channels``, ``deep``), only widening (gray -> RGB, opaque alpha
    added, 8 -> 16 bits as ``v * 257``); a conversion that would lose something (alpha, colour,
    bits) is refused with :class:`MediaError` naming ``name``."""
    c, d = _check(img)
    if (c, d) == (channels, deep):
        return img
    has_alpha, want_alpha = c in (2, 4), channels in (2, 4)
    if (d and not deep) or (has_alpha and not want_alpha) or (c >= 3 and channels < 3):
        want = f"{_NAMES[channels]} {16 if deep else 8}-bit"
        raise MediaError(f"{name} is {describe(img)}, the sequence is {want}: frames of one job must share "
                         "one pixel layout (or be narrower: gray in RGB, 8-bit in 16-bit, opaque in alpha)")
    out = img.astype(np.uint16) * 257 if deep and not d else img
    colour = out[:, :, :-1] if has_alpha else out
    if channels >= 3 and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if want_alpha:
        alpha = out[:, :, -1:] if has_alpha else np.full(out.shape[:2] + (1,), np.iinfo(out.dtype).max, out.dtype)
        colour = np.concatenate([colour, alpha], axis=2)
    return np.ascontiguousarray(colour)


class AlphaTrack:
    """The alpha of a sequence's output frames (``multi`` per input interval, in order): input
    frame ``i``'s alpha for output ``multi * i``, the blend (:func:`blend_alpha`) at ``k / multi``
    for output ``multi * i + k``, and input ``i``'s alpha again across a scene cut after input ``i``
    (:meth:`cut`; the frames there are copies of input ``i``). :meth:`add` the input alphas as they are
    read (any thread); :meth:`output` forgets the inputs before the one it needs."""

    def __init__(self, multi: int):
        self.multi = multi
        self._alpha: dict[int, np.ndarray] = {}
        self._cuts: set[int] = set()

    def add(self, i: int, alpha: np.ndarray) -> None:
        self._alpha[i] = alpha

    def cut(self, i: int) -> None:
        self._cuts.add(i)

    def output(self, j: int) -> np.ndarray:
        i, k = divmod(j, self.multi)
        for old in [n for n in self._alpha if n < i]:
            del self._alpha[old]
        a0 = self._alpha[i]
        if k == 0 or i in self._cuts:
            return a0
        return blend_alpha(a0, self._alpha[i + 1], Fraction(k, self.multi))
