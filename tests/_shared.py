"""Helpers shared by the engine tests (ONNX, AOTInductor, the C++ app): the second config, random
weights, the user scripts under ``export/`` loaded as modules."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import torch

from ldmvfi_fast.config import tiny_config
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


def random_model(cfg, seed=0) -> LDMVFI:
    """LDMVFI(cfg) with random weights everywhere (zero-initialised layers too, or the U-Net's
    output would be 0 and any graph would 'match')."""
    torch.manual_seed(seed)
    model = LDMVFI(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.02)
    return model
