"""Plain helpers shared by the test modules (their fixtures are in ``conftest.py``): the second
config, models with random weights (one builder), folder snapshots, a video with audio, the user
scripts under ``export/`` loaded as modules."""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from ldmvfi_fast.config import resolve_config, tiny_config
from ldmvfi_fast.models.ldmvfi import LDMVFI

REPO = Path(__file__).resolve().parents[1]


def export_script(name: str):
    """``export/<name>.py`` loaded as a module (its ``main(argv)`` is what a user runs)."""
    spec = importlib.util.spec_from_file_location(f"export_script_{name}", REPO / "export" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def wide_config():
    """The tiny config with other widths: U-Net 64 channels, autoencoder levels 32-64-64-128-128."""
    cfg = tiny_config()
    return dataclasses.replace(cfg, name="wide", unet=dataclasses.replace(cfg.unet, model_channels=64),
                               autoencoder=dataclasses.replace(cfg.autoencoder, ch_mult=(1, 2, 2, 4, 4)))


def random_model(cfg="tiny", seed: int = 0, *, init: str = "zero_layers", requires_grad: bool = True) -> LDMVFI:
    """``LDMVFI(cfg).eval()`` (``cfg``: a config or a preset name) on the CPU in float32, built after
    ``torch.manual_seed(seed)``, with the weights ``init`` says:

    * ``"zero_layers"``: the default initialisation, and the zero-initialised layers ~ N(0, 0.02^2)
      too (or the U-Net's output would be 0 and any graph would 'match');
    * ``"all"``: every parameter random (seeded): matrices ~ N(0, 1/fan_in), vectors (norm weights,
      biases) = their init + N(0, 0.1^2), so no zero-initialised output layer hides a sub-model;
    * ``"default"``: the default initialisation only.

    Buffers (schedule, BatchNorm statistics) keep their values. ``requires_grad=False`` freezes the
    parameters (``requires_grad_(False)``)."""
    if init not in ("zero_layers", "all", "default"):
        raise ValueError(f"init must be zero_layers, all or default, not {init!r}")
    torch.manual_seed(seed)
    model = LDMVFI(resolve_config(cfg)).eval()
    if not requires_grad:
        model.requires_grad_(False)
    with torch.no_grad():
        if init == "zero_layers":
            for p in model.parameters():
                if not p.abs().sum():
                    p.normal_(0, 0.02)
        elif init == "all":
            g = torch.Generator().manual_seed(seed)
            for p in model.parameters():
                if p.dim() > 1:
                    p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
                else:
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def snapshot(root: Path, *, stat: bool = True) -> dict:
    """Every file and folder under ``root``: relative path -> (is_dir, mode, size, mtime_ns, bytes)
    (``None`` for a folder); with ``stat=False`` only the files' contents: relative path -> bytes.
    Equal snapshots before and after a command: it touched nothing and left nothing behind."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if not stat:
                if p.is_file():
                    out[str(p.relative_to(root))] = p.read_bytes()
                continue
            st = p.lstat()
            out[str(p.relative_to(root))] = (p.is_dir(), st.st_mode, st.st_size, st.st_mtime_ns,
                                             p.read_bytes() if p.is_file() else None)
    return out


def clip_with_audio(path: Path, frames: int = 0, fps: int = 25, seconds: float = 1.0, images=None) -> None:
    """An H.264 + AAC file: ``images`` (H, W, 3 uint8), else ``frames`` 64x48 grey frames, at ``fps``,
    and ``seconds`` of a 440 Hz tone."""
    import av

    if images is None:
        images = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(frames)]
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.height, vs.width = images[0].shape[:2]
        vs.pix_fmt = "yuv420p"
        aus = c.add_stream("aac", rate=44100)
        for img in images:
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        n = int(44100 * seconds)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 44100)).astype(np.float32)[None]
        for k in range(0, n, 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k:k + 1024]), format="flt", layout="mono")
            fr.sample_rate, fr.pts = 44100, k
            for p in aus.encode(fr):
                c.mux(p)
        for p in aus.encode():
            c.mux(p)


def audio_video_durations(path: Path) -> tuple[float, float, float]:
    """(audio duration, video duration, one audio frame) in seconds, from the packets. The
    audio's duration is where its last packet ends on the timeline that starts at 0 (an AAC
    encoder's priming packet has a negative pts and is not played)."""
    import av

    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        vdur = float(v.frames / v.average_rate)
        pk = [p for p in c.demux(a) if p.size]
        end = max(p.pts + p.duration for p in pk) * a.time_base
        frame = max(p.duration for p in pk) * a.time_base
    return float(end), vdur, float(frame)
