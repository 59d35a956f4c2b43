"""Model builders shared by the engine tests (ONNX, AOTInductor): the second config and random weights."""
from __future__ import annotations

import dataclasses

import torch

from ldmvfi_fast.config import tiny_config
from ldmvfi_fast.models.ldmvfi import LDMVFI


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
