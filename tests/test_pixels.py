"""Bit depth, gray and alpha kept end to end (:mod:`ldmvfi_fast.pixels`): images, pairs, folders,
segmented jobs and 10-bit / gray video, with the tiny checkpoint."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ldmvfi_fast import pixels, segments
from ldmvfi_fast.errors import MediaError

H, W = 48, 64


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    """Three real frames (8-bit RGB, cropped to 48x64) of a bundled clip."""
    from ldmvfi_fast.clips import bundled_clip
    from ldmvfi_fast.video import read_video

    return [f[40:40 + H, 50:50 + W].copy() for f in read_video(bundled_clip("carphone_pristine.mp4"), 3)]


def _deep(img8: np.ndarray, salt: int) -> np.ndarray:
    """16-bit from 8-bit with low bits of its own (not a multiple of 257: an 8-bit step would lose them)."""
    rng = np.random.default_rng(salt)
    return (img8.astype(np.uint16) * 257 + rng.integers(0, 200, img8.shape)).astype(np.uint16)


def _alpha(salt: int, dtype) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    top = np.iinfo(dtype).max
    return ((xx * 7 + yy * 3 + salt * 40) % (top + 1)).astype(dtype) if dtype == np.uint8 else \
        ((xx * 900 + yy * 311 + salt * 5000) % (top + 1)).astype(dtype)


def _layout(img8: np.ndarray, salt: int, channels: int, deep: bool) -> np.ndarray:
    colour = _deep(img8, salt) if deep else img8
    if channels in (1, 2):
        colour = colour.mean(axis=2, keepdims=True).round().astype(colour.dtype)
    if channels in (2, 4):
        colour = np.concatenate([colour, _alpha(salt, colour.dtype)[:, :, None]], axis=2)
    return np.ascontiguousarray(colour)


LAYOUTS = [(c, d) for c in (1, 2, 3, 4) for d in (False, True)]


# ------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("channels,deep", LAYOUTS)
def test_png_and_tiff_keep_every_layout_exactly(clip_frames, tmp_path, channels, deep):
    from ldmvfi_fast.video import read_image, read_picture, write_image

    img = _layout(clip_frames[0], 1, channels, deep)
    for ext in (".png", ".tif"):
        write_image(tmp_path / f"x{ext}", img)
        back = read_picture(tmp_path / f"x{ext}")
        assert back.dtype == img.dtype and back.shape == img.shape and np.array_equal(back, img), ext
        assert read_image(tmp_path / f"x{ext}").shape == (H, W, 3)  # the 8-bit RGB reader still reads it


@pytest.mark.parametrize("ext,channels,deep", [(".jpg", 2, False), (".jpg", 4, False), (".jpg", 1, True),
                                                (".jpg", 3, True), (".bmp", 2, False), (".bmp", 3, True)])
def test_formats_that_would_lose_something_are_refused(clip_frames, tmp_path, ext, channels, deep):
    from ldmvfi_fast.video import write_image

    img = _layout(clip_frames[0], 1, channels, deep)
    with pytest.raises(MediaError, match="cannot hold a .* image without losing"):
        write_image(tmp_path / f"x{ext}", img)
    assert not (tmp_path / f"x{ext}").exists()


def test_model_side_8bit_rgb_is_the_old_conversion_and_16bit_is_exact(clip_frames):
    import torch

    from ldmvfi_fast.video import to_image, to_tensor

    img = clip_frames[0]
    t, a = pixels.picture_to_model(img)
    assert a is None and torch.equal(t, to_tensor(img))
    assert np.array_equal(pixels.model_to_picture(t, 3, False), to_image(t))
    deep = _deep(img, 3)
    t16, _ = pixels.picture_to_model(deep)
    assert np.array_equal(pixels.model_to_picture(t16, 3, True), deep)  # no 8-bit step: all 16 bits back
    gray = _layout(img, 3, 1, True)
    tg, _ = pixels.picture_to_model(gray)
    assert torch.equal(tg[:, 0], tg[:, 2]) and np.array_equal(pixels.model_to_picture(tg, 1, True), gray)


def test_alpha_rule_blend_and_scene_cut():
    a0, a1, a2 = (np.full((2, 2), v, np.uint8) for v in (0, 200, 100))
    track = pixels.AlphaTrack(4)
    for i, a in enumerate((a0, a1, a2)):
        track.add(i, a)
    track.cut(1)  # a scene cut between inputs 1 and 2: the frames there copy input 1
    got = [int(track.output(j)[0, 0]) for j in range(9)]
    assert got == [0, 50, 100, 150, 200, 200, 200, 200, 100]


def test_convert_widens_and_refuses_narrowing(clip_frames):
    gray8 = _layout(clip_frames[0], 1, 1, False)
    rgba16 = pixels.convert(gray8, 4, True)
    assert rgba16.dtype == np.uint16 and rgba16.shape == (H, W, 4)
    assert np.array_equal(rgba16[:, :, 0], gray8[:, :, 0].astype(np.uint16) * 257)
    assert (rgba16[:, :, 3] == 65535).all()
    with pytest.raises(MediaError, match="frames of one job must share one pixel layout"):
        pixels.convert(rgba16, 3, True, name="f.png")


# ------------------------------------------------------------------------------------ jobs
@pytest.mark.parametrize("channels,deep", [(1, True), (2, True), (4, False)])
def test_pair_keeps_layout_and_blends_alpha(clip_frames, interp, tmp_path, channels, deep):
    from ldmvfi_fast.jobs import interpolate_pair
    from ldmvfi_fast.video import read_picture, write_image

    a, b = (_layout(clip_frames[k], k, channels, deep) for k in (0, 2))
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", b)
    interpolate_pair(interp, tmp_path / "a.png", tmp_path / "b.png", tmp_path / "mid.png", seed=0, progress=False)
    mid = read_picture(tmp_path / "mid.png")
    assert mid.shape == a.shape and mid.dtype == a.dtype
    if channels in (2, 4):
        assert np.array_equal(mid[:, :, -1], pixels.blend_alpha(a[:, :, -1], b[:, :, -1], 0.5))
    if deep:
        assert (mid[:, :, 0] % 257 != 0).mean() > 0.5  # 16-bit values, not 8-bit ones scaled


def test_cli_refuses_alpha_into_jpeg_before_loading(clip_frames, tmp_path, capsys):
    from ldmvfi_fast.cli import main
    from ldmvfi_fast.video import write_image

    for k in (0, 1):
        write_image(tmp_path / f"{k}.png", _layout(clip_frames[k], k, 4, False))
    code = main(["interpolate", str(tmp_path / "0.png"), str(tmp_path / "1.png"), "-o", str(tmp_path / "m.jpg"),
                 "--ckpt", str(tmp_path / "no-such.ckpt")])  # refused before the checkpoint is opened
    assert code != 0 and "cannot hold a RGBA 8-bit image" in capsys.readouterr().err
    assert not (tmp_path / "m.jpg").exists()


def _rgba16_folder(clip_frames, folder: Path) -> list[np.ndarray]:
    from ldmvfi_fast.video import FRAME_NAME, write_image

    folder.mkdir()
    imgs = [_layout(f, k, 4, True) for k, f in enumerate(clip_frames)]
    for k, img in enumerate(imgs):
        write_image(folder / FRAME_NAME.format(k), img)
    return imgs


def test_folder_keeps_16bit_inputs_exactly_and_alpha(clip_frames, interp, tmp_path):
    from ldmvfi_fast.jobs import interpolate_folder, plan_folder
    from ldmvfi_fast.video import FRAME_NAME, read_picture

    imgs = _rgba16_folder(clip_frames, tmp_path / "in")
    r = interpolate_folder(interp, plan_folder(tmp_path / "in", tmp_path / "out"), seed=0, progress=False)
    out = [read_picture(tmp_path / "out" / FRAME_NAME.format(j)) for j in range(r.frames)]
    assert r.frames == 5 and all(o.shape == (H, W, 4) and o.dtype == np.uint16 for o in out)
    for k in range(3):  # the input frames come out bit for bit (16-bit colour and alpha)
        assert np.array_equal(out[2 * k], imgs[k])
    for j in (1, 3):
        assert np.array_equal(out[j][:, :, 3], pixels.blend_alpha(imgs[j // 2][:, :, 3], imgs[j // 2 + 1][:, :, 3],
                                                                   0.5))


def test_folder_with_a_wider_frame_is_refused(clip_frames, interp, tmp_path):
    from ldmvfi_fast.jobs import interpolate_folder, plan_folder
    from ldmvfi_fast.video import FRAME_NAME, write_image

    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / FRAME_NAME.format(0), clip_frames[0])
    write_image(tmp_path / "in" / FRAME_NAME.format(1), _layout(clip_frames[1], 1, 1, False))  # gray: fine
    write_image(tmp_path / "in" / FRAME_NAME.format(2), _layout(clip_frames[2], 2, 4, False))  # alpha: not
    with pytest.raises(MediaError, match="frame_000002.png is RGBA 8-bit, the sequence is RGB 8-bit"):
        interpolate_folder(interp, plan_folder(tmp_path / "in", tmp_path / "out"), seed=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_segmented_folder_keeps_layout_however_cut(clip_frames, loader, interp, tmp_path):
    from ldmvfi_fast.video import FRAME_NAME, read_picture

    imgs = _rgba16_folder(clip_frames, tmp_path / "in")
    outs = {}
    for n in (2, 3):
        job = segments.plan_job(tmp_path / "in", tmp_path / f"out{n}", tmp_path / f"out{n}.job",
                                identity=loader.identity(), segment_frames=n, seed=5)
        segments.run_job(job, interp=interp)
        outs[n] = {p.name: p.read_bytes() for p in sorted((tmp_path / f"out{n}").iterdir())}
    assert outs[2] == outs[3] and len(outs[2]) == 5
    mid = read_picture(tmp_path / "out2" / FRAME_NAME.format(1))
    assert mid.dtype == np.uint16 and mid.shape == (H, W, 4)
    assert np.array_equal(mid[:, :, 3], pixels.blend_alpha(imgs[0][:, :, 3], imgs[1][:, :, 3], 0.5))
    assert np.array_equal(read_picture(tmp_path / "out2" / FRAME_NAME.format(2)), imgs[1])


# ------------------------------------------------------------------------------------ video
def _video(path: Path, frames: list[np.ndarray], pix_fmt: str, array_format: str, codec: str = "libx264") -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=24)
        s.width, s.height, s.pix_fmt = W, H, pix_fmt
        if codec == "libx264":
            s.options = {"qp": "0"}  # lossless
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format=array_format)):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def _planes(path: Path) -> tuple[str, list[np.ndarray]]:
    import av

    with av.open(str(path)) as c:
        fmt = c.streams.video[0].codec_context.pix_fmt
        return fmt, [f.to_ndarray()[:H] for f in c.decode(video=0)]  # luma rows


def test_10bit_video_comes_out_10bit_without_an_8bit_step(clip_frames, interp, tmp_path):
    from ldmvfi_fast.jobs import interpolate_video

    _video(tmp_path / "in.mkv", [_deep(f, k) for k, f in enumerate(clip_frames)], "yuv420p10le", "rgb48le")
    r = interpolate_video(interp, tmp_path / "in.mkv", tmp_path / "out.mkv", seed=0, crf=0, progress=False)
    fmt_in, y_in = _planes(tmp_path / "in.mkv")
    fmt_out, y_out = _planes(tmp_path / "out.mkv")
    assert fmt_in == fmt_out == "yuv420p10le" and r.frames == 5 and len(y_out) == 5
    for k in range(3):  # the input frames' luma survives decode (16-bit) -> encode (10-bit) exactly;
        assert np.array_equal(y_out[2 * k], y_in[k]), k  # through 8 bits it moves by up to 3 codes


def test_gray_video_stays_gray(clip_frames, interp, tmp_path):
    """A gray source (FFV1 gray, lossless) is encoded luma only (H.264 4:0:0, which FFmpeg decodes as
    yuv420p with neutral chroma): its luma exact, and no colour appears in the new frames either."""
    import av

    from ldmvfi_fast.jobs import interpolate_video
    from ldmvfi_fast.video import probe

    grays = [_layout(f, k, 1, False)[:, :, 0] for k, f in enumerate(clip_frames)]
    _video(tmp_path / "in.mkv", grays, "gray", "gray", codec="ffv1")
    assert probe(tmp_path / "in.mkv").layout == (1, False)
    interpolate_video(interp, tmp_path / "in.mkv", tmp_path / "out.mkv", seed=0, crf=0, progress=False)
    with av.open(str(tmp_path / "out.mkv")) as c:
        planes = [[np.frombuffer(p, np.uint8).reshape(-1, p.line_size) for p in f.planes] for f in c.decode(video=0)]
    assert len(planes) == 5
    assert np.array_equal(planes[0][0][:H, :W], grays[0]) and np.array_equal(planes[4][0][:H, :W], grays[2])
    for y, u, v in planes:  # neutral chroma in every frame, the interpolated ones included
        assert (u[:H // 2, :W // 2] == 128).all() and (v[:H // 2, :W // 2] == 128).all()


def test_video_writer_refuses_alpha(tmp_path):
    from ldmvfi_fast.video import VideoWriter

    with pytest.raises(MediaError, match="no alpha"):
        with VideoWriter(tmp_path / "v.mp4", W, H, Fraction(24)) as w:
            w.write(np.zeros((H, W, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []
