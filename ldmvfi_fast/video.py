"""Image and video input/output with PyAV (FFmpeg), tensor conversion, and IO threads.

Writers never leave partial output: they write to a temporary file (or folder) beside the
target and move it into place only when complete; an existing target is replaced only with
``overwrite=True``.

Folder outputs (:func:`frame_folder_output`) never delete anything: the frames
(``frame_NNNNNN.png``) are written into a fresh temporary folder beside the target and then
moved in one by one. A target folder that holds anything but such frame files is refused,
existing frame files are replaced only with ``overwrite=True``, and a target holding frame
files that this run would not replace (a longer earlier run) is refused too, so that a
folder never mixes two runs.

IO overlap: :func:`prefetch` decodes ahead in a thread into a bounded queue and
:class:`BackgroundWriter` converts and encodes in a thread from a bounded queue, so the
model does not wait on file IO. Errors in either thread surface in the caller as the
original exception.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import re
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Generic, Iterable, Iterator, TypeVar

import numpy as np
import torch
from torch import Tensor

from ._atomic import fsync_dir, fsync_file, staged_folder
from .clips import bundled_clip  # noqa: F401 - part of this module's interface
from ._atomic import umask as _umask
from .errors import MediaError  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
#: the image extensions :func:`write_image` can write (.webp is read only)
WRITABLE_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: the file names of a folder output: frame_000000.png, frame_000001.png, ...
FRAME_NAME = "frame_{:06d}.png"
_FRAME_RE = re.compile(r"frame_(\d{6})\.png")

T = TypeVar("T")


def to_tensor(img: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [-1, 1]."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise MediaError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)


def to_image(x: Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> (H, W, 3) uint8 RGB (clamped, rounded)."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise MediaError(f"expected a single frame, got a batch of {x.shape[0]}")
        x = x[0]
    x = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# output paths



def _check_parent(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        raise MediaError(f"output directory {parent} does not exist")
    if not parent.is_dir():
        raise MediaError(f"output directory {parent} is not a folder")


def check_output(path: str | Path, overwrite: bool) -> None:
    """Raise :class:`MediaError` unless ``path`` can become an output FILE: its folder exists,
    and ``path`` does not exist (or ``overwrite`` and it is a file, not a folder)."""
    path = Path(path)
    _check_parent(path)
    if path.is_dir():
        raise MediaError(f"output {path} is a folder; give a file name (e.g. {path / 'out.mp4'})")
    if path.exists() and not overwrite:
        raise MediaError(f"output {path} already exists; pass --overwrite (overwrite=True) to replace it")


def check_writable(folder: str | Path) -> None:
    """Raise :class:`MediaError` unless a file can be created in ``folder`` (a probe temporary
    file is created and removed: this catches read-only folders and file systems, also for
    root, for whom permission bits alone say little)."""
    folder = Path(folder)
    try:
        fd, name = tempfile.mkstemp(prefix=".ldmvfi-write-probe.", dir=folder)
    except OSError as exc:
        raise MediaError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(name)


def frame_index(name: str) -> int | None:
    """The index of a folder-output frame file name (``frame_000012.png`` -> 12), else None."""
    m = _FRAME_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def _names(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def check_frame_folder(path: str | Path, overwrite: bool, count: int | None = None) -> None:
    """Raise :class:`MediaError` unless ``path`` can receive a folder output of ``count``
    frames (``None``: not known yet) without losing anything.

    Accepted: a path that does not exist (its parent must), an empty folder, or (with
    ``overwrite``) a folder holding only ``frame_NNNNNN.png`` files that this run replaces.
    Refused, naming what is there: a file, a folder holding anything else, existing frames
    without ``overwrite``, existing frames beyond ``count`` (they would not be replaced).
    """
    path = Path(path)
    _check_parent(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise MediaError(f"output {path} exists and is not a folder (a folder of frames is written)")
    entries = sorted(os.listdir(path))
    others = [n for n in entries if frame_index(n) is None or not (path / n).is_file() or (path / n).is_symlink()]
    if others:
        raise MediaError(f"output folder {path} holds other things than frame files (frame_NNNNNN.png): "
                         f"{_names(others)}; nothing is deleted or replaced there: use an empty or new folder")
    if entries and not overwrite:
        raise MediaError(f"output folder {path} already holds {len(entries)} frame file(s) ({_names(entries, 2)}); "
                         "pass --overwrite (overwrite=True) to replace them")
    if count is not None:
        stale = [n for n in entries if frame_index(n) >= count]
        if stale:
            raise MediaError(f"output folder {path} holds {len(stale)} frame file(s) beyond the {count} this run "
                             f"writes ({_names(stale, 2)}); they would not be replaced and nothing is deleted: "
                             "remove them or use another folder")


@contextmanager
def frame_folder_output(path: str | Path, overwrite: bool = False, count: int | None = None):
    """Yield a fresh temporary folder beside ``path``; on success move the files written there
    (which must be ``frame_NNNNNN.png``) into ``path``. Nothing already in ``path`` is ever
    deleted; see :func:`check_frame_folder` for what is refused. On an error the temporary
    folder is removed and ``path`` is untouched. A new folder gets the usual mode (0777 less
    the umask), not the 0700 of a temporary folder.
    """
    path = Path(path)
    check_frame_folder(path, overwrite, count)

    def check(written: list[str]) -> None:
        bad = [n for n in written if frame_index(n) is None]
        if bad:
            raise MediaError(f"internal: unexpected files in the temporary folder: {_names(bad)}")
        check_frame_folder(path, overwrite, len(written))  # again: it may have changed while computing

    with staged_folder(path, check=check) as tmp:
        yield tmp


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = False, is_dir: bool = False):
    """Yield a temporary path next to ``path``; move it onto ``path`` on success only.

    ``is_dir=True`` is :func:`frame_folder_output` (frames moved into the folder; nothing
    deleted). For a file, an existing file is replaced (``overwrite``) by an atomic rename.
    """
    if is_dir:
        with frame_folder_output(path, overwrite) as tmp:
            yield tmp
        return
    path = Path(path)
    check_output(path, overwrite)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.chmod(0o666 & ~_umask())  # mkstemp creates 0600; give the final file the usual mode
        yield tmp
        fsync_file(tmp)  # the data on disk before the name points at it
        os.replace(tmp, path)  # replaces a file only (check_output refused a folder)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# images


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (whatever it holds; :func:`read_picture` keeps
    its bit depth, gray and alpha)."""
    return _read(path, (3, False))


def read_picture(path: str | Path) -> np.ndarray:
    """Read an image file in its own layout (:mod:`ldmvfi_fast.pixels`): gray, gray + alpha, RGB or
    RGBA; uint8, or uint16 for more than 8 bits (16-bit PNG and TIFF stay 16-bit)."""
    return _read(path, None)


def _read(path: str | Path, layout) -> np.ndarray:
    import av

    from .pixels import decode_picture

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"image not found: {path}")
    try:
        with av.open(str(path)) as c:
            frame = next(c.decode(video=0))
            return decode_picture(frame, layout)
    except (av.error.FFmpegError, StopIteration, IndexError) as exc:
        raise MediaError(f"cannot read image {path}: {exc}") from None


#: image codec -> the pixel format it is written in, per (channels, deep) of the picture (None: cannot)
_IMAGE_FORMATS = {
    "png": {(1, False): "gray", (1, True): "gray16be", (2, False): "ya8", (2, True): "ya16be",
            (3, False): "rgb24", (3, True): "rgb48be", (4, False): "rgba", (4, True): "rgba64be"},
    "tiff": {(1, False): "gray", (1, True): "gray16le", (2, False): "ya8", (2, True): "ya16le",
             (3, False): "rgb24", (3, True): "rgb48le", (4, False): "rgba", (4, True): "rgba64le"},
    "bmp": {(1, False): "gray", (3, False): "bgr24", (4, False): "bgra"},
    "mjpeg": {(1, False): "yuvj444p", (3, False): "yuvj444p"},
}


def _image_format(path: Path, img: np.ndarray) -> tuple[str, str]:
    """(codec, pixel format) that ``path``'s extension writes ``img`` in, or :class:`MediaError`."""
    from .pixels import describe

    ext = path.suffix.lower()
    codec = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".bmp": "bmp", ".tif": "tiff",
             ".tiff": "tiff"}.get(ext)
    if codec is None:
        raise MediaError(f"unsupported image extension {ext!r} for {path} (use .png, .jpg, .bmp or .tif)")
    fmt = _IMAGE_FORMATS[codec].get((img.shape[2], img.dtype == np.uint16)) if img.ndim == 3 else None
    if fmt is None:
        raise MediaError(f"{path}: {ext} cannot hold a {describe(img)} image without losing "
                         f"{'its alpha' if img.shape[2] in (2, 4) else 'bits'}; write .png or .tif")
    return codec, fmt


def check_image_output(path: str | Path, img: np.ndarray) -> None:
    """Refuse (before any work) an image output whose format cannot hold ``img``'s layout."""
    _image_format(Path(path), img)


def write_image(path: str | Path, img: np.ndarray, overwrite: bool = False) -> None:
    """Write a picture (:mod:`ldmvfi_fast.pixels`: (H, W, C) uint8 or uint16, gray / gray + alpha /
    RGB / RGBA) as PNG or TIFF (lossless, any layout), BMP (8-bit) or JPEG (8-bit, no alpha),
    atomically; a layout the format cannot hold is refused (nothing is dropped silently)."""
    import av

    from .pixels import encode_frame

    path = Path(path)
    frame = encode_frame(img)  # checks the picture
    codec, fmt = _image_format(path, img)
    with atomic_output(path, overwrite) as tmp:
        with av.open(str(tmp), "w", format="image2") as c:
            s = c.add_stream(codec, rate=1)
            s.width, s.height = img.shape[1], img.shape[0]
            s.pix_fmt = fmt
            if frame.format.name != fmt:
                frame = frame.reformat(format=fmt)
            for pkt in s.encode(frame):
                c.mux(pkt)
            for pkt in s.encode():
                c.mux(pkt)


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if len(files) < 2:
        raise MediaError(f"folder {folder} holds {len(files)} image(s); at least 2 frames are needed")
    return files


# ---------------------------------------------------------------------------------------------
# video


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int  # as reported by the container (0 when unknown)
    has_audio: bool
    #: the video stream's time base (its timestamps are multiples of it); None when unknown
    time_base: Fraction | None = None
    #: the stream's pixel format (e.g. ``yuv420p10le``) and the picture layout it decodes to
    #: (:func:`ldmvfi_fast.pixels.layout_of`: channels 1..4, deep = more than 8 bits)
    pix_fmt: str = "yuv420p"
    channels: int = 3
    deep: bool = False
    #: bits per component of the source (8, 10, 12 ...)
    bits: int = 8

    @property
    def layout(self) -> tuple[int, bool]:
        """The layout frames are decoded in for interpolation (alpha dropped: H.264 has none)."""
        return (1 if self.channels <= 2 else 3), self.deep


def probe(path: str | Path) -> VideoInfo:
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video not found: {path}")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise MediaError(f"{path} has no video stream")
            v = c.streams.video[0]
            fps = v.average_rate or v.guessed_rate
            if not fps:
                raise MediaError(f"{path}: cannot determine the frame rate")
            info = VideoInfo(v.codec_context.width, v.codec_context.height, Fraction(fps), int(v.frames or 0),
                             bool(c.streams.audio), Fraction(v.time_base) if v.time_base else None)
            fmt = v.codec_context.format
            if fmt is not None:
                from .pixels import layout_of

                info.pix_fmt = fmt.name
                info.channels, info.deep = layout_of(fmt)
                info.bits = max((comp.bits for comp in fmt.components), default=8)
            return info
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot read video {path}: {exc}") from None


def read_video(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video's frames as (H, W, 3) uint8 RGB, in order."""
    import av

    probe(path)
    try:
        with av.open(str(path)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if max_frames is not None and i >= max_frames:
                    break
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise MediaError(f"error while decoding {path}: {exc}") from None


def read_video_timed(path: str | Path, max_frames: int | None = None, *,
                     layout: tuple[int, bool] = (3, False)) -> Iterator[tuple[np.ndarray, Fraction]]:
    """Decode a video's frames as (picture, time), in order: (H, W, 3) uint8 RGB, or the ``layout``
    given (:mod:`ldmvfi_fast.pixels`; e.g. ``VideoInfo.layout``: 16-bit for a 10-bit video); the time (seconds, a
    :class:`~fractions.Fraction`, exact) is the frame's presentation timestamp ``pts * time_base``
    on the stream's own timeline (not an average rate: variable-frame-rate video keeps its timing).
    A frame without a timestamp, or one not after the previous frame's, gets the previous time
    plus one frame at the average rate (logged)."""
    import av

    info = probe(path)
    prev: Fraction | None = None
    warned = False
    try:
        with av.open(str(path)) as c:
            stream_tb = c.streams.video[0].time_base
            for i, frame in enumerate(c.decode(video=0)):
                if max_frames is not None and i >= max_frames:
                    break
                tb = frame.time_base or stream_tb
                t = Fraction(frame.pts) * Fraction(tb) if frame.pts is not None and tb else None
                if t is None or (prev is not None and t <= prev):
                    if not warned:
                        log.warning("%s: frame %d has %s timestamp; using the average rate from there", path, i,
                                    "no" if t is None else "a non-increasing")
                        warned = True
                    t = Fraction(0) if prev is None else prev + 1 / info.fps
                prev = t
                yield frame_picture(frame, layout), t
    except av.error.FFmpegError as exc:
        raise MediaError(f"error while decoding {path}: {exc}") from None


def read_frame_pts(path: str | Path) -> tuple[list[int], Fraction]:
    """The presentation timestamps of a video's frames in presentation order, and the stream's
    time base, from the packets (no decoding)."""
    import av

    probe(path)
    try:
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            return sorted(p.pts for p in c.demux(v) if p.pts is not None and p.size), Fraction(v.time_base)
    except av.error.FFmpegError as exc:
        raise MediaError(f"error while reading {path}: {exc}") from None


def read_frame_times(path: str | Path) -> list[Fraction]:
    """The presentation times (seconds, exact) of a video's frames, in order, from the packets
    (no decoding)."""
    pts, tb = read_frame_pts(path)
    return [Fraction(x) * tb for x in pts]


def frame_picture(frame, layout: tuple[int, bool] = (3, False)) -> np.ndarray:
    """A decoded video frame as a picture of ``layout`` without alpha (8-bit RGB: ``rgb24``)."""
    from .pixels import decode_picture

    if layout == (3, False):
        return frame.to_ndarray(format="rgb24")
    return decode_picture(frame, layout)[:, :, :3]


def read_video_from(path: str | Path, pts: int, count: int, layout: tuple[int, bool] = (3, False)
                    ) -> Iterator[np.ndarray] | None:
    """``count`` frames from the frame stamped ``pts`` on, decoded from the keyframe before it (a seek,
    not the file's start). None when the container cannot seek there exactly (the seek lands after
    that frame, or frames lack timestamps): decode from the start instead."""
    import av

    try:
        c = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot read video {path}: {exc}") from None
    try:
        v = c.streams.video[0]
        c.seek(pts, stream=v, backward=True, any_frame=False)
        frames = c.decode(v)
        first = None
        for frame in frames:
            if frame.pts is None:
                break
            if frame.pts >= pts:
                first = frame
                break
        if first is None or first.pts != pts:
            c.close()
            return None
    except av.error.FFmpegError:
        c.close()
        return None

    def rest():
        try:
            yield frame_picture(first, layout)
            n = 1
            for frame in frames:
                if n >= count:
                    break
                yield frame_picture(frame, layout)
                n += 1
        except av.error.FFmpegError as exc:
            raise MediaError(f"error while decoding {path}: {exc}") from None
        finally:
            c.close()
    return rest()


#: the largest time-base denominator the writer uses (beyond it: 1/90000, rounded)
_MAX_TB_DEN = 2 ** 31 - 1


def fine_time_base(*steps: Fraction) -> Fraction:
    """A writer time base ``1/n`` of which every given fraction (a time step) is an exact
    multiple (``n``: the lcm of their denominators), or ``1/90000`` when that ``n`` is too large
    for a container (times are then rounded to 1/90000 s, never accumulating)."""
    n = 1
    for f in steps:
        n = math.lcm(n, Fraction(f).denominator)
        if n > _MAX_TB_DEN:
            return Fraction(1, 90000)
    return Fraction(1, n)


# ---------------------------------------------------------------------------------------------
# timing: dyadic points for a constant output rate (pure: no model, no file)

#: the deepest bisection of one input interval for a constant output rate (2**8 points)
MAX_DEPTH = 8


def multi_time(times: list[Fraction], j: int, multi: int) -> Fraction:
    """The time of output frame ``j`` of an x``multi`` sequence whose inputs are at ``times``: input
    ``j // multi``'s own time, or its ``(j % multi) / multi`` point towards the next input."""
    i, k = divmod(j, multi)
    return times[i] if k == 0 else times[i] + (times[i + 1] - times[i]) * k / multi


def dyadic_depth(interval: Fraction, fps: Fraction, max_depth: int = MAX_DEPTH) -> int:
    """The bisection depth for an input interval of ``interval`` seconds and an output rate
    ``fps``: the smallest ``d >= 0`` with ``interval / 2**d <= 1 / fps`` (the dyadic grid at
    least as fine as the output's), at most ``max_depth``."""
    ratio = Fraction(interval) * Fraction(fps)
    d = 0
    while d < max_depth and ratio > 2 ** d:
        d += 1
    return d


def dyadic_point(offset: Fraction, interval: Fraction, depth: int) -> Fraction:
    """The point ``k / 2**depth`` of [0, 1] nearest to ``offset / interval`` (a half rounds
    up), as a reduced :class:`~fractions.Fraction` (its denominator says the bisection depth
    it needs: 1 for an input frame, 2 for the midpoint, ...).

    Bound: the time used, ``t0 + p * interval``, is within ``interval / 2**(depth + 1)`` of the
    wanted ``t0 + offset``; with :func:`dyadic_depth`'s depth (not capped) that is at most half an
    output frame, and 0 when ``interval * fps`` is a power of two and the output grid meets the
    input frames (e.g. 25 -> 50 or 100 fps)."""
    offset, interval = Fraction(offset), Fraction(interval)
    if interval <= 0 or not 0 <= offset <= interval:
        raise ValueError(f"offset {offset} outside the interval [0, {interval}]")
    n = 2 ** depth
    k = math.floor(offset / interval * n + Fraction(1, 2))
    return Fraction(min(k, n), n)


def bisection_parents(p: Fraction) -> tuple[Fraction, Fraction]:
    """The two points a dyadic point ``p = a / 2**d`` (``a`` odd, ``d >= 1``) is the middle of:
    ``((a - 1) / 2**d, (a + 1) / 2**d)`` (both of lower depth, down to the input frames 0 and 1)."""
    p = Fraction(p)
    d = p.denominator
    if d < 2 or d & (d - 1) or not 0 < p < 1:
        raise ValueError(f"{p} is not an inner dyadic point of [0, 1]")
    step = Fraction(1, d)
    return p - step, p + step


class VideoWriter:
    """H.264 writer to a temporary file, renamed onto the target by :meth:`close`.

    Timing: without ``time_base`` the frames are written at the constant rate ``fps``; with
    ``time_base`` (e.g. from :func:`fine_time_base`) every :meth:`write` gives the frame's time
    (seconds from the start) and the frame is stamped exactly there (``fps`` is then only the
    declared rate); a time that rounds onto the previous frame's is moved one tick later.

    Pixels: :meth:`write` takes pictures (:mod:`ldmvfi_fast.pixels`: 8- or 16-bit, gray or RGB; an
    alpha channel is refused: H.264 has none). ``bits`` > 8 encodes 10-bit (``yuv420p10le``, High 10),
    ``gray`` encodes luma only (``gray`` / ``gray10le``). Odd frame sizes are encoded as 4:4:4
    (4:2:0 needs even sizes). ``audio_from``
    copies that file's first audio stream (no re-encoding) into the output; with
    ``trim_audio`` only the audio packets that start before the end of the written video
    (``frames / fps`` after the source video's start) are copied, so a video cut short
    (``--max-frames``) does not carry the whole soundtrack; the audio then ends within one
    audio frame (e.g. 1024 AAC samples) of the video.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: Fraction, *, crf: int = 17,
                 overwrite: bool = False, audio_from: str | Path | None = None, trim_audio: bool = False,
                 time_base: Fraction | None = None, bits: int = 8, gray: bool = False):
        import av

        self.path = Path(path)
        self.fps = Fraction(fps)
        self.time_base = None if time_base is None else Fraction(time_base)
        self.last_time: Fraction | None = None
        self._last_pts: int | None = None
        self.trim_audio = trim_audio
        self.audio_packets = 0
        self._ctx = atomic_output(self.path, overwrite)
        self._tmp = self._ctx.__enter__()
        self.audio_from = audio_from
        try:
            self._c = av.open(str(self._tmp), "w", format=_container_format(self.path))
            self._s = self._c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1_000_000))
            self._s.width, self._s.height = width, height
            deep = bits > 8
            if gray:
                self._s.pix_fmt = "gray10le" if deep else "gray"
            else:
                self._s.pix_fmt = ("yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p") + \
                    ("10le" if deep else "")
            # crf 0 is lossless (qp 0: in 8 bits x264's crf 0 is already; in 10 bits it is not)
            self._s.options = {"qp" if int(crf) == 0 else "crf": str(int(crf)), "preset": "medium"}
            if self.time_base is not None:
                self._s.codec_context.time_base = self.time_base
                self._s.time_base = self.time_base
            self._audio_in = None
            if audio_from is not None:
                self._audio_in = av.open(str(audio_from))
                if self._audio_in.streams.audio:
                    self._a = self._c.add_stream_from_template(self._audio_in.streams.audio[0])
                else:
                    self._audio_in.close()
                    self._audio_in = None
        except BaseException as exc:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.frames = 0

    def write(self, img: np.ndarray, t: Fraction | None = None) -> None:
        """Encode one frame; ``t``: its time in seconds from the start (needed, and only
        allowed, with ``time_base``)."""
        from .pixels import encode_frame

        if img.ndim == 3 and img.shape[2] in (2, 4):
            raise MediaError("VideoWriter: H.264 has no alpha channel; give gray or RGB pictures")
        frame = encode_frame(img)
        if (t is None) != (self.time_base is None):
            raise ValueError("VideoWriter.write: give the frame time t exactly when the writer has a time_base")
        if t is not None:
            t = Fraction(t)
            pts = round(t / self.time_base)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1
            frame.pts, frame.time_base = pts, self.time_base
            self._last_pts, self.last_time = pts, t
        for pkt in self._s.encode(frame):
            self._c.mux(pkt)
        self.frames += 1

    def _finish(self) -> None:
        for pkt in self._s.encode():
            self._c.mux(pkt)
        if self._audio_in is not None:
            ain = self._audio_in.streams.audio[0]
            end = None
            if self.trim_audio:
                vin = self._audio_in.streams.video[0] if self._audio_in.streams.video else None
                start = (vin.start_time * vin.time_base) if vin is not None and vin.start_time is not None else 0
                if self.last_time is not None:  # timed: the last frame lasts one frame at the declared rate
                    end = start + self.last_time + 1 / self.fps
                else:
                    end = start + Fraction(self.frames) / self.fps
            for pkt in self._audio_in.demux(ain):
                if pkt.dts is None:
                    continue
                if end is not None and pkt.pts is not None and pkt.pts * pkt.time_base >= end:
                    break  # packets are in presentation order within an audio stream
                pkt.stream = self._a
                self._c.mux(pkt)
                self.audio_packets += 1
            self._audio_in.close()
        self._c.close()

    def close(self) -> None:
        """Finish the file and move it into place."""
        try:
            self._finish()
        except BaseException as exc:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the partial output."""
        try:
            self._c.close()
        except Exception:  # noqa: BLE001 - closing a broken container on the error path
            pass
        if self._audio_in is not None:
            self._audio_in.close()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def _container_format(path: Path) -> str | None:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
            ".avi": "avi"}.get(path.suffix.lower())


# ---------------------------------------------------------------------------------------------
# IO threads

_DONE = object()


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(iterable: Iterable[T], maxsize: int = 4, *, name: str = "ldmvfi-prefetch") -> Iterator[T]:
    """Iterate ``iterable`` in a daemon thread, up to ``maxsize`` items ahead of the consumer.

    The items come out in order. An exception raised by the source is raised in the consumer
    (the original exception object, its traceback including the source's frames) after the
    items produced before it. When the consumer stops early (``break``, an exception,
    ``close()`` of this generator), the thread stops after the item it is producing, closes
    the source (``close()`` of a generator: its ``finally``/``with`` blocks run there, so a
    decoder's file is closed) and is joined.

    Args:
        iterable: any iterable; it is iterated (and closed) in the thread only.
        maxsize: bound of the queue (>= 1): at most this many decoded items wait in memory.
    """
    if maxsize < 1:
        raise ValueError(f"maxsize must be >= 1, got {maxsize}")
    q: queue.Queue = queue.Queue(maxsize)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = None
        try:
            it = iter(iterable)
            for item in it:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failure(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - the consumer has its own outcome already
                    log.debug("closing the prefetched source failed", exc_info=True)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=60)
        if thread.is_alive():
            log.warning("the prefetch thread %s did not stop within 60 s", name)


class BackgroundWriter(Generic[T]):
    """Call ``write(item)`` for every :meth:`put` item, in order, in one daemon thread.

    At most ``maxsize`` items wait in the queue (:meth:`put` blocks when it is full, so
    memory stays bounded). If ``write`` raises, the next :meth:`put` or :meth:`close`
    raises that same exception in the caller, and later items are dropped. Use it as a
    context manager: a normal exit waits for every item to be written (:meth:`close`); an
    exception drops what is queued and stops the thread (:meth:`abort`).

    ``write`` must not touch what the caller changes afterwards: hand over tensors that are
    not modified in place later (the pipeline's outputs are fresh tensors).

    Attributes:
        written: the number of items written so far.
    """

    def __init__(self, write: Callable[[T], None], maxsize: int = 4, *, name: str = "ldmvfi-writer"):
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._write = write
        self._q: queue.Queue = queue.Queue(maxsize)
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._closed = False
        self.written = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if self._error is not None or self._aborted.is_set():
                continue  # drain, so that put() never blocks on a dead writer
            try:
                self._write(item)
                self.written += 1
            except BaseException as exc:  # noqa: BLE001 - raised in the caller
                self._error = exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Queue ``item`` (blocks while the queue is full); raises the writer's exception if
        an earlier write failed."""
        if self._closed:
            raise RuntimeError("BackgroundWriter is closed")
        self._raise_if_failed()
        while True:
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                self._raise_if_failed()

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(_DONE)  # the thread drains the queue, so this returns
        self._thread.join()

    def close(self) -> None:
        """Wait until every queued item is written; raise the writer's exception if any."""
        self._finish()
        self._raise_if_failed()

    def abort(self) -> None:
        """Drop the queued items and stop the thread (after the write in progress)."""
        self._aborted.set()
        self._finish()

    def __enter__(self) -> "BackgroundWriter[T]":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
