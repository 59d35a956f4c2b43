"""ldmvfi_fast.video without a model: safe folder output, write probes, audio trimming, IO threads."""
from __future__ import annotations

import os
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from _shared import audio_video_durations, clip_with_audio, snapshot

from ldmvfi_fast import video as V
from ldmvfi_fast.video import (BackgroundWriter, MediaError, VideoWriter, atomic_output, check_frame_folder,
                               check_writable, frame_folder_output, prefetch)


def _unrelated(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.bin").write_bytes(b"\x00\x01")
    past = time.time() - 1000  # mtimes far from now: any rewrite would show
    for p in (folder / "notes.txt", folder / "sub" / "deep.bin"):
        os.utime(p, (past, past))


def _frames(tmp: Path, n: int, tag: bytes = b"new") -> None:
    for i in range(n):
        (tmp / V.FRAME_NAME.format(i)).write_bytes(tag + bytes([i]))


# ---------------------------------------------------------------------------------------------
# folder output never deletes


def test_overwrite_never_deletes_unrelated_files(tmp_path):
    target = tmp_path / "out"
    _unrelated(target)
    before = snapshot(tmp_path)
    # the old atomic_output(is_dir=True, overwrite=True) removed the whole folder
    with pytest.raises(MediaError, match="notes.txt"):
        with atomic_output(target, overwrite=True, is_dir=True) as tmp:
            _frames(tmp, 3)
    with pytest.raises(MediaError, match="other things than frame files"):
        with frame_folder_output(target, overwrite=True) as tmp:
            _frames(tmp, 3)
    assert snapshot(tmp_path) == before  # nothing touched, no temporary folder left


def test_frame_folder_replaces_frames_only_with_overwrite(tmp_path):
    target = tmp_path / "out"
    with frame_folder_output(target) as tmp:  # new folder: renamed into place
        _frames(tmp, 3, b"old")
    assert sorted(os.listdir(target)) == [V.FRAME_NAME.format(i) for i in range(3)]
    with pytest.raises(MediaError, match="--overwrite"):
        with frame_folder_output(target) as tmp:
            _frames(tmp, 3)
    with frame_folder_output(target, overwrite=True, count=3) as tmp:
        _frames(tmp, 3)
    assert [(target / V.FRAME_NAME.format(i)).read_bytes() for i in range(3)] == [b"new" + bytes([i]) for i in range(3)]
    # a shorter run would leave frame_000002.png of the earlier run behind: refused, never deleted
    with pytest.raises(MediaError, match="beyond the 2"):
        check_frame_folder(target, True, count=2)
    with pytest.raises(MediaError, match="beyond the 2"):
        with frame_folder_output(target, overwrite=True) as tmp:  # count unknown up front: checked at the end
            _frames(tmp, 2, b"x")
    assert (target / V.FRAME_NAME.format(0)).read_bytes() == b"new\x00"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def test_frame_folder_error_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with frame_folder_output(target) as tmp:
            _frames(tmp, 2)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_frame_folder_refuses_a_file_and_a_missing_parent(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(MediaError, match="not a folder"):
        check_frame_folder(tmp_path / "f", True)
    with pytest.raises(MediaError, match="does not exist"):
        check_frame_folder(tmp_path / "missing" / "out", True)
    with pytest.raises(MediaError, match="not a folder"):
        check_frame_folder(tmp_path / "f" / "out", True)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_new_folder_follows_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with frame_folder_output(tmp_path / "out") as tmp:
            V.write_image(tmp / V.FRAME_NAME.format(0), np.zeros((4, 4, 3), np.uint8))
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert (tmp_path / "out" / V.FRAME_NAME.format(0)).stat().st_mode & 0o777 == 0o666 & ~umask


def test_file_output_refuses_a_folder(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(MediaError, match="is a folder"):
        V.write_image(tmp_path / "d.png", np.zeros((4, 4, 3), np.uint8), overwrite=True)
    assert (tmp_path / "d.png").is_dir()


# ---------------------------------------------------------------------------------------------
# writability probe


def test_check_writable(tmp_path, monkeypatch):
    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probe is removed
    ro = tmp_path / "ro"
    ro.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir) == ro:
            raise PermissionError(13, "Permission denied", str(ro))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(MediaError, match="cannot write to .*ro: Permission denied"):
        check_writable(ro)
    monkeypatch.undo()
    with pytest.raises(MediaError, match="cannot write"):
        check_writable(tmp_path / "missing")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (the monkeypatched test covers it)")
def test_check_writable_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(MediaError, match="cannot write"):
            check_writable(ro)
    finally:
        ro.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# audio cut to the video


def test_video_writer_trims_audio(tmp_path):
    src = tmp_path / "src.mp4"
    clip_with_audio(src, 10)  # 0.4 s of video, 1 s of audio
    out = tmp_path / "out.mp4"
    imgs = list(V.read_video(src, max_frames=3))
    with VideoWriter(out, 64, 48, Fraction(50), crf=0, audio_from=src, trim_audio=True) as w:
        for img in imgs + imgs[:2]:  # 5 frames at 50 fps: 0.1 s
            w.write(img)
    audio, vid, frame = audio_video_durations(out)
    assert vid == pytest.approx(0.1)
    assert abs(audio - vid) <= frame + 1e-6, (audio, vid, frame)
    # without trim_audio the whole soundtrack is copied (the behaviour for a whole video)
    with VideoWriter(tmp_path / "full.mp4", 64, 48, Fraction(50), audio_from=src) as w:
        for img in imgs:
            w.write(img)
    audio, _, _ = audio_video_durations(tmp_path / "full.mp4")
    assert audio > 0.9


# ---------------------------------------------------------------------------------------------
# IO threads


def test_prefetch_order_and_bound():
    produced = []

    def source():
        for i in range(20):
            produced.append(i)
            yield i

    got = []
    for x in prefetch(source(), maxsize=2):
        time.sleep(0.01)
        assert len(produced) - len(got) <= 2 + 2  # queued + one being put + one just taken
        got.append(x)
    assert got == list(range(20))


def test_prefetch_raises_the_source_exception_after_its_items():
    err = MediaError("frame 3 is corrupt")

    def source():
        yield from range(3)
        raise err

    got = []
    with pytest.raises(MediaError) as ei:
        for x in prefetch(source()):
            got.append(x)
    assert ei.value is err and got == [0, 1, 2]


def test_prefetch_early_stop_closes_the_source_in_its_thread():
    closed = threading.Event()
    before = threading.active_count()

    def source():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.set()

    gen = prefetch(source(), maxsize=2)
    assert next(gen) == 0
    gen.close()
    assert closed.is_set()  # the decoder's file would be closed now
    assert threading.active_count() == before  # the thread was joined


def test_background_writer_order_error_and_abort():
    out = []
    with BackgroundWriter(out.append, maxsize=2) as w:
        for i in range(50):
            w.put(i)
    assert out == list(range(50)) and w.written == 50

    err = OSError(28, "No space left on device")

    def failing(item):
        if item == 3:
            raise err
        time.sleep(0.001)

    with pytest.raises(OSError) as ei:
        with BackgroundWriter(failing, maxsize=2) as w:
            for i in range(100):
                w.put(i)
    assert ei.value is err  # the original exception, raised in the caller

    slow = []

    def slow_write(item):
        time.sleep(0.02)
        slow.append(item)

    with pytest.raises(KeyError):
        with BackgroundWriter(slow_write, maxsize=4) as w:
            for i in range(5):
                w.put(i)
            raise KeyError("consumer failed")
    assert len(slow) < 5  # the queued items were dropped, the thread stopped
    with pytest.raises(RuntimeError, match="closed"):
        w.put(1)
