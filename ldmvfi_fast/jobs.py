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
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .choices import MULTI
from .errors import MediaError

log = logging.getLogger(__name__)

__all__ = ["IO_QUEUE", "MULTI", "VideoResult", "FolderJob", "FolderResult", "check_disjoint", "check_file_output",
           "run_sequence", "parse_fps", "resample_sequence", "read_pair", "interpolate_pair", "interpolate_video", "plan_folder", "interpolate_folder", "default_overlap"]

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
                 progress: bool = True, on_scene_cut=None) -> list[int]:
    """Interpolate ``frames`` (an iterable of (1, 3, H, W) tensors in [-1, 1]) and call
    ``write((index, frame))`` for every output frame, in order. With ``overlap`` the frames
    are decoded ahead in a reader thread and written from a writer thread (bounded queues of
    :data:`IO_QUEUE`), so the model does not wait on file IO; an error in either thread is
    raised here as the original exception. Returns the scene cuts found (indices of the
    earlier input frame); ``on_scene_cut(i)`` is also called for each, before the frames of that
    interval are written."""
    from .video import prefetch

    cuts: list[int] = []

    def cut(i: int) -> None:
        cuts.append(i)
        if on_scene_cut is not None:
            on_scene_cut(i)

    source = prefetch(frames, IO_QUEUE, name="ldmvfi-reader") if overlap else frames
    seq = interp.interpolate_sequence(source, multi, seed=seed, scene_threshold=threshold, on_scene_cut=cut)
    _drain(seq, write, source=source, overlap=overlap, total=total, progress=progress, numbered=True)
    if cuts:
        log.info("scene cuts after input frames %s", cuts)
    return cuts


def parse_fps(value) -> Fraction:
    """An output frame rate as an exact :class:`~fractions.Fraction`: an int, a Fraction or a
    string such as ``"60"``, ``"59.94"`` or ``"60000/1001"`` (torch-free: the command line checks
    ``--fps`` with it before anything loads). Raises :class:`OptionError` unless positive and at
    most 1000."""
    from .errors import OptionError

    try:
        fps = Fraction(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError, ZeroDivisionError):
        raise OptionError(f"--fps must be a number or a ratio such as 60, 59.94 or 60000/1001, got {value!r}") from None
    if not 0 < fps <= 1000:
        raise OptionError(f"--fps must be positive and at most 1000, got {value!r}")
    return fps


def resample_sequence(interp, frames, fps, *, seed: int | None = None, generator=None,
                      scene_threshold: float | None = None, on_scene_cut=None, max_depth: int | None = None,
                      seed_for=None, origin: Fraction | None = None, include_last: bool = True):
    """Constant-rate output from timed frames, by recursive bisection.

    Args:
        interp: an :class:`~ldmvfi_fast.pipeline.Interpolator` (its ``encode`` and
            ``interpolate_encoded`` are used).
        frames: iterable of ``((1, 3, H, W) frame in [-1, 1], time)``, times (seconds, exact
            Fractions) increasing.
        fps: the output rate (see :func:`parse_fps`).
        max_depth: deepest bisection of one input interval (default
            :data:`~ldmvfi_fast.video.MAX_DEPTH`).
        seed_for: ``seed_for(i)`` -> the seed of the interval after input ``i`` (its own generator,
            as :meth:`~ldmvfi_fast.pipeline.Interpolator.interpolate_sequence` takes it), instead of
            one generator for the whole sequence: a piece of a longer sequence (a segment) then gets
            the frames the whole sequence would.
        origin: the time of output frame 0 (default: the first input's); a piece yields the grid
            times ``origin + k / fps`` from its first input on.
        include_last: yield the last input's time when it is on the grid (a piece that a next
            piece continues leaves it to that piece).

    Yields:
        ``(t, t_used, frame)`` for ``t = t_first + k / fps``, ``k = 0, 1, ...`` while ``t`` is at
        most the last input time. Between input frames at ``t0 < t1`` the frame is the one at the
        dyadic point ``t_used = t0 + p (t1 - t0)`` nearest to ``t``
        (:func:`~ldmvfi_fast.video.dyadic_point`, depth :func:`~ldmvfi_fast.video.dyadic_depth`
        from ``(t1 - t0) * fps``), so ``|t_used - t| <= (t1 - t0) / 2**(depth + 1)`` (at most half
        an output frame unless ``max_depth`` caps the depth), exact when ``(t1 - t0) * fps`` is a
        power of two and the grids meet. A point at an input time is the input frame itself; only
        the midpoints an output frame needs are computed (with the midpoints they descend from),
        each once, and each is encoded once when it serves as an end of a deeper midpoint. Across
        a scene cut the earlier frame is repeated (``on_scene_cut(i)`` for a cut after input
        ``i``), as :meth:`~ldmvfi_fast.pipeline.Interpolator.interpolate_sequence` does. One
        generator (``seed``) draws the noise, in the order the midpoints are computed.
    """
    from torch import Tensor

    from .pipeline import check_frames
    from .scene import SceneDetector
    from .video import MAX_DEPTH, bisection_parents, dyadic_depth, dyadic_point

    fps = parse_fps(fps)
    max_depth = MAX_DEPTH if max_depth is None else max_depth
    if generator is None and seed_for is None:
        generator = interp.new_generator(seed)
    detector = SceneDetector(scene_threshold) if scene_threshold is not None else None
    step = 1 / fps
    prev = None  # (frame, encoded, time)
    start = None
    k = 0
    i = -1
    for i, (f, t) in enumerate(frames):
        t = Fraction(t)
        if isinstance(f, Tensor) and f.dim() == 3:
            f = f[None]
        check_frames(f, values=False, first_index=i)
        f = f.to(interp.device, interp.io_dtype)
        enc = interp.encode(f, first_index=i)
        cut = detector is not None and detector.is_cut(f)
        if prev is None:
            start = t if origin is None else Fraction(origin)
            if t < start:
                raise MediaError(f"input frame {i} at {float(t):.6g} s is before the origin {float(start):.6g} s")
            k = math.ceil((t - start) * fps)  # the first grid time at or after the first input
            prev = (f, enc, t)
            continue
        f0, e0, t0 = prev
        if t <= t0:
            raise MediaError(f"frame times must increase: input frame {i} at {float(t):.6g} s follows "
                             f"{float(t0):.6g} s")
        if f.shape != f0.shape:
            from .errors import InputError

            raise InputError(f"frame sizes differ within the sequence: frame {i - 1} is {tuple(f0.shape)}, "
                             f"frame {i} is {tuple(f.shape)}")
        if cut:
            log.info("scene cut between input frames %d and %d: repeating frame %d", i - 1, i, i - 1)
            if on_scene_cut is not None:
                on_scene_cut(i - 1)
        interval = t - t0
        depth = dyadic_depth(interval, fps, max_depth)
        g = generator if seed_for is None else interp.new_generator(seed_for(i - 1))
        known = {Fraction(0): [f0, e0], Fraction(1): [f, enc]}  # point -> [frame, encoded or None]

        def encoded(p):
            entry = known[p]
            if entry[1] is None:
                entry[1] = interp.encode(entry[0])
            return entry[1]

        def frame_at(p):
            if p not in known:
                a, b = bisection_parents(p)
                frame_at(a), frame_at(b)
                known[p] = [interp.interpolate_encoded(encoded(a), encoded(b), g), None]
            return known[p][0]

        while start + k * step < t:
            tk = start + k * step
            p = dyadic_point(tk - t0, interval, depth)
            if cut and p != 1:
                p = Fraction(0)
            yield tk, t0 + p * interval, frame_at(p)
            k += 1
        prev = (f, enc, t)
    if include_last and prev is not None and start + k * step == prev[2]:
        yield prev[2], prev[2], prev[0]


def _drain(seq, write, *, source, overlap: bool, total: int | None, progress: bool, numbered: bool = False) -> None:
    """Write every item of ``seq`` (``(index, item)`` with ``numbered``), optionally from a writer
    thread, then close ``seq`` and the reader ``source`` (also on an error: the reader thread stops
    and is joined now)."""
    from tqdm import tqdm

    from .video import BackgroundWriter

    items = enumerate(seq) if numbered else seq
    bar = tqdm(total=total, unit="frame", desc="interpolating", leave=False, disable=not progress)
    try:
        if overlap:
            with BackgroundWriter(write, IO_QUEUE, name="ldmvfi-writer") as writer:
                for item in items:
                    writer.put(item)
                    bar.update()
        else:
            for item in items:
                write(item)
                bar.update()
    finally:
        bar.close()
        seq.close()
        if overlap:
            source.close()


def read_pair(image0, image1):
    """The two images of a pair job as pictures (:mod:`ldmvfi_fast.pixels`) of one layout (the wider of
    the two: colour, alpha, 16-bit if either has it), refused before any model runs when unreadable
    or of different sizes."""
    from .pixels import common_layout, convert
    from .video import read_picture

    a, b = read_picture(image0), read_picture(image1)
    if a.shape[:2] != b.shape[:2]:
        raise MediaError(f"input images differ in size: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
    layout = common_layout(a, b)
    return convert(a, *layout, name=image0), convert(b, *layout, name=image1)


def interpolate_pair(interp, image0, image1, out, *, seed: int | None = None, overwrite: bool = False,
                     progress: bool = True) -> tuple[int, int]:
    """The middle image of two images (paths, or pictures from :func:`read_pair`), written to ``out``
    (atomically) in their layout: bit depth, gray and alpha kept (the alpha: the two alphas'
    mean, :func:`ldmvfi_fast.pixels.blend_alpha`); returns (width, height)."""
    from tqdm import tqdm

    from .pixels import blend_alpha, model_to_picture, picture_to_model
    from .video import check_image_output, write_image

    a, b = (image0, image1) if hasattr(image0, "shape") else read_pair(image0, image1)
    check_image_output(out, a)
    (ta, alpha_a), (tb, alpha_b) = picture_to_model(a), picture_to_model(b)
    with tqdm(unit="step", desc="sampling", leave=False, disable=not progress) as bar:
        def step(done: int, total: int) -> None:  # ints only: no tensor read, no device sync
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
            if done == total:
                bar.refresh()  # the last step is always shown (tqdm skips updates within mininterval)

        mid = interp.interpolate(ta, tb, seed=seed, callback=step)
    alpha = None if alpha_a is None else blend_alpha(alpha_a, alpha_b, 0.5)
    write_image(out, model_to_picture(mid, a.shape[2], a.dtype.itemsize > 1, alpha), overwrite=overwrite)
    return a.shape[1], a.shape[0]


@dataclass
class VideoResult:
    """What :func:`interpolate_video` wrote: ``frames`` at ``fps`` (the declared rate; a
    variable-rate input keeps its own timing, ``fps`` is then its average rate x multi), the scene ``cuts`` (indices
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
    #: the last output frame's time (seconds from the first; the input's span is kept)
    span: Fraction | None = None


def interpolate_video(interp, src: str | Path, out: str | Path, *, multi: int = 2, seed: int | None = None,
                      scene_threshold: float | None = None, crf: int = 17, overwrite: bool = False,
                      max_frames: int | None = None, overlap: bool = True, progress: bool = True,
                      fps=None, max_depth: int | None = None) -> VideoResult:
    """Decode ``src`` (its first ``max_frames`` frames), interpolate, encode H.264 at ``crf`` into
    ``out`` (atomically; the audio copied, cut to the video when ``max_frames`` shortens it).
    ``overlap``: reader/writer threads (see :func:`run_sequence`). The benchmark
    (``benchmarks/latency.py --video``) times it with and without ``overlap``.

    Timing comes from the stream's timestamps (:func:`~ldmvfi_fast.video.read_video_timed`), so a
    variable-frame-rate video keeps its timing and its audio stays in sync:

    * ``fps=None``: x``multi``: every input frame at its own time, the new frames at the dyadic
      points of each interval (the midpoint for x2), stamped exactly (writer time base: the
      input's divided by ``multi``). A constant-rate input gives what it always gave:
      ``multi * (N - 1) + 1`` frames at ``multi`` times its rate.
    * ``fps`` (e.g. ``60`` or ``"60000/1001"``, :func:`parse_fps`): a constant ``fps`` output,
      frame ``k`` at ``k / fps`` after the first input frame, up to the last input frame's time;
      each is the frame at the nearest dyadic point of its input interval
      (:func:`resample_sequence`: error bound, scene cuts). ``multi`` is not used.

    Output times start at 0 at the first frame (as before: the copied audio keeps its own times).
    """
    from .pixels import model_to_picture, picture_to_model
    from .video import VideoWriter, fine_time_base, multi_time, prefetch, probe, read_video_timed

    src, out = Path(src), Path(out)
    info = probe(src)
    channels, deep = info.layout
    if info.channels in (2, 4):
        log.warning("%s has an alpha channel (%s); H.264 output has none: it is dropped (extract the frames "
                    "as PNG to keep it)", src, info.pix_fmt)
    if info.bits > 10:
        log.warning("%s is %d-bit (%s); H.264 output keeps 10 bits", src, info.bits, info.pix_fmt)
    n_in = info.frames if max_frames is None else min(info.frames or max_frames, max_frames)
    trim_audio = max_frames is not None and (not info.frames or info.frames > max_frames)
    resample = fps is not None
    if resample:
        fps = parse_fps(fps)
        total = int((n_in - 1) / info.fps * fps) + 1 if n_in else None  # an estimate (the bar only)
        time_base = fine_time_base(1 / fps)
    else:
        if multi not in MULTI:
            from .errors import OptionError

            raise OptionError(f"multi must be one of {MULTI}, got {multi}")
        total = multi * (n_in - 1) + 1 if n_in else None
        fps = info.fps * multi
        time_base = fine_time_base((info.time_base or Fraction(1, 90000)) / multi)
    log.info("%s: %dx%d at %.4g fps, %s frames%s -> %s frames at %.4g fps%s", src, info.width, info.height,
             float(info.fps), info.frames or "?", " and audio" if info.has_audio else "", total or "?", float(fps),
             " (constant rate)" if resample else "")
    times: list[Fraction] = []  # the input frames' times, appended as they are read (reader thread)

    def timed():
        for img, t in read_video_timed(src, max_frames, layout=(channels, deep)):
            times.append(t)
            yield picture_to_model(img)[0], t

    def picture(frame):
        return model_to_picture(frame, channels, deep)

    with VideoWriter(out, info.width, info.height, fps, crf=crf, overwrite=overwrite,
                     audio_from=src if info.has_audio else None, trim_audio=trim_audio, time_base=time_base,
                     bits=10 if deep else 8, gray=channels == 1) as w:
        if resample:
            cuts: list[int] = []
            source = prefetch(timed(), IO_QUEUE, name="ldmvfi-reader") if overlap else timed()
            seq = resample_sequence(interp, source, fps, seed=seed, scene_threshold=scene_threshold,
                                    on_scene_cut=cuts.append, max_depth=max_depth)

            def write_at(item) -> None:
                t, _used, frame = item
                w.write(picture(frame), t - times[0])

            _drain(seq, write_at, source=source, overlap=overlap, total=total, progress=progress)
            if cuts:
                log.info("scene cuts after input frames %s", cuts)
        else:
            def write(item) -> None:
                # output j: input i = j // multi, then its k-th dyadic point (times[i + 1] has been
                # read: the new frames of an interval come after its second frame is decoded)
                t = multi_time(times, item[0], multi)
                w.write(picture(item[1]), t - times[0])

            def untimed():
                it = timed()
                try:
                    for f, _t in it:
                        yield f
                finally:
                    it.close()  # the decoder's file closed now, also when stopped early

            cuts = run_sequence(interp, untimed(), write, multi=multi, seed=seed,
                                threshold=scene_threshold, total=total, overlap=overlap, progress=progress)
        if w.frames < 2:
            raise MediaError(f"{src} has fewer than 2 decodable frames" if len(times) < 2 else
                             f"{src}: {fps} fps gives fewer than 2 output frames over its "
                             f"{float(times[-1] - times[0]):.4g} s")
    span = w.last_time
    return VideoResult(out, w.frames, info.width, info.height, fps, cuts, info.has_audio, w.audio_packets,
                       trim_audio, span)


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
    """Check a folder job without the model: the input frames are listed and the first read (its
    layout, :mod:`ldmvfi_fast.pixels`, is the job's), the output folder is new or (``overwrite``)
    holds only frame files this job replaces."""
    from .video import check_frame_folder, check_writable, list_images, read_picture

    src, out = Path(src), Path(out)
    check_disjoint(src, out)
    check_frame_folder(out, overwrite)
    check_writable(out.parent)
    if out.is_dir():
        check_writable(out)
    files = list_images(src)
    if max_frames is not None:
        files = files[:max_frames]
    first = read_picture(files[0])
    total = multi * (len(files) - 1) + 1
    check_frame_folder(out, overwrite, total)  # the count is known: refuse frames that would stay behind
    return FolderJob(src, out, files, first, multi, total, overwrite)


def interpolate_folder(interp, job: FolderJob, *, seed: int | None = None, scene_threshold: float | None = None,
                       overlap: bool = False, progress: bool = True) -> FolderResult:
    """Run a :func:`plan_folder` job: ``frame_NNNNNN.png`` files into ``job.out``, moved in only
    when all are written. The frames keep the first frame's layout (16-bit, gray, alpha: see
    :mod:`ldmvfi_fast.pixels`; later frames may be narrower, never wider); alpha follows
    :class:`~ldmvfi_fast.pixels.AlphaTrack`."""
    from .pixels import AlphaTrack, convert, describe, model_to_picture, picture_to_model
    from .video import FRAME_NAME, frame_folder_output, read_picture, write_image

    first = job.first
    channels, deep = first.shape[2], first.dtype.itemsize > 1
    alpha = AlphaTrack(job.multi) if channels in (2, 4) else None
    log.info("%d input frames in %s (%dx%d, %s) -> %d frames", len(job.files), job.src, first.shape[1],
             first.shape[0], describe(first), job.total)

    def frames():
        for i, f in enumerate(job.files):
            img = first if i == 0 else read_picture(f)
            if img.shape[:2] != first.shape[:2]:
                raise MediaError(f"{f} is {img.shape[1]}x{img.shape[0]}, the first frame "
                                 f"{first.shape[1]}x{first.shape[0]}")
            rgb, a = picture_to_model(convert(img, channels, deep, name=f))
            if alpha is not None:
                alpha.add(i, a)
            yield rgb

    with frame_folder_output(job.out, job.overwrite, job.total) as tmp:
        def write(item) -> None:
            i, frame = item
            a = None if alpha is None else alpha.output(i)
            write_image(tmp / FRAME_NAME.format(i), model_to_picture(frame, channels, deep, a))

        cuts = run_sequence(interp, frames(), write, multi=job.multi, seed=seed, threshold=scene_threshold,
                            total=job.total, overlap=overlap, progress=progress,
                            on_scene_cut=None if alpha is None else alpha.cut)
    return FolderResult(job.out, job.total, first.shape[1], first.shape[0], cuts)


def default_overlap(interp, asked: bool | None) -> bool:
    """IO threads: as asked, else on for CUDA only (on CPU they take cores from the model:
    measured 1.3x slower on 2 cores, ``benchmarks/latency.py --video``)."""
    return asked if asked is not None else interp.device.type == "cuda"

