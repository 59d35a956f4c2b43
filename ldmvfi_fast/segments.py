"""Segmented, resumable jobs: a video or a folder of frames cut into segments of N input frames
that overlap by one input frame, each interpolated independently, written atomically into a job
folder and assembled into the output at the end.

Seeds come from the input's content hash, the job seed and the index of the pair's first input
frame (:func:`pair_seed`, given to :meth:`Interpolator.interpolate_sequence` as ``seed_for``), never
from the order of work: the frames are the same however the job is cut, scheduled (locally or on
Ray actors) or resumed, bitwise in the segment PNGs and in a frame-folder output.

The job folder holds ``job.json`` (the job manifest: the input and its content hash, the options
that shape frames, the toolkit version, each segment's state; sealed with ``contract_hash`` as
engine manifests are) and ``segments/seg_NNNNN/`` (that segment's frames as ``frame_NNNNNN.png``,
numbered from the segment's first input frame, and ``segment.json``, moved in last: a segment is
finished exactly when its ``segment.json`` exists). A job folder made with another input or other
options is refused with one line.

Video output: the assembled frames are encoded once more into the output (re-encoded from the
lossless segment PNGs; segments are not encoded separately and stream-copied), the audio copied
from the source as :func:`ldmvfi_fast.jobs.interpolate_video` does.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

from ._atomic import staged_folder, write_text_atomic
from ._digest import file_digest, update_with_file
from .errors import MediaError, OptionError

log = logging.getLogger(__name__)

__all__ = ["JOB_FORMAT", "JOB_VERSION", "JOB_NAME", "DEFAULT_SEGMENT_FRAMES", "EXECUTORS", "Segment", "SegmentJob",
           "Loader", "PairSeeds", "pair_seed", "content_hash", "cut_segments", "plan_job", "run_segment",
           "run_job", "assemble", "JobResult"]

JOB_FORMAT = "ldmvfi_fast.job"
JOB_VERSION = 1
JOB_NAME = "job.json"
SEGMENT_NAME = "segment.json"
DEFAULT_SEGMENT_FRAMES = 240
EXECUTORS = ("local", "ray")


def pair_seed(content: str, seed: int, i: int) -> int:
    """The seed of the pair starting at input frame ``i`` of the input with ``content`` hash, in [0, 2**63)."""
    d = hashlib.sha256(f"{content}|{int(seed)}|{int(i)}".encode()).digest()
    return int.from_bytes(d[:8], "big") >> 1


@dataclass(frozen=True)
class PairSeeds:
    """``seed_for`` of a job (picklable): global pair index ``offset + i`` -> :func:`pair_seed`."""
    content: str
    seed: int
    offset: int = 0

    def __call__(self, i: int) -> int:
        return pair_seed(self.content, self.seed, self.offset + i)


def content_hash(src: str | Path, files: list[Path] | None = None) -> str:
    """sha256 over the input: a video file's bytes, or a folder's frame names and bytes (in order)."""
    if files is None:
        return file_digest(src)
    h = hashlib.sha256()
    for f in files:
        h.update(f"{Path(f).name}|{Path(f).stat().st_size}|".encode())
        update_with_file(h, f)
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class Segment:
    """Input frames ``start`` .. ``stop - 1`` (the next segment starts at ``stop - 1``)."""
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"seg_{self.index:05d}"


def cut_segments(n_in: int, segment_frames: int) -> list[Segment]:
    """Segments of ``segment_frames`` input frames overlapping by one (the last may be shorter, >= 2)."""
    if segment_frames < 2:
        raise OptionError(f"--segment-frames must be at least 2 (two frames make one interval), got {segment_frames}")
    if n_in < 2:
        raise MediaError(f"the input has fewer than 2 frames ({n_in})")
    segs, start = [], 0
    while start < n_in - 1:
        stop = min(start + segment_frames, n_in)
        segs.append(Segment(len(segs), start, stop))
        start = stop - 1
    return segs


@dataclass
class Loader:
    """A picklable recipe for an :class:`~ldmvfi_fast.pipeline.Interpolator` (what a Ray actor loads)."""
    ckpt: str | None = None
    runtime: str = "torch"
    engines: str | None = None
    config: str | None = None
    use_ema: bool | None = None
    device: object = None  # "auto": cuda if the loading process has it (each Ray actor decides), else cpu
    dtype: object = None
    runtime_options: object = None
    sampling: object = None  # a SamplingRequest
    padding: str = "reference"

    def __call__(self):
        from .pipeline import Interpolator
        from .runtime import load_backbone

        device = self.device
        if device == "auto":  # chosen where the model loads (a Ray actor: its own GPU, if it has one)
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        backbone = load_backbone(self.runtime, ckpt=self.ckpt, engines=self.engines, config=self.config,
                                 use_ema=self.use_ema, device=device, dtype=self.dtype,
                                 options=self.runtime_options)
        return Interpolator(backbone, options=self.sampling, padding=self.padding)

    def identity(self) -> dict:
        """What of the model shapes the frames: the weights (checkpoint bytes, or the engine folder's seal)
        and how they run."""
        ident = {"runtime": self.runtime, "config": None if self.config is None else str(self.config),
                 "use_ema": self.use_ema, "device": None if self.device is None else str(self.device),
                 "dtype": None if self.dtype is None else str(self.dtype).replace("torch.", ""),
                 "runtime_options": None if self.runtime_options is None else repr(self.runtime_options),
                 "padding": self.padding}
        if self.ckpt is not None:
            ident["checkpoint"] = file_digest(self.ckpt)
        if self.engines is not None:
            m = json.loads((Path(self.engines) / "manifest.json").read_text())
            ident["engines"] = m.get("contract_hash")
        s = self.sampling
        ident["sampling"] = None if s is None else {k: (list(v) if isinstance(v, tuple) else v)
                                                     for k, v in asdict(s).items()}
        return ident


@dataclass
class SegmentJob:
    """A planned segmented job (see :func:`plan_job`); picklable (sent to Ray actors)."""
    src: Path
    out: Path
    job_dir: Path
    kind: str  # "folder" or "video"
    files: list[Path] | None
    n_in: int
    width: int
    height: int
    fps: Fraction | None
    has_audio: bool
    multi: int
    seed: int
    content: str
    scene_threshold: float | None
    segment_frames: int
    max_frames: int | None
    overwrite: bool
    crf: int
    segments: list[Segment] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    #: the frames' layout (:mod:`ldmvfi_fast.pixels`): channels 1..4 (gray, gray + alpha, RGB, RGBA), 16-bit
    channels: int = 3
    deep: bool = False
    #: a video's frame timestamps (presentation order, the stream's ``time_base``): segments seek to
    #: their first frame, and the output keeps the input's timing (variable frame rate included)
    pts: list[int] | None = None
    time_base: Fraction | None = None
    #: a constant output rate (``--fps``): output frame k at k / fps_out after the first input frame
    fps_out: Fraction | None = None

    def times(self) -> list[Fraction]:
        """The input frames' times (seconds from the first; a video job's)."""
        return [Fraction(p - self.pts[0]) * self.time_base for p in self.pts]

    def grid(self, seg: Segment, times: list[Fraction] | None = None) -> range:
        """``fps_out`` jobs: the output frames k of ``seg``: ``k / fps_out`` from its first input's time,
        before its last's (at it too for the last segment, which no segment continues)."""
        times = self.times() if times is None else times
        t0, t1 = times[seg.start], times[seg.stop - 1]
        hi = math.floor(t1 * self.fps_out) if seg.index == len(self.segments) - 1 else math.ceil(t1 * self.fps_out) - 1
        return range(math.ceil(t0 * self.fps_out), hi + 1)

    def seg_frames(self, seg: Segment) -> int:
        """How many output frames ``seg`` writes."""
        if self.fps_out is not None:
            return len(self.grid(seg))
        return self.multi * (seg.stop - seg.start - 1) + 1

    @property
    def total(self) -> int:
        if self.fps_out is not None:
            return math.floor(self.times()[-1] * self.fps_out) + 1
        return self.multi * (self.n_in - 1) + 1

    def seg_dir(self, seg: Segment) -> Path:
        return self.job_dir / "segments" / seg.name

    def done(self, seg: Segment) -> bool:
        return (self.seg_dir(seg) / SEGMENT_NAME).is_file()

    def pending(self) -> list[Segment]:
        return [s for s in self.segments if not self.done(s)]


def _seal(m: dict) -> dict:
    from .manifest import contract_hash

    m = {k: v for k, v in m.items() if k != "contract_hash"}
    m["contract_hash"] = contract_hash(m)
    return m


def _read_job(job_dir: Path) -> dict:
    from .manifest import contract_hash

    path = job_dir / JOB_NAME
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MediaError(f"job folder {job_dir}: cannot read {JOB_NAME}: {exc}") from None
    if not isinstance(m, dict) or m.get("format") != JOB_FORMAT or m.get("contract_hash") != contract_hash(m):
        raise MediaError(f"job folder {job_dir}: {JOB_NAME} is not an intact ldmvfi_fast job manifest; "
                         "give another --job-dir")
    return m


def _write_job(job: SegmentJob) -> None:
    states = {s.name: "done" if job.done(s) else "pending" for s in job.segments}
    m = dict(job.manifest)
    m["segments"] = [{"name": s.name, "start": s.start, "stop": s.stop, "state": states[s.name]}
                     for s in job.segments]
    job.manifest = _seal(m)
    write_text_atomic(job.job_dir / JOB_NAME, json.dumps(job.manifest, indent=1, sort_keys=True))


def _video_frames(src: Path, info, max_frames: int | None) -> tuple[int, list[int] | None, Fraction | None]:
    """(frames of the job, their timestamps, time base): from the packets (no decoding) when every
    frame has a timestamp, else counted by decoding (no seeking, constant-rate output)."""
    from .video import read_frame_pts, read_video

    pts, tb = read_frame_pts(src)
    if pts and len(set(pts)) == len(pts) and (not info.frames or info.frames == len(pts)):
        pts = pts if max_frames is None else pts[:max_frames]
        return len(pts), pts, tb
    log.warning("%s: frame timestamps missing or inconsistent; segments decode from the start and the "
                "output is written at a constant rate", src)
    n = 0
    for _ in read_video(src, max_frames):
        n += 1
    return n, None, None


def plan_job(src: str | Path, out: str | Path, job_dir: str | Path | None, *, identity: dict, multi: int = 2,
             segment_frames: int = DEFAULT_SEGMENT_FRAMES, seed: int | None = None, max_frames: int | None = None,
             scene_threshold: float | None = None, overwrite: bool = False, crf: int = 17,
             resume: bool = False, fps=None) -> SegmentJob:
    """Check a segmented job without the model and create (or reopen) its job folder.

    ``identity``: the model's part of the options that shape frames (:meth:`Loader.identity`).
    ``job_dir`` None: ``<out>.job`` beside the output. A job folder holding a job of another input,
    model or options is refused (:class:`OptionError`); ``resume`` refuses a job folder without a job.
    ``seed`` None: a new random seed, or (reopening a job) the job's own. ``fps``: a constant
    output rate (a video with timestamps; see :func:`ldmvfi_fast.jobs.resample_sequence`) instead of
    ``multi``."""
    from . import __version__
    from .jobs import check_disjoint, check_file_output
    from .video import check_frame_folder, check_writable, list_images, probe, read_picture

    fps_out, fps = fps, None  # fps below: the input video's rate
    src, out = Path(src), Path(out)
    job_dir = Path(job_dir) if job_dir is not None else out.with_name(out.name + ".job")
    if seed is not None and not 0 <= seed < 2 ** 63:
        raise OptionError(f"--seed must be between 0 and {2 ** 63 - 1}, got {seed}")
    if src.is_dir():
        kind = "folder"
        check_disjoint(src, out)
        check_frame_folder(out, overwrite)
        check_writable(out.parent)
        files = list_images(src)
        if max_frames is not None:
            files = files[:max_frames]
        first = read_picture(files[0])
        n_in, height, width, fps, has_audio = len(files), first.shape[0], first.shape[1], None, False
        layout = first.shape[2], first.dtype.itemsize > 1
        pts = time_base = None
        check_frame_folder(out, overwrite, multi * (n_in - 1) + 1)
        content = content_hash(src, files)
    else:
        kind = "video"
        check_file_output(out, overwrite, [src])
        info = probe(src)
        files, width, height, fps, has_audio = None, info.width, info.height, info.fps, info.has_audio
        layout = info.layout
        n_in, pts, time_base = _video_frames(src, info, max_frames)
        content = content_hash(src)
    if fps_out is not None:
        from .jobs import parse_fps

        fps_out = parse_fps(fps_out)
        if kind != "video" or pts is None:
            raise OptionError("--fps needs a video with frame timestamps (a folder of frames has none); use --multi")
    segments = cut_segments(n_in, segment_frames)
    shaping = {"input": {"kind": kind, "content_hash": content, "frames": n_in, "max_frames": max_frames},
               "model": identity, "multi": None if fps_out is not None else multi,
               "scene_threshold": scene_threshold, "segment_frames": segment_frames,
               "fps": None if fps_out is None else str(fps_out)}
    existing = job_dir / JOB_NAME
    if existing.is_file():
        old = _read_job(job_dir)
        for key, value in shaping.items():
            if json.loads(json.dumps(value)) != old.get(key):
                raise OptionError(f"job folder {job_dir} was made with another {key.replace('_', ' ')} "
                                  f"({json.dumps(old.get(key), sort_keys=True)[:200]}); rerun with its options "
                                  "or give another --job-dir")
        if seed is not None and seed != old.get("seed"):
            raise OptionError(f"job folder {job_dir} was made with --seed {old.get('seed')}, not {seed}; "
                              "rerun with its options or give another --job-dir")
        seed = old["seed"]
        log.info("resuming the job in %s", job_dir)
    elif resume:
        raise OptionError(f"--resume: no job in {job_dir} ({JOB_NAME} missing)")
    else:
        if job_dir.exists() and any(job_dir.iterdir()):
            raise OptionError(f"job folder {job_dir} is not empty and holds no {JOB_NAME}; give a new folder")
        check_writable(job_dir.parent if not job_dir.exists() else job_dir)
        if seed is None:
            seed = secrets.randbelow(2 ** 63)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "segments").mkdir(exist_ok=True)
    manifest = {"format": JOB_FORMAT, "format_version": JOB_VERSION, "toolkit_version": __version__,
                "source": str(src.resolve()), "output": str(out.resolve()), "seed": seed, **shaping}
    job = SegmentJob(src, out, job_dir, kind, files, n_in, width, height, fps, has_audio, multi, seed, content,
                     scene_threshold, segment_frames, max_frames, overwrite, crf, segments,
                     json.loads(json.dumps(manifest)), *layout, pts, time_base, fps_out)
    _write_job(job)
    return job


def _segment_frames(job: SegmentJob, seg: Segment, alpha=None):
    """The segment's input frames as model tensors; their alphas (local indices) into ``alpha``."""
    from .pixels import convert, picture_to_model
    from .video import read_picture, read_video_from, read_video_timed

    if job.kind == "folder":
        for i, f in enumerate(job.files[seg.start:seg.stop]):
            img = read_picture(f)
            if img.shape[:2] != (job.height, job.width):
                raise MediaError(f"{f} is {img.shape[1]}x{img.shape[0]}, the first frame {job.width}x{job.height}")
            rgb, a = picture_to_model(convert(img, job.channels, job.deep, name=f))
            if alpha is not None:
                alpha.add(i, a)
            yield rgb
        return
    layout = (job.channels, job.deep)
    if job.pts is not None and seg.start > 0:  # seek to the keyframe before the segment's first frame
        frames = read_video_from(job.src, job.pts[seg.start], seg.stop - seg.start, layout)
        if frames is not None:
            try:
                for img in frames:
                    yield picture_to_model(img)[0]
            finally:
                frames.close()
            return
        log.info("%s: cannot seek to frame %d; decoding from the start", job.src, seg.start)
    timed = read_video_timed(job.src, seg.stop, layout=layout)
    try:
        for i, (img, _t) in enumerate(timed):
            if i >= seg.start:
                yield picture_to_model(img)[0]
    finally:
        timed.close()


def run_segment(interp, job: SegmentJob, seg: Segment) -> dict:
    """Interpolate one segment into its folder of the job (atomically; ``segment.json`` last) and
    return its metadata (index, frames, scene cuts as global input indices). The PNGs keep the job's
    layout (16-bit, gray, alpha: :mod:`ldmvfi_fast.pixels`)."""
    from .pixels import AlphaTrack, model_to_picture
    from .video import FRAME_NAME, write_image

    cuts: list[int] = []
    alpha = AlphaTrack(job.multi) if job.channels in (2, 4) else None

    def cut(i: int) -> None:
        cuts.append(seg.start + i)
        if alpha is not None:
            alpha.cut(i)

    n = 0
    seeds = PairSeeds(job.content, job.seed, seg.start)
    with staged_folder(job.seg_dir(seg), last=[SEGMENT_NAME]) as tmp:
        if job.fps_out is None:  # x multi: PNGs numbered from the segment's first input frame
            seq = interp.interpolate_sequence(_segment_frames(job, seg, alpha), job.multi,
                                              scene_threshold=job.scene_threshold, on_scene_cut=cut, seed_for=seeds)
            names = None
        else:  # a constant rate: the grid of the whole job from time 0, PNGs numbered by output frame
            from .jobs import resample_sequence

            times = job.times()
            names = job.grid(seg, times)
            timed = ((f, times[seg.start + i]) for i, f in enumerate(_segment_frames(job, seg)))
            seq = (frame for _t, _used, frame in resample_sequence(
                interp, timed, job.fps_out, scene_threshold=job.scene_threshold, on_scene_cut=cut, seed_for=seeds,
                origin=Fraction(0), include_last=seg.index == len(job.segments) - 1))
        try:
            for n, frame in enumerate(seq, 1):
                if names is not None and n > len(names):
                    break  # more than the grid holds: reported below
                a = None if alpha is None else alpha.output(n - 1)
                name = FRAME_NAME.format(n - 1 if names is None else names[n - 1])
                write_image(tmp / name, model_to_picture(frame, job.channels, job.deep, a))
        finally:
            seq.close()
        expected = job.seg_frames(seg)
        if n != expected:
            raise MediaError(f"segment {seg.name}: {n} frames written, {expected} expected (input changed?)")
        meta = {"name": seg.name, "start": seg.start, "stop": seg.stop, "frames": n, "cuts": cuts}
        (tmp / SEGMENT_NAME).write_text(json.dumps(meta, sort_keys=True))
    return meta


@dataclass
class JobResult:
    out: Path
    frames: int
    width: int
    height: int
    cuts: list[int]
    segments_run: list[str]
    has_audio: bool = False
    audio_packets: int = 0


def _output_frames(job: SegmentJob):
    """(global output index, segment PNG path) in order, the shared first frame of later segments skipped."""
    from .video import FRAME_NAME

    times = job.times() if job.fps_out is not None else None
    for seg in job.segments:
        d = job.seg_dir(seg)
        if times is not None:  # constant rate: segments share no output frame
            for k in job.grid(seg, times):
                yield k, d / FRAME_NAME.format(k)
            continue
        n = job.multi * (seg.stop - seg.start - 1) + 1
        for j in range(0 if seg.index == 0 else 1, n):
            yield job.multi * seg.start + j, d / FRAME_NAME.format(j)


def assemble(job: SegmentJob) -> tuple[list[int], int]:
    """Build the output from the finished segments (atomically); returns (scene cuts, audio packets)."""
    from .video import FRAME_NAME, VideoWriter, fine_time_base, frame_folder_output, multi_time, read_picture

    missing = job.pending()
    if missing:
        raise MediaError(f"job {job.job_dir}: {len(missing)} segments unfinished ({missing[0].name} ...)")
    cuts = sorted({c for s in job.segments
                   for c in json.loads((job.seg_dir(s) / SEGMENT_NAME).read_text())["cuts"]})
    if job.kind == "folder":
        with frame_folder_output(job.out, job.overwrite, job.total) as tmp:
            for k, path in _output_frames(job):
                target = tmp / FRAME_NAME.format(k)
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copyfile(path, target)
        return cuts, 0
    trim = job.max_frames is not None
    time_base = times = None
    rate = job.fps * job.multi if job.fps_out is None else job.fps_out
    if job.fps_out is not None:  # a constant rate: frame k at k / fps_out
        time_base = fine_time_base(1 / job.fps_out)
    elif job.pts is not None:  # the input's own timing, as interpolate_video keeps it
        times = job.times()
        time_base = fine_time_base(job.time_base / job.multi)
    with VideoWriter(job.out, job.width, job.height, rate, crf=job.crf, overwrite=job.overwrite,
                     audio_from=job.src if job.has_audio else None, trim_audio=trim, bits=10 if job.deep else 8,
                     gray=job.channels == 1, time_base=time_base) as w:
        for k, path in _output_frames(job):
            t = None
            if job.fps_out is not None:
                t = Fraction(k) / job.fps_out
            elif times is not None:
                t = multi_time(times, k, job.multi)
            w.write(read_picture(path), t)
    return cuts, w.audio_packets


class SegmentWorker:
    """One model, many segments: the Ray actor's body (also usable locally)."""

    def __init__(self, load: Callable[[], object]):
        self.interp = load()

    def run(self, job: SegmentJob, seg: Segment) -> dict:
        return run_segment(self.interp, job, seg)


def _run_ray(job: SegmentJob, load, pending: list[Segment], on_segment, *, address: str | None,
             actors: int | None, max_restarts: int, max_task_retries: int) -> None:
    try:
        import ray
    except ImportError:
        raise OptionError("--executor ray needs Ray: pip install 'ldmvfi-fast[ray]'") from None
    from ray.util import ActorPool

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    per = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    room = gpus if gpus else max(1, int(res.get("CPU", 1)))  # actors the cluster can place at once
    if actors is not None and actors > room:
        log.warning("%d actors asked, the cluster places %d (%s): running %d", actors, room,
                    "GPUs" if gpus else "CPUs", room)
    n = max(1, min(actors or room, room, len(pending)))
    cls = ray.remote(max_restarts=max_restarts, max_task_retries=max_task_retries, **per)(SegmentWorker)
    workers = [cls.remote(load) for _ in range(n)]
    log.info("running %d segments on %d Ray actors (%s each)", len(pending), n, per)
    try:
        pool = ActorPool(workers)
        for meta in pool.map_unordered(lambda a, s: a.run.remote(job, s), pending):
            on_segment(meta)
    finally:
        for a in workers:
            ray.kill(a)


def run_job(job: SegmentJob, load: Callable[[], object] | None = None, *, interp=None, executor: str = "local",
            ray_address: str | None = None, actors: int | None = None, max_restarts: int = 2,
            max_task_retries: int = 2, on_segment: Callable[[dict], None] | None = None,
            progress: bool = True) -> JobResult:
    """Run the unfinished segments of ``job`` and assemble the output.

    ``executor="local"``: in this process, with ``interp`` (or ``load()``); ``"ray"``: on Ray actors
    (``ray.init(address=ray_address)`` unless Ray is already initialised; ``actors`` of them, one
    model each (``load()``, picklable: a :class:`Loader`), ``num_gpus=1`` each on a GPU cluster,
    else ``num_cpus=1``), which read their segments' input and write their segment folders
    themselves and return only metadata. ``on_segment(meta)`` is called in this process after each
    finished segment (after the job manifest records it). ``progress``: one bar over the whole job
    (output frames of the segments to run, frames/s and ETA; advanced as segments finish)."""
    from tqdm import tqdm

    if executor not in EXECUTORS:
        raise OptionError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    pending = job.pending()
    log.info("%s: %d segments, %d to run", job.job_dir, len(job.segments), len(pending))
    ran: list[str] = []
    todo = sum(job.seg_frames(s) for s in pending)
    bar = tqdm(total=todo, unit="frame", desc=f"job ({len(pending)} segments)", disable=not progress or not pending)

    def finished(meta: dict) -> None:
        ran.append(meta["name"])
        _write_job(job)
        bar.update(meta["frames"])
        if on_segment is not None:
            on_segment(meta)

    try:
        _run_pending(job, load, interp, executor, pending, finished, address=ray_address, actors=actors,
                     max_restarts=max_restarts, max_task_retries=max_task_retries)
    finally:
        bar.close()
    cuts, packets = assemble(job)
    return JobResult(job.out, job.total, job.width, job.height, cuts, ran, job.has_audio, packets)


def _run_pending(job, load, interp, executor, pending, finished, **ray_kw) -> None:
    """Run ``pending`` segments on the executor (``ray_kw``: :func:`_run_ray`'s keywords)."""
    if pending:
        if executor == "local":
            if interp is None:
                if load is None:
                    raise OptionError("run_job needs interp or load")
                interp = load()
            for seg in pending:
                finished(run_segment(interp, job, seg))
        else:
            if load is None:
                raise OptionError("the ray executor needs load (a picklable Loader)")
            _run_ray(job, load, pending, finished, **ray_kw)


def requested(args) -> bool:
    """Whether the command line asked for a segmented job."""
    return bool(getattr(args, "segment_frames", None) or getattr(args, "job_dir", None)
                or getattr(args, "resume", False) or getattr(args, "executor", "local") != "local"
                or getattr(args, "actors", None) is not None)


def cli_job(args, src: Path, out: Path, multi: int, threshold: float | None) -> str:
    """``ldmvfi-fast interpolate`` with ``--segment-frames/--job-dir/--resume/--executor``: plan
    (before the model loads), run, assemble; returns the final message."""
    from . import _env

    if args.actors is not None and (args.executor != "ray" or args.actors < 1):
        raise OptionError(f"--actors {args.actors}: give a count of at least 1, with --executor ray")
    if args.ray_address is not None and args.executor != "ray":
        raise OptionError("--ray-address applies to --executor ray")
    ckpt = args.ckpt or (_env.default_checkpoint() if args.runtime == "torch" else None)
    # on Ray without --device: each actor takes its own GPU if it has one (the driver may have none)
    device = "auto" if args.executor == "ray" and args.device is None else args.device_checked
    loader = Loader(ckpt=None if ckpt is None else str(ckpt), runtime=args.runtime, engines=args.engines,
                    config=args.config, use_ema=False if args.raw_weights else None, device=device,
                    dtype=args.dtype_checked, runtime_options=args.runtime_options, sampling=args.sampling,
                    padding=args.padding)
    job = plan_job(src, out, args.job_dir, identity=loader.identity(), multi=multi,
                   segment_frames=args.segment_frames or DEFAULT_SEGMENT_FRAMES, seed=args.seed,
                   max_frames=args.max_frames, scene_threshold=threshold, overwrite=args.overwrite, crf=args.crf,
                   resume=args.resume, fps=args.fps)
    r = run_job(job, loader, executor=args.executor, ray_address=args.ray_address, actors=args.actors)
    done = len(job.segments) - len(r.segments_run)
    return (f"wrote {out}: {r.frames} frames ({r.width}x{r.height}) from {len(job.segments)} segments "
            f"({len(r.segments_run)} run, {done} already done) in {job.job_dir}; "
            f"{len(r.cuts)} scene cuts" + (f", audio copied ({r.audio_packets} packets)" if r.has_audio else ""))
