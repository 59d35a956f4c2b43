"""Jobs: a pair of images, a video or a folder of frames interpolated with a loaded
:class:`~ldmvfi_fast.pipeline.Interpolator`, written safely. The command line
(``ldmvfi-fast interpolate``) is a thin layer over these; Python users and the benchmarks call
them directly.

Each job has a plan step that needs no model (inputs opened, the output checked: it can be
written and nothing would be lost) and a run step. Outputs are written atomically: a failed
or interrupted job leaves nothing behind.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .choices import MULTI
from .errors import MediaError

log = logging.getLogger(__name__)

__all__ = ["IO_QUEUE", "MULTI", "VideoResult", "FolderJob", "FolderResult", "check_disjoint", "check_file_output",
           "run_sequence", "read_pair", "interpolate_pair", "interpolate_video", "plan_folder", "interpolate_folder", "default_overlap"]

#: items decoded ahead / waiting to be encoded with the IO threads
IO_QUEUE = 4


def check_disjoint(src: Path, out: Path) -> None:
    """Refuse an output folder that is the input folder, holds it or lies inside it."""
    a, b = Path(src).resolve(), Path(out).resolve()
    if a == b:
        raise MediaError(f"output {out} is the input folder {src}; give a new folder")
    if a in b.parents:
        raise MediaError(f"output {out} lies inside the input folder {src}; give a folder outside it")
    if b in a.parents:
        raise MediaError(f"output {out} contains the input folder {src}; give a new folder")


def check_file_output(out: Path, overwrite: bool, inputs: list[Path]) -> None:
    """Refuse an output file that is an input, exists (without ``overwrite``) or cannot be written."""
    from .video import check_output, check_writable

    for p in inputs:
        if Path(out).resolve() == Path(p).resolve():
            raise MediaError(f"output {out} is an input; give another output path")
    check_output(out, overwrite)
    check_writable(Path(out).parent)


def run_sequence(interp, frames, write, *, multi: int, seed, threshold, total: int | None, overlap: bool,
                 progress: bool = True) -> list[int]:
    """Interpolate ``frames`` (an iterable of (1, 3, H, W) tensors in [-1, 1]) and call
    ``write((index, frame))`` for every output frame, in order. With ``overlap`` the frames
    are decoded ahead in a reader thread and written from a writer thread (bounded queues of
    :data:`IO_QUEUE`), so the model does not wait on file IO; an error in either thread is
    raised here as the original exception. Returns the scene cuts found (indices of the
    earlier input frame)."""
    from tqdm import tqdm

    from .video import BackgroundWriter, prefetch

    cuts: list[int] = []
    source = prefetch(frames, IO_QUEUE, name="ldmvfi-reader") if overlap else frames
    seq = interp.interpolate_sequence(source, multi, seed=seed, scene_threshold=threshold,
                                      on_scene_cut=cuts.append)
    bar = tqdm(total=total, unit="frame", desc="interpolating", leave=False, disable=not progress)
    try:
        if overlap:
            with BackgroundWriter(write, IO_QUEUE, name="ldmvfi-writer") as writer:
                for item in enumerate(seq):
                    writer.put(item)
                    bar.update()
        else:
            for item in enumerate(seq):
                write(item)
                bar.update()
    finally:
        bar.close()
        seq.close()
        if overlap:
            source.close()  # stops and joins the reader thread now, also on an error
    if cuts:
        log.info("scene cuts after input frames %s", cuts)
    return cuts


def read_pair(image0, image1):
    """The two images of a pair job as uint8 arrays (H, W, 3), refused before any model runs when
    unreadable or of different sizes."""
    from .video import read_image

    a, b = read_image(image0), read_image(image1)
    if a.shape != b.shape:
        raise MediaError(f"input images differ in size: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
    return a, b


def interpolate_pair(interp, image0, image1, out, *, seed: int | None = None, overwrite: bool = False,
                     progress: bool = True) -> tuple[int, int]:
    """The middle image of two images (paths, or arrays from :func:`read_pair`), written to ``out``
    (atomically); returns (width, height)."""
    from tqdm import tqdm

    from .video import to_image, to_tensor, write_image

    a, b = (image0, image1) if hasattr(image0, "shape") else read_pair(image0, image1)
    with tqdm(unit="step", desc="sampling", leave=False, disable=not progress) as bar:
        def step(done: int, total: int) -> None:  # ints only: no tensor read, no device sync
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
            if done == total:
                bar.refresh()  # the last step is always shown (tqdm skips updates within mininterval)

        mid = interp.interpolate(to_tensor(a), to_tensor(b), seed=seed, callback=step)
    write_image(out, to_image(mid), overwrite=overwrite)
    return a.shape[1], a.shape[0]


@dataclass
class VideoResult:
    """What :func:`interpolate_video` wrote: ``frames`` at ``fps``, the scene ``cuts`` (indices
    of the earlier input frame), the audio packets copied and whether the audio was cut."""
    path: Path
    frames: int
    width: int
    height: int
    fps: Fraction
    cuts: list[int]
    has_audio: bool
    audio_packets: int
    audio_trimmed: bool


def interpolate_video(interp, src: str | Path, out: str | Path, *, multi: int = 2, seed: int | None = None,
                      scene_threshold: float | None = None, crf: int = 17, overwrite: bool = False,
                      max_frames: int | None = None, overlap: bool = True, progress: bool = True) -> VideoResult:
    """Decode ``src`` (its first ``max_frames`` frames), interpolate x``multi``, encode H.264 at
    ``crf`` into ``out`` (atomically; the audio copied, cut to the video when ``max_frames``
    shortens it). ``overlap``: reader/writer threads (see :func:`run_sequence`). The
    benchmark (``benchmarks/latency.py --video``) times it with and without ``overlap``."""
    from .video import VideoWriter, probe, read_video, to_image, to_tensor

    src, out = Path(src), Path(out)
    info = probe(src)
    n_in = info.frames if max_frames is None else min(info.frames or max_frames, max_frames)
    total = multi * (n_in - 1) + 1 if n_in else None
    trim_audio = max_frames is not None and (not info.frames or info.frames > max_frames)
    fps = info.fps * multi
    log.info("%s: %dx%d at %.4g fps, %s frames%s -> %s frames at %.4g fps", src, info.width, info.height,
             float(info.fps), info.frames or "?", " and audio" if info.has_audio else "", total or "?", float(fps))
    with VideoWriter(out, info.width, info.height, fps, crf=crf, overwrite=overwrite,
                     audio_from=src if info.has_audio else None, trim_audio=trim_audio) as w:
        frames = (to_tensor(img) for img in read_video(src, max_frames))
        cuts = run_sequence(interp, frames, lambda item: w.write(to_image(item[1])), multi=multi, seed=seed,
                            threshold=scene_threshold, total=total, overlap=overlap, progress=progress)
        if w.frames < 2:
            raise MediaError(f"{src} has fewer than 2 decodable frames")
    return VideoResult(out, w.frames, info.width, info.height, fps, cuts, info.has_audio, w.audio_packets,
                       trim_audio)


@dataclass
class FolderJob:
    """A folder of frames, planned before the model loads: the input ``files``, the first frame
    (its size is every frame's), the ``total`` output frames and where they go."""
    src: Path
    out: Path
    files: list[Path]
    first: object
    multi: int
    total: int
    overwrite: bool


@dataclass
class FolderResult:
    out: Path
    frames: int
    width: int
    height: int
    cuts: list[int]


def plan_folder(src: str | Path, out: str | Path, *, multi: int = 2, max_frames: int | None = None,
                overwrite: bool = False) -> FolderJob:
    """Check a folder job without the model: the input frames are listed and the first read, the
    output folder is new or (``overwrite``) holds only frame files this job replaces."""
    from .video import check_frame_folder, check_writable, list_images, read_image

    src, out = Path(src), Path(out)
    check_disjoint(src, out)
    check_frame_folder(out, overwrite)
    check_writable(out.parent)
    if out.is_dir():
        check_writable(out)
    files = list_images(src)
    if max_frames is not None:
        files = files[:max_frames]
    first = read_image(files[0])
    total = multi * (len(files) - 1) + 1
    check_frame_folder(out, overwrite, total)  # the count is known: refuse frames that would stay behind
    return FolderJob(src, out, files, first, multi, total, overwrite)


def interpolate_folder(interp, job: FolderJob, *, seed: int | None = None, scene_threshold: float | None = None,
                       overlap: bool = False, progress: bool = True) -> FolderResult:
    """Run a :func:`plan_folder` job: ``frame_NNNNNN.png`` files into ``job.out``, moved in only
    when all are written."""
    from .video import FRAME_NAME, frame_folder_output, read_image, to_image, to_tensor, write_image

    first = job.first
    log.info("%d input frames in %s (%dx%d) -> %d frames", len(job.files), job.src, first.shape[1], first.shape[0],
             job.total)

    def frames():
        for i, f in enumerate(job.files):
            img = first if i == 0 else read_image(f)
            if img.shape != first.shape:
                raise MediaError(f"{f} is {img.shape[1]}x{img.shape[0]}, the first frame "
                                 f"{first.shape[1]}x{first.shape[0]}")
            yield to_tensor(img)

    with frame_folder_output(job.out, job.overwrite, job.total) as tmp:
        def write(item) -> None:
            i, frame = item
            write_image(tmp / FRAME_NAME.format(i), to_image(frame))

        cuts = run_sequence(interp, frames(), write, multi=job.multi, seed=seed, threshold=scene_threshold,
                            total=job.total, overlap=overlap, progress=progress)
    return FolderResult(job.out, job.total, first.shape[1], first.shape[0], cuts)


def default_overlap(interp, asked: bool | None) -> bool:
    """IO threads: as asked, else on for CUDA only (on CPU they take cores from the model:
    measured 1.3x slower on 2 cores, ``benchmarks/latency.py --video``)."""
    return asked if asked is not None else interp.device.type == "cuda"

