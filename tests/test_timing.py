"""Exact timing of video output (issue: variable frame rate, ``--fps``): frame times come from
the stream's timestamps, new frames sit at the dyadic points between them, a constant output
rate samples the nearest dyadic point (error bound tested on random cases), audio stays in sync.

Fast: the tiny random checkpoint, 2 steps, minimal padding, a handful of 64x48 frames."""
from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from ldmvfi_fast.video import (MAX_DEPTH, bisection_parents, dyadic_depth, dyadic_point, fine_time_base,
                               read_frame_times)

#: the issue's example: 6 frames spanning 0.60 s, unevenly spaced
VFR_TIMES = [Fraction(0), Fraction(1, 10), Fraction(15, 100), Fraction(3, 10), Fraction(45, 100), Fraction(6, 10)]


def write_vfr(path, times, *, audio_seconds: float | None = None, size=(48, 64), time_base=Fraction(1, 90000)):
    """An H.264 file (optionally + AAC tone) whose frame i has the explicit time ``times[i]``."""
    import av

    h, w = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = time_base
        vs.time_base = time_base
        aus = c.add_stream("aac", rate=44100) if audio_seconds else None
        for i, t in enumerate(times):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = 30 * i
            img[:, : (i * 7) % w, 1] = 200
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts, fr.time_base = int(t / time_base), time_base
            for p in vs.encode(fr):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if aus is not None:
            n = int(44100 * audio_seconds)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 44100)).astype(np.float32)[None]
            for k in range(0, n, 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k:k + 1024]), format="flt",
                                                layout="mono")
                fr.sample_rate, fr.pts = 44100, k
                for p in aus.encode(fr):
                    c.mux(p)
            for p in aus.encode():
                c.mux(p)


def midpoints(times, multi):
    out = []
    for a, b in zip(times, times[1:]):
        out += [a + (b - a) * k / multi for k in range(multi)]
    return out + [times[-1]]


def audio_end(path) -> float:
    import av

    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        pk = [p for p in c.demux(a) if p.size]
        return float(max(p.pts + p.duration for p in pk) * a.time_base)


@pytest.fixture(scope="module")
def interp(tiny_model):
    from ldmvfi_fast.pipeline import Interpolator

    return Interpolator(tiny_model, steps=2, padding="minimal")


# ---------------------------------------------------------------------------------------------
# pure timing functions


def test_dyadic_point_error_bound_random():
    rng = random.Random(0)
    for _ in range(3000):
        interval = Fraction(rng.randint(1, 10_000), rng.randint(1, 100_000))
        fps = Fraction(rng.randint(1, 240_000), rng.choice([1, 1001, 7, 100]))
        depth = dyadic_depth(interval, fps)
        offset = interval * Fraction(rng.randint(0, 10 ** 6), 10 ** 6)
        p = dyadic_point(offset, interval, depth)
        assert 0 <= p <= 1 and (p.denominator & (p.denominator - 1)) == 0 and p.denominator <= 2 ** depth
        err = abs(p * interval - offset)
        assert err <= interval / 2 ** (depth + 1)
        if depth < MAX_DEPTH:  # not capped: within half an output frame, and the grid as fine as the output's
            assert err <= 1 / (2 * fps)
            assert interval / 2 ** depth <= 1 / fps and (depth == 0 or interval / 2 ** (depth - 1) > 1 / fps)


def test_dyadic_exact_for_power_of_two_ratio():
    for ratio in (1, 2, 4, 8, 16):
        interval, fps = Fraction(1, 25), 25 * ratio
        depth = dyadic_depth(interval, fps)
        assert 2 ** depth == ratio
        for k in range(ratio + 1):
            assert dyadic_point(Fraction(k, fps), interval, depth) * interval == Fraction(k, fps)


def test_bisection_parents_and_time_base():
    assert bisection_parents(Fraction(1, 2)) == (0, 1)
    assert bisection_parents(Fraction(3, 8)) == (Fraction(1, 4), Fraction(1, 2))
    for bad in (Fraction(0), Fraction(1), Fraction(1, 3)):
        with pytest.raises(ValueError):
            bisection_parents(bad)
    assert fine_time_base(Fraction(1, 12800) / 2) == Fraction(1, 25600)
    assert fine_time_base(Fraction(1001, 60000)) == Fraction(1, 60000)
    assert fine_time_base(Fraction(1, 2 ** 40)) == Fraction(1, 90000)


def test_parse_fps():
    from ldmvfi_fast.errors import OptionError
    from ldmvfi_fast.jobs import parse_fps

    assert parse_fps("60000/1001") == Fraction(60000, 1001)
    assert parse_fps("59.94") == Fraction(5994, 100)
    assert parse_fps(60) == 60
    for bad in ("0", "-5", "abc", "1/0", "2000"):
        with pytest.raises(OptionError):
            parse_fps(bad)


# ---------------------------------------------------------------------------------------------
# videos


def test_vfr_keeps_timing_x2(tmp_path, interp):
    from ldmvfi_fast.jobs import interpolate_video

    times = VFR_TIMES[:4]  # 0, 0.1, 0.15, 0.3: uneven
    src, out = tmp_path / "vfr.mp4", tmp_path / "out.mp4"
    write_vfr(src, times)
    assert read_frame_times(src) == times
    r = interpolate_video(interp, src, out, multi=2, seed=0, overlap=False, progress=False)
    got = read_frame_times(out)
    assert got == midpoints(times, 2)  # the input times plus the midpoints, exactly
    assert r.frames == 7 and got[-1] - got[0] == times[-1] and r.span == times[-1]


def test_vfr_x4_dyadic_points_with_io_threads(tmp_path, interp):
    from ldmvfi_fast.jobs import interpolate_video

    times = [Fraction(0), Fraction(3, 20)]
    src, out = tmp_path / "vfr.mp4", tmp_path / "out.mp4"
    write_vfr(src, times)
    interpolate_video(interp, src, out, multi=4, seed=0, overlap=True, progress=False)
    assert read_frame_times(out) == midpoints(times, 4)


def test_cfr_x2_unchanged(tmp_path, interp):
    import av

    from ldmvfi_fast.jobs import interpolate_video
    from tests._shared import clip_with_audio

    src, out = tmp_path / "cfr.mp4", tmp_path / "out.mp4"
    clip_with_audio(src, frames=3, fps=25, seconds=0.12)
    r = interpolate_video(interp, src, out, multi=2, seed=0, overlap=False, progress=False)
    assert r.frames == 5 and r.fps == 50
    got = read_frame_times(out)
    assert got == [got[0] + Fraction(k, 50) for k in range(5)]
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == 50


@pytest.mark.parametrize("fps, expect", [("20", 4), ("15000/1001", 3)])
def test_fps_constant_rate(tmp_path, interp, fps, expect):
    import av

    from ldmvfi_fast.jobs import interpolate_video, parse_fps

    times = [Fraction(0), Fraction(1, 10), Fraction(3, 20)]
    src, out = tmp_path / "vfr.mp4", tmp_path / "out.mp4"
    write_vfr(src, times)
    r = interpolate_video(interp, src, out, fps=fps, seed=0, overlap=False, progress=False)
    f = parse_fps(fps)
    got = read_frame_times(out)
    assert r.frames == expect == int(times[-1] * f) + 1 and r.fps == f
    assert got == [Fraction(k) / f for k in range(expect)]  # exactly the requested rate
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == f


class LinearInterp:
    """A stand-in Interpolator for resample_sequence: encode = the frame, the middle = the mean,
    so the frame at dyadic point p is exactly (1 - p) f0 + p f1; counts the calls."""

    def __init__(self):
        import torch

        self.device, self.io_dtype = torch.device("cpu"), torch.float64
        self.mids, self.encodes = [], []

    def new_generator(self, seed):
        return None

    def encode(self, f, first_index=0):
        self.encodes.append(f)
        return f

    def interpolate_encoded(self, e0, e1, generator=None):
        self.mids.append(1)
        return (e0 + e1) / 2


def ancestors(p: Fraction) -> set:
    out = set()
    while 0 < p < 1:
        out.add(p)
        a, b = bisection_parents(p)
        p = a if a.denominator > b.denominator else b  # the deeper parent; the other is an ancestor too
    return out


@pytest.mark.parametrize("fps", [Fraction(40), Fraction(60000, 1001), Fraction(7), Fraction(100)])
def test_resample_points_bound_and_reuse(fps):
    import torch

    from ldmvfi_fast.jobs import resample_sequence

    g = torch.Generator().manual_seed(0)
    frames = [(torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1, t) for t in VFR_TIMES]
    fake = LinearInterp()
    out = list(resample_sequence(fake, frames, fps))
    n = int(VFR_TIMES[-1] * fps) + 1
    assert [t for t, _, _ in out] == [Fraction(k) / fps for k in range(n)]
    needed = set()
    for t, t_used, frame in out:
        i = max(j for j, (_, ti) in enumerate(frames) if ti <= t)
        if t == frames[i][1]:  # at an input time: the input frame itself
            assert t_used == t and frame is frames[i][0]
            continue
        (f0, t0), (f1, t1) = frames[i], frames[i + 1]
        depth = dyadic_depth(t1 - t0, fps)
        assert abs(t_used - t) <= (t1 - t0) / 2 ** (depth + 1) <= 1 / (2 * fps)
        p = (t_used - t0) / (t1 - t0)
        assert torch.allclose(frame, (1 - float(p)) * f0 + float(p) * f1, atol=1e-12)  # the bisection tree is right
        needed |= {(i, q) for q in ancestors(p)}
    # only the needed midpoints (the used points and the points they descend from), each once;
    # each frame encoded at most once (inputs once; midpoints once when they serve as an end)
    assert len(fake.mids) == len(needed)
    assert len(fake.encodes) <= len(frames) + len(fake.mids)
    assert len({id(e) for e in fake.encodes}) == len(fake.encodes)


def test_vfr_audio_in_sync(tmp_path, interp):
    from ldmvfi_fast.jobs import interpolate_video

    times = [Fraction(0), Fraction(1, 10), Fraction(3, 10)]
    src = tmp_path / "vfr_audio.mp4"
    write_vfr(src, times, audio_seconds=0.4)
    for name, kw, frame in (("x2.mp4", {"multi": 2}, Fraction(1, 10)), ("fps.mp4", {"fps": 10}, Fraction(1, 10))):
        out = tmp_path / name
        r = interpolate_video(interp, src, out, seed=0, overlap=False, progress=False, **kw)
        assert r.has_audio and r.audio_packets > 0
        got = read_frame_times(out)
        assert got[-1] == times[-1]  # the video spans what the input spans (0.3 s), not a third of it
        assert abs(audio_end(out) - audio_end(src)) < 1e-6  # the audio copied whole
        video_end = float(got[-1] + frame)  # the last frame shown for one output frame
        # the audio (0.4 s) ends within one output frame (+ one AAC frame) of the video; before the
        # fix the video was too short (x2: 5 frames at the average rate x2, 0.27 s in all)
        assert abs(audio_end(out) - video_end) <= float(frame) + 1024 / 44100, (name, video_end)
