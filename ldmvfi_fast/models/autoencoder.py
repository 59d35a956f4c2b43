"""VQ-FIGAN autoencoder: ``FlowEncoder``, codebook quantiser, ``FlowDecoderWithResidual``.

Encoder: conv_in, then per level ``num_res_blocks`` ResNet blocks and a stride-2
downsample (every level, so f = 2 ** levels); the output of each downsample is one of
the features ``phi``. Middle: ResNet - MaxViT (one head as wide as the channels) - ResNet.
The latent is taken after ``quant_conv``, not quantised.

Decoder: ``post_quant_conv`` (applied by :class:`VQFlowNet`), conv_in, middle, then per
level (coarsest first) ResNet blocks, MaxViT cross-attention to ``cat(phi0, phi1)`` of that
level, and x2 upsampling. Output heads on the full-resolution features predict, per frame,
DSepConv kernels and offsets, a shared occlusion mask and a residual; the output is
``warp(I0) + warp(I1) + residual`` (:func:`ldmvfi_fast.ops.decoder_output`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops, precision
from ..config import AutoencoderConfig
from .layers import AEDownsample, AEResnetBlock, Upsample, ae_norm, swish
from .maxvit import CrossAttentionWithMax, MaxAttentionBlock

HEAD_KERNEL = 5  # DSepConv kernel size of the output heads


class _Level(nn.Module):
    pass


class _Mid(nn.Module):
    def __init__(self, ch: int, window: int):
        super().__init__()
        self.block_1 = AEResnetBlock(ch, ch)
        self.attn_1 = MaxAttentionBlock(ch, heads=1, dim_head=ch, window=window)
        self.block_2 = AEResnetBlock(ch, ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """(B, 3, H, W) padded frame -> latent (B, z, H/f, W/f) and the list of level features."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch = cfg.ch
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        in_mult = (1,) + tuple(cfg.ch_mult)
        for level, mult in enumerate(cfg.ch_mult):
            lv = _Level()
            block_in = ch * in_mult[level]
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(AEResnetBlock(block_in, ch * mult))
                block_in = ch * mult
            lv.block = nn.ModuleList(blocks)
            lv.downsample = AEDownsample(block_in)
            self.down.append(lv)
        self.mid = _Mid(block_in, cfg.window)
        self.norm_out = ae_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.conv_in(x.to(self.conv_in.weight.dtype))
        phi = []
        for lv in self.down:
            for blk in lv.block:
                h = blk(h)
            h = lv.downsample(h)
            phi.append(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h))), phi


def _head(c_in: int, c_out: int, sigmoid: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
              nn.Conv2d(32, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1)]
    if sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """Latent (after post_quant_conv) + neighbour features and frames -> middle frame."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch, levels = cfg.ch, len(cfg.ch_mult)
        block_in = ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, cfg.window)
        up = []
        for level in reversed(range(levels)):
            lv = _Level()
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(AEResnetBlock(block_in, ch * cfg.ch_mult[level]))
                block_in = ch * cfg.ch_mult[level]
            lv.block = nn.ModuleList(blocks)
            heads = block_in // cfg.decoder_head_channels
            lv.cross_attn = CrossAttentionWithMax(block_in, heads, cfg.decoder_head_channels, cfg.window)
            lv.upsample = Upsample(block_in)
            up.insert(0, lv)
        self.up = nn.ModuleList(up)
        self.norm_out = ae_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, block_in, 3, padding=1)
        K = HEAD_KERNEL
        self.moduleAlpha1 = _head(block_in, K * K)
        self.moduleAlpha2 = _head(block_in, K * K)
        self.moduleBeta1 = _head(block_in, K * K)
        self.moduleBeta2 = _head(block_in, K * K)
        self.moduleKernelHorizontal1 = _head(block_in, K)
        self.moduleKernelHorizontal2 = _head(block_in, K)
        self.moduleKernelVertical1 = _head(block_in, K)
        self.moduleKernelVertical2 = _head(block_in, K)
        self.moduleMask = _head(block_in, K * K, sigmoid=True)
        self.moduleResidual = _head(block_in, 3)

    def features(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor]) -> Tensor:
        """Full-resolution features (B, ch, H, W) before the output heads."""
        h = self.mid(self.conv_in(z))
        for level in reversed(range(len(self.up))):
            lv = self.up[level]
            for blk in lv.block:
                h = blk(h)
            h = lv.cross_attn(h, torch.cat([phi0[level], phi1[level]], dim=1).to(h.dtype))
            h = lv.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))

    #: head order of :func:`ldmvfi_fast.ops.decoder_output` (mask last but one, residual last)
    HEADS = ("moduleKernelVertical1", "moduleKernelHorizontal1", "moduleAlpha1", "moduleBeta1",
             "moduleKernelVertical2", "moduleKernelHorizontal2", "moduleAlpha2", "moduleBeta2",
             "moduleResidual", "moduleMask")

    def heads(self, h: Tensor) -> list[Tensor]:
        """The ten head outputs in :attr:`HEADS` order. (Evaluating them as one 64 x 10-channel
        convolution plus grouped convolutions was measured: 5% faster at best on CPU, slower
        with grouped layers, so they stay separate.)"""
        return [getattr(self, n)(h) for n in self.HEADS]

    def forward(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor], frame0: Tensor, frame1: Tensor) -> Tensor:
        """z: (B, z, h, w); phi*: level features; frame*: (B, 3, 32h, 32w) padded frames -> (B, 3, 32h, 32w).

        Under float16/bfloat16 the output stage (two DSepConv warps, mask blend, residual) runs in
        float32 on the frames as given (precision island ``dsepconv``) and returns float32."""
        h = self.features(z.to(self.conv_in.weight.dtype), phi0, phi1)
        v1, h1, a1, b1, v2, h2, a2, b2, res, mask = self.heads(h)
        heads = (v1, h1, a1, b1, v2, h2, a2, b2, mask, res)
        if precision.keeps_fp32("dsepconv"):
            args = precision.upcast("dsepconv", frame0, frame1, *heads)
        else:
            args = (frame0.to(h.dtype), frame1.to(h.dtype), *heads)
        return ops.decoder_output(*args)


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantisation (taming ``VectorQuantizer2`` at inference)."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def indices(self, z: Tensor) -> Tensor:
        """z: (B, D, h, w) -> flat int64 indices (B*h*w,), row-major over (b, y, x)."""
        # precision island "quantizer": distances and argmin in float32 under half
        zf, e = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), self.embedding.weight
        zf, e = precision.upcast("quantizer", zf, e) if precision.keeps_fp32("quantizer") else (zf.to(e.dtype), e)
        d = zf.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * zf @ e.t()
        return d.argmin(dim=1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z: (B, D, h, w) -> (straight-through quantised latent (B, D, h, w), indices)."""
        idx = self.indices(z)
        B, D, h, w = z.shape
        zq = self.embedding(idx).to(z.dtype).view(B, h, w, D).permute(0, 3, 1, 2)
        return z + (zq - z), idx  # the original's straight-through value, bit for bit


class VQFlowNet(nn.Module):
    """The first-stage model: encoder, quantiser, 1x1 convs and decoder (checkpoint prefix
    ``first_stage_model.``). Works on frames already padded to a supported size."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x: (B, 3, H, W) padded frame in [-1, 1] -> (latent (B, embed_dim, H/f, W/f), features)."""
        h, phi = self.encoder(x)
        return self.quant_conv(h), phi

    def decode(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor], frame0: Tensor, frame1: Tensor,
               quantize: bool = True) -> Tensor:
        """Latent -> (B, 3, H, W) frame at the padded size, not clamped, not cropped."""
        if quantize:
            z, _ = self.quantize(z)
        return self.decoder(self.post_quant_conv(z.to(self.post_quant_conv.weight.dtype)), phi0, phi1, frame0, frame1)


def unused_checkpoint_shapes(cfg: AutoencoderConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of ``decoder.up.*.cross_attn.out_conv.*``: built by the original, never called."""
    out = {}
    for level, mult in enumerate(cfg.ch_mult):
        d = cfg.ch * mult
        pre = f"decoder.up.{level}.cross_attn.out_conv."
        out[pre + "0.gate.1.weight"] = (int(2 * d * 0.25), 2 * d)
        out[pre + "0.gate.3.weight"] = (2 * d, int(2 * d * 0.25))
        out[pre + "1.weight"] = (d, 2 * d, 3, 3)
        out[pre + "1.bias"] = (d,)
    return out


__all__ = ["Encoder", "Decoder", "VectorQuantizer", "VQFlowNet", "unused_checkpoint_shapes"]
