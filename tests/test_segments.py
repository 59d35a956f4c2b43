"""Segmented, resumable jobs (ldmvfi_fast.segments): frames independent of how the job is cut,
scheduled or resumed; job folders of other jobs refused; the Ray executor."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from ldmvfi_fast import segments
from ldmvfi_fast.errors import OptionError

N_FRAMES = 6
SEED = 123


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    from ldmvfi_fast.clips import bundled_clip
    from ldmvfi_fast.video import FRAME_NAME, read_video, write_image

    d = tmp_path_factory.mktemp("in") / "frames"
    d.mkdir()
    for i, img in enumerate(read_video(bundled_clip("carphone_pristine.mp4"), N_FRAMES)):
        write_image(d / FRAME_NAME.format(i), img)
    return d


def _job(frames_dir, tmp, loader, n, name="out", **kw):
    return segments.plan_job(frames_dir, tmp / name, tmp / f"{name}.job", identity=loader.identity(),
                             segment_frames=n, seed=SEED, **kw)


@pytest.fixture(scope="module")
def reference(frames_dir, loader, interp, tmp_path_factory) -> dict[str, bytes]:
    """A segmented job's frame folder (segments of 3 input frames)."""
    tmp = tmp_path_factory.mktemp("ref")
    job = _job(frames_dir, tmp, loader, 3)
    r = segments.run_job(job, interp=interp)
    assert r.frames == 2 * (N_FRAMES - 1) + 1 and len(job.segments) == 3
    return _files(tmp / "out")


def test_cut_segments():
    segs = segments.cut_segments(6, 3)
    assert [(s.start, s.stop) for s in segs] == [(0, 3), (2, 5), (4, 6)]
    assert [(s.start, s.stop) for s in segments.cut_segments(5, 100)] == [(0, 5)]
    with pytest.raises(OptionError):
        segments.cut_segments(5, 1)


def test_same_frames_however_cut(frames_dir, loader, interp, reference, tmp_path):
    """(a) segments of 4 frames and one unsegmented run with the same seed_for give the same bytes."""
    from ldmvfi_fast.video import FRAME_NAME, read_image, to_image, to_tensor, write_image

    job = _job(frames_dir, tmp_path, loader, 4)
    segments.run_job(job, interp=interp)
    assert _files(tmp_path / "out") == reference
    whole = tmp_path / "whole"
    whole.mkdir()
    frames = (to_tensor(read_image(f)) for f in job.files)
    for i, f in enumerate(interp.interpolate_sequence(frames, 2, seed_for=segments.PairSeeds(job.content, SEED))):
        write_image(whole / FRAME_NAME.format(i), to_image(f))
    assert _files(whole) == reference


def test_per_job_seed_is_not_enough(frames_dir, loader, interp, tmp_path, monkeypatch):
    """(a) fails with per-job seeding (one generator per segment from the job seed): the cut shows."""
    real = type(interp).interpolate_sequence

    def per_job(self, frames, multi=2, *, seed_for=None, **kw):
        return real(self, frames, multi, seed=SEED, **kw)

    monkeypatch.setattr(type(interp), "interpolate_sequence", per_job)
    outs = []
    for n in (3, 4):  # 4 input frames: segments (0-2, 2-3) vs one segment (0-3)
        segments.run_job(_job(frames_dir, tmp_path, loader, n, name=f"out{n}", max_frames=4), interp=interp)
        outs.append(_files(tmp_path / f"out{n}"))
    same = [k for k in outs[0] if outs[0][k] == outs[1][k]]
    # the first segment's frames and the input frames agree; the new frame after the cut does not
    assert "frame_000005.png" not in same
    assert {"frame_000001.png", "frame_000003.png"} <= set(same)


def test_resume_redoes_only_unfinished(frames_dir, loader, interp, reference, tmp_path):
    """(b) interrupted after the first segment, resumed: same frames, only the rest run."""
    class Stop(Exception):
        pass

    def stop(meta):
        raise Stop(meta["name"])

    job = _job(frames_dir, tmp_path, loader, 3)
    with pytest.raises(Stop):
        segments.run_job(job, interp=interp, on_segment=stop)
    assert not (tmp_path / "out").exists()
    m = json.loads((tmp_path / "out.job" / "job.json").read_text())
    assert [s["state"] for s in m["segments"]] == ["done", "pending", "pending"]
    job = segments.plan_job(frames_dir, tmp_path / "out", tmp_path / "out.job", identity=loader.identity(),
                            segment_frames=3, resume=True)  # the job's own seed is reused
    assert job.seed == SEED
    r = segments.run_job(job, interp=interp)
    assert r.segments_run == ["seg_00001", "seg_00002"]
    assert _files(tmp_path / "out") == reference
    m = json.loads((tmp_path / "out.job" / "job.json").read_text())
    assert {s["state"] for s in m["segments"]} == {"done"}


def test_other_job_folder_refused(frames_dir, loader, tmp_path):
    """(c) a job folder of other options, model or input is refused with one line."""
    _job(frames_dir, tmp_path, loader, 3)
    for kw in ({"multi": 4}, {"identity": {**loader.identity(), "padding": "reference"}}, {"max_frames": 4},
               {"seed": SEED + 1}):
        ident = kw.pop("identity", loader.identity())
        with pytest.raises(OptionError) as e:
            segments.plan_job(frames_dir, tmp_path / "out", tmp_path / "out.job", identity=ident,
                              segment_frames=3, seed=kw.pop("seed", SEED), **kw)
        assert "\n" not in str(e.value) and "out.job" in str(e.value)
    with pytest.raises(OptionError, match="no job"):
        segments.plan_job(frames_dir, tmp_path / "o2", tmp_path / "o2.job", identity=loader.identity(),
                          segment_frames=3, resume=True)


def test_cli_video_segmented(ckpt, tmp_path):
    """The command line: a video cut into segments, resumed with nothing left to do."""
    from ldmvfi_fast.cli import main
    from ldmvfi_fast.clips import bundled_clip
    from ldmvfi_fast.video import probe

    out = tmp_path / "o.mp4"
    argv = ["interpolate", str(bundled_clip("carphone_pristine.mp4")), "-o", str(out), "--ckpt", ckpt,
            "--steps", "2", "--padding", "minimal", "--max-frames", "4", "--segment-frames", "3", "--seed", "1",
            "--device", "cpu"]
    assert main(argv) == 0
    assert probe(out).frames == 7
    out.unlink()
    assert main(argv + ["--resume"]) == 0  # all segments done: only assembled again
    assert probe(out).frames == 7
    assert main(argv[:-6] + ["--segment-frames", "3", "--seed", "2", "--device", "cpu", "--job-dir",
                             str(tmp_path / "o.mp4.job")]) == 2


@pytest.mark.parametrize("extra,msg", [(["--actors", "2"], "with --executor ray"),
                                       (["--executor", "ray", "--actors", "0"], "at least 1"),
                                       (["--ray-address", "auto"], "applies to --executor ray")])
def test_cli_ray_options_without_ray_are_refused(ckpt, frames_dir, tmp_path, capsys, extra, msg):
    from ldmvfi_fast.cli import main

    code = main(["interpolate", str(frames_dir), "-o", str(tmp_path / "o"), "--ckpt", ckpt,
                 "--segment-frames", "3"] + extra)
    assert code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.job").exists()


def test_one_progress_bar_over_the_job(frames_dir, loader, interp, tmp_path, capsys):
    job = _job(frames_dir, tmp_path, loader, 3)
    segments.run_job(job, interp=interp, progress=True)
    err = capsys.readouterr().err
    assert f"job ({len(job.segments)} segments)" in err and f"{job.total + len(job.segments) - 1}/" in err


def _local_one_thread(frames_dir, tmp_path, loader, interp) -> dict[str, bytes]:
    """The local executor's frames at one thread (what a Ray CPU actor runs with)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        segments.run_job(_job(frames_dir, tmp_path, loader, 3, name="local"), interp=interp)
    finally:
        torch.set_num_threads(threads)
    return _files(tmp_path / "local")


@pytest.mark.slow  # ~35 s on 2 busy cores (Ray start, two actors loading the model, a 1-thread local run)
def test_ray_executor(frames_dir, loader, interp, tmp_path):
    """(d) two Ray actors (CPU) give the local executor's frames. Ray runs each CPU actor with one
    thread (OMP_NUM_THREADS=1) and CPU convolutions are bitwise equal only at one thread count, so
    the local run here uses one thread too."""
    ray = pytest.importorskip("ray")
    reference = _local_one_thread(frames_dir, tmp_path, loader, interp)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        job = _job(frames_dir, tmp_path, loader, 3)
        # 3 actors asked of a 2-CPU cluster: capped at 2 (a third could never be placed: it would wait forever)
        r = segments.run_job(job, loader, executor="ray", actors=3)
        assert sorted(r.segments_run) == ["seg_00000", "seg_00001", "seg_00002"]
        assert _files(tmp_path / "out") == reference
    finally:
        ray.shutdown()


class _DiesOnce:
    """A loader whose first actor dies (``os._exit``) in its first segment: the fault injected to
    see Ray restart the actor and retry the segment elsewhere. A marker file makes it once only."""

    def __init__(self, inner, marker: str):
        self.inner, self.marker = inner, marker

    def __call__(self):
        import os

        interp = self.inner()
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            real = interp.interpolate_sequence

            def dying(*a, **k):
                os._exit(1)  # the worker process dies mid-segment
                return real(*a, **k)
            interp.interpolate_sequence = dying
        return interp


@pytest.mark.slow  # Ray start-up, an actor restart
def test_ray_worker_killed_mid_job_still_completes(frames_dir, loader, interp, tmp_path):
    """(e) a worker killed mid-segment: Ray restarts the actor (``max_restarts``) and retries the
    segment (``max_task_retries``); the job completes with the local executor's frames."""
    import sys

    ray = pytest.importorskip("ray")
    reference = _local_one_thread(frames_dir, tmp_path, loader, interp)
    import ray.cloudpickle as cp

    cp.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    marker = tmp_path / "died"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        job = _job(frames_dir, tmp_path, loader, 3)
        r = segments.run_job(job, _DiesOnce(loader, str(marker)), executor="ray", actors=2)
        assert marker.exists()  # the fault did happen
        assert sorted(r.segments_run) == ["seg_00000", "seg_00001", "seg_00002"]
        assert _files(tmp_path / "out") == reference
    finally:
        ray.shutdown()
        cp.unregister_pickle_by_value(sys.modules[__name__])


# ----------------------------------------------------------------------------- video: seeking and timing
def _keyframe_video(path: Path, n: int) -> None:
    """An H.264 file with a keyframe every 3 frames and B-frames (a seek lands mid-file)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"g": "3", "keyint_min": "3", "bf": "2", "sc_threshold": "0"}
        for i in range(n):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:, : 4 + 5 * i, 0] = 40 + 17 * i
            img[::2, :, 1] = 9 * i
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_segments_seek_to_their_first_frame(tmp_path):
    """A segment decodes from the keyframe before its first frame, and gets the frames a decode from
    the file's start gives, bit for bit."""
    import numpy as np

    from ldmvfi_fast.video import read_frame_pts, read_video, read_video_from

    _keyframe_video(tmp_path / "k.mp4", 10)
    every = list(read_video(tmp_path / "k.mp4"))
    pts, _ = read_frame_pts(tmp_path / "k.mp4")
    assert len(every) == len(pts) == 10
    for start in range(1, 9):
        got = read_video_from(tmp_path / "k.mp4", pts[start], 2)
        assert got is not None, start
        got = list(got)
        assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, every[start:start + 2])), start


def test_segmented_video_keeps_variable_frame_rate(loader, interp, tmp_path):
    """The segmented job's video has the one-process path's frame times: a VFR input keeps its timing."""
    from test_timing import VFR_TIMES, midpoints, write_vfr

    from ldmvfi_fast.video import read_frame_times

    write_vfr(tmp_path / "vfr.mp4", VFR_TIMES)
    job = segments.plan_job(tmp_path / "vfr.mp4", tmp_path / "o.mp4", tmp_path / "o.job", identity=loader.identity(),
                            segment_frames=3, seed=1)
    assert len(job.segments) == 3 and job.pts is not None
    segments.run_job(job, interp=interp, progress=False)
    assert read_frame_times(tmp_path / "o.mp4") == midpoints(VFR_TIMES, 2)


def test_segmented_constant_rate_same_frames_however_cut(loader, interp, tmp_path):
    """--fps with segments: the grid of the whole job, frames the same for any segment length, the
    frame times those of the one-process path."""
    from test_timing import VFR_TIMES, write_vfr

    from ldmvfi_fast.jobs import interpolate_video
    from ldmvfi_fast.video import read_frame_times

    times = VFR_TIMES[:4]  # 0, 0.1, 0.15, 0.3 s
    write_vfr(tmp_path / "vfr.mp4", times)
    pngs = {}
    for n in (2, 4):
        job = segments.plan_job(tmp_path / "vfr.mp4", tmp_path / f"o{n}.mp4", tmp_path / f"o{n}.job",
                                identity=loader.identity(), segment_frames=n, seed=1, fps="20")
        r = segments.run_job(job, interp=interp, progress=False)
        assert r.frames == job.total == 7  # 0.30 s at 20 fps, both ends
        pngs[n] = {k: p.read_bytes() for k, p in segments._output_frames(job)}
    assert len(pngs[2]) == 7 and pngs[2] == pngs[4]
    assert (tmp_path / "o2.mp4").read_bytes() == (tmp_path / "o4.mp4").read_bytes()
    interpolate_video(interp, tmp_path / "vfr.mp4", tmp_path / "one.mp4", fps="20", seed=0, progress=False)
    assert read_frame_times(tmp_path / "o2.mp4") == read_frame_times(tmp_path / "one.mp4") == \
        [Fraction(k, 20) for k in range(7)]
