"""``ldmvfi-fast export`` and ``ldmvfi-fast interpolate --runtime exported``."""
from __future__ import annotations

import numpy as np
import torch

from ldmvfi_fast.cli import main
from ldmvfi_fast.checkpoint import load_model
from ldmvfi_fast.pipeline import Interpolator
from ldmvfi_fast.video import read_image, to_image, to_tensor, write_image


def test_interpolate_with_the_exported_runtime(tmp_path, ckpt, tiny_engines, capsys):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (300, 520, 3), dtype=np.uint8)  # minimal padding: 512x768
    b = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", b)
    common = ["--steps", "2", "--seed", "5", "--padding", "minimal", "--device", "cpu"]
    out = tmp_path / "mid.png"
    assert main(["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out),
                 "--runtime", "exported", "--engines", str(tiny_engines), "--ckpt", ckpt] + common) == 0
    assert "wrote" in capsys.readouterr().err
    want = Interpolator(load_model(ckpt), steps=2, padding="minimal").interpolate(to_tensor(a), to_tensor(b), seed=5)
    got = read_image(out)
    diff = np.abs(got.astype(int) - to_image(want).astype(int))
    assert diff.max() <= 1  # the same frame, up to rounding of values within 1e-5 of a level boundary
    assert np.abs(got.astype(int) - a.astype(int)).mean() > 5  # not a copy of an input


def test_runtime_and_export_errors(tmp_path, ckpt, tiny_engines, capsys):
    write_image(tmp_path / "a.png", np.zeros((16, 16, 3), np.uint8))
    pair = ["interpolate", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "-o", str(tmp_path / "m.png")]
    assert main(pair + ["--runtime", "exported"]) == 2
    assert "--engines" in capsys.readouterr().err
    assert main(pair + ["--runtime", "exported", "--engines", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(pair + ["--ckpt", ckpt, "--engines", str(tiny_engines)]) == 2
    assert "--runtime exported" in capsys.readouterr().err
    # 16x4200 pads to 256x4352: wider than the exported graphs' 4096 maximum, refused with the sizes they take
    write_image(tmp_path / "wide.png", np.zeros((16, 4200, 3), np.uint8))
    wide = ["interpolate", str(tmp_path / "wide.png"), str(tmp_path / "wide.png"), "-o", str(tmp_path / "m.png")]
    assert main(wide + ["--runtime", "exported", "--engines", str(tiny_engines), "--padding", "minimal",
                        "--steps", "2"]) == 2
    assert "outside what the exported engines accept" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main(["export", "--ckpt", ckpt, "--out", str(busy)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert main(["export", "--ckpt", ckpt, "--out", str(tmp_path / "e"), "--max-side", "300"]) == 2
    assert "--max-side" in capsys.readouterr().err
