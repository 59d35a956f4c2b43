"""Video jobs that survive (issue: video jobs): SIGTERM leaves nothing half-written, mixed
inputs and unknown configs are refused in one line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ldmvfi_fast.cli import main
from ldmvfi_fast.video import write_image

REPO = Path(__file__).resolve().parents[1]


def _png(path: Path) -> Path:
    write_image(path, np.zeros((64, 64, 3), np.uint8))
    return path


@pytest.mark.parametrize("second", ["video", "folder", "text"])
def test_two_inputs_of_mixed_kinds_are_refused(tmp_path, tiny_ckpt, capsys, second):
    """``interpolate f0.png clip.mp4 -o x.png`` exited 0 having read the video's first frame as an image."""
    from ldmvfi_fast.clips import bundled_clip

    other = {"video": bundled_clip("bikes.mp4"), "folder": tmp_path,
             "text": tmp_path / "notes.txt"}[second]
    if second == "text":
        other.write_text("x")
    out = tmp_path / "x.png"
    rc = main(["interpolate", str(_png(tmp_path / "f0.png")), str(other), "-o", str(out), "--ckpt", str(tiny_ckpt)])
    err = capsys.readouterr().err
    assert rc == 2 and "two inputs must be two images" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_unknown_config_names_the_presets_and_bad_yaml_is_one_line(tmp_path, tiny_ckpt, capsys):
    f0 = _png(tmp_path / "f0.png")
    argv = ["interpolate", str(f0), str(f0), "-o", str(tmp_path / "x.png"), "--ckpt", str(tiny_ckpt)]
    assert main(argv + ["--config", "huge"]) == 2
    err = capsys.readouterr().err
    assert "neither a preset (official, tiny)" in err and err.count("\n") == 1, err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  params: [unclosed\n")
    assert main(argv + ["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML at line" in err and err.count("\n") == 1, err


def test_sigterm_leaves_no_partial_file(tmp_path, tiny_ckpt):
    """SIGTERM during a video job: exit 143, the output absent and no hidden ``.NAME.*.partial*``
    file left (it was left behind, exit -15/143, before SIGTERM unwound like Ctrl-C)."""
    from ldmvfi_fast.clips import bundled_clip

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "x2.mp4"
    cmd = [sys.executable, "-m", "ldmvfi_fast", "interpolate", str(bundled_clip("carphone_pristine.mp4")), "-o",
           str(out), "--ckpt", str(tiny_ckpt), "--steps", "2", "--max-frames", "40", "--padding", "minimal",
           "--device", "cpu"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(out_dir.iterdir()) and p.poll() is None:
        time.sleep(0.2)  # the writer's temporary file exists: the job is under way
    assert p.poll() is None, f"the job ended before it could be stopped: {p.communicate()}"
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, (p.returncode, err[-2000:])
    assert "terminated: no output written" in err
    assert list(out_dir.iterdir()) == [], sorted(os.listdir(out_dir))


@pytest.mark.parametrize("extra, words", [
    (["--fps", "60", "--multi", "4"], "--fps and --multi contradict"),
    (["--fps", "0"], "fps"),
    (["--fps", "60/0", "--segment-frames", "4"], "--fps must be a number or a ratio"),
])
def test_fps_option_errors(tmp_path, tiny_ckpt, capsys, extra, words):
    from ldmvfi_fast.clips import bundled_clip

    out = tmp_path / "o.mp4"
    rc = main(["interpolate", str(bundled_clip("carphone_pristine.mp4")), "-o", str(out), "--ckpt", str(tiny_ckpt),
               *extra])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and err.count("\n") == 1, err
    assert not out.exists()


def test_job_options_with_two_images_are_refused(tmp_path, tiny_ckpt, capsys):
    f0 = _png(tmp_path / "f0.png")
    rc = main(["interpolate", str(f0), str(f0), "-o", str(tmp_path / "x.png"), "--ckpt", str(tiny_ckpt),
               "--job-dir", str(tmp_path / "job")])
    assert rc == 2 and "apply to a video or a folder" in capsys.readouterr().err


def test_cli_fps_gives_a_constant_rate(tmp_path, tiny_ckpt, capsys):
    """``--fps 50`` on the 29.97 fps clip's first 3 frames (0 .. 2002/30000 s): every output frame at
    k/50 s up to the last input time (PyAV reads the times back)."""
    from fractions import Fraction

    import av

    from ldmvfi_fast.clips import bundled_clip

    out = tmp_path / "o.mp4"
    assert main(["interpolate", str(bundled_clip("carphone_pristine.mp4")), "-o", str(out), "--ckpt",
                 str(tiny_ckpt), "--fps", "50", "--max-frames", "3", "--steps", "2", "--padding", "minimal",
                 "--device", "cpu"]) == 0
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        times = sorted(Fraction(f.pts) * s.time_base for f in c.decode(s))
    last = Fraction(2 * 1001, 30000)
    assert times == [Fraction(k, 50) for k in range(10) if Fraction(k, 50) <= last], times
