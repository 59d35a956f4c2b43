"""Denoising U-Net (openaimodel ``UNetModel`` with MaxViT self-attention), eps prediction.

Input ``cat(x_t, z0, z1)`` (B, 9, h, w) and integer timesteps (B,); output eps (B, 3, h, w).
Each level: ``num_res_blocks`` ResBlocks (time-conditioned), each followed by a MaxViT
block (window ``min(image_size // 4, 8)``, 32-channel heads) where the level's
down-sampling rate is in ``attention_resolutions``; a stride-2 conv between levels;
a middle ResBlock-MaxViT-ResBlock; a mirrored decoder with skip concatenations.
Module names equal the checkpoint's (``input_blocks.1.0.in_layers.0`` ...).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import precision
from ..config import UNetConfig
from .layers import Upsample, unet_norm
from .maxvit import MaxAttentionBlock


def timestep_embedding(t: Tensor, dim: int, max_period: int = 10000,
                       dtype: torch.dtype = torch.float32) -> Tensor:
    """Sinusoidal embedding (B,) -> (B, dim) in ``dtype``: cos half first, then sin. Computed in
    float32 under float16/bfloat16 (precision island ``timestep_embedding``), then cast."""
    cdt = precision.compute_dtype("timestep_embedding", dtype)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half).to(cdt)
    args = t[:, None].to(cdt) * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb.to(dtype)


class ResBlock(nn.Module):
    """GN-SiLU-conv, + Linear(SiLU(emb)), GN-SiLU-conv; identity or 1x1 skip."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.ModuleDict({"0": unet_norm(channels), "1": nn.SiLU(),
                                        "2": nn.Conv2d(channels, out_channels, 3, padding=1)})
        self.emb_layers = nn.ModuleDict({"0": nn.SiLU(), "1": nn.Linear(emb_channels, out_channels)})
        self.out_layers = nn.ModuleDict({"0": unet_norm(out_channels), "1": nn.SiLU(),
                                         "3": nn.Conv2d(out_channels, out_channels, 3, padding=1)})
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        il, ol = self.in_layers, self.out_layers
        h = il["2"](il["1"](il["0"](x)))
        h = h + self.emb_layers["1"](self.emb_layers["0"](emb)).to(h.dtype)[:, :, None, None]
        h = ol["3"](ol["1"](ol["0"](h)))
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class TimestepSequential(nn.Sequential):
    """Passes the embedding to ResBlocks only."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        mc, ted = cfg.model_channels, cfg.time_embed_dim
        if cfg.window < 1:
            raise ValueError(f"image_size {cfg.image_size} gives a MaxViT window < 1")
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))

        def attn(ch: int) -> MaxAttentionBlock:
            return MaxAttentionBlock(ch, ch // cfg.num_head_channels, cfg.num_head_channels, window=cfg.window)

        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(cfg.in_channels, mc, 3, padding=1))])
        chans = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, ted, mult * mc)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers.append(attn(ch))
                self.input_blocks.append(TimestepSequential(*layers))
                chans.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepSequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(ResBlock(ch, ted), attn(ch), ResBlock(ch, ted))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), ted, mc * mult)]
                ch = mc * mult
                if ds in cfg.attention_resolutions:
                    layers.append(attn(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(unet_norm(ch), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, padding=1))
        self.downsamplings = len(cfg.channel_mult) - 1

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """x: (B, in_channels, h, w) = cat(x_t, z0, z1); t: (B,) int64 -> eps (B, out_channels, h, w)."""
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels, dtype=x.dtype))
        hs = []
        h = x
        for blk in self.input_blocks:
            h = blk(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
