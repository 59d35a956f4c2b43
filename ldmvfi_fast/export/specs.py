"""Export-friendly wrappers of the three sub-models, with their I/O contracts.

Each wrapper has flat tensor inputs and outputs (no lists), so ``torch.export`` and ONNX
see one graph per sub-model; the frame height and width are dynamic in multiples of the
architecture's unit (256: the latent is 1/32 and its MaxViT windows are 8), from one unit up.

One unit (a 256-pixel side, a MaxViT window count of 1) used to be specialised away by
``torch.export``: tracing asks "is this size 1?" (contiguity and view checks), records the
answer for the example (> 1) as a guard, and the graph refuses 256. Two things keep one
graph for 1..max units: the reference attention's window partition copies instead of
asking whether a permuted tensor is contiguous (:func:`ldmvfi_fast.ops.maxvit_ref._copy_view`),
and the wrappers trace with ``backed_size_oblivious`` (:func:`size_oblivious`: size checks do
not specialise on 0/1). :func:`export_program` also sets it around ``torch.export.export``,
so that the program's recorded ranges start at 1 unit.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import precision
from ..models.ldmvfi import LDMVFI


def size_oblivious():
    """Context: symbolic-shape checks during tracing treat sizes as possibly 1 instead of
    guarding on the example's value (``torch.fx.experimental._config.backed_size_oblivious``,
    which the ONNX exporter also sets). No effect on eager runs."""
    try:
        from torch.fx.experimental import _config
    except ImportError:  # pragma: no cover - older torch
        return contextlib.nullcontext()
    return _config.patch(backed_size_oblivious=True)


def _traced_size_oblivious(forward):
    @functools.wraps(forward)  # keeps the signature: torch.export matches dynamic_shapes to it
    def wrapper(self, *args):
        with size_oblivious():
            return forward(self, *args)
    return wrapper


def export_program(spec: "ExportSpec"):
    """``torch.export.export`` of a spec (non-strict, its dynamic shapes), size-oblivious so
    that one program covers sides of 1..max units (see the module doc)."""
    with size_oblivious():
        return torch.export.export(spec.module, spec.inputs, dynamic_shapes=spec.dynamic_shapes, strict=False)


class EncoderExport(nn.Module):
    """frame (B, 3, H, W) padded, in [-1, 1] -> z (B, 3, H/32, W/32), phi0..phi4."""

    def __init__(self, model: LDMVFI):
        super().__init__()
        self.model = model

    @_traced_size_oblivious
    def forward(self, frame: Tensor):
        z, phi = self.model.encode(frame)  # float32 outputs under half (precision island "io")
        return (z, *phi)


class UNetStepExport(nn.Module):
    """x_t (B, 3, h, w), t (B,) int64, cond (B, 6, h, w) -> eps (B, 3, h, w)."""

    def __init__(self, model: LDMVFI):
        super().__init__()
        self.model = model

    @_traced_size_oblivious
    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.model.eps(x_t, t, cond)


class DecoderExport(nn.Module):
    """z, phi0_0..phi0_4, phi1_0..phi1_4, frame0, frame1 -> frame (B, 3, H, W) padded, not clamped."""

    def __init__(self, model: LDMVFI, quantize: bool = True):
        super().__init__()
        self.model, self.quantize = model, quantize
        self.levels = len(model.cfg.autoencoder.ch_mult)

    @_traced_size_oblivious
    def forward(self, z: Tensor, *rest: Tensor) -> Tensor:
        n = self.levels
        phi0, phi1, (f0, f1) = list(rest[:n]), list(rest[n:2 * n]), rest[2 * n:]
        return self.model.decode(z, phi0, phi1, f0, f1, quantize=self.quantize)


#: smallest frame side (in pad units) the exported graphs accept: one unit (256 pixels) since
#: the window partition no longer specialises a window count of 1 (see the module doc)
MIN_UNITS = 1
MAX_BATCH = 64


@dataclass
class ExportSpec:
    """One sub-model's contract: module, example inputs, names and dynamic shapes.

    ``dynamic_shapes`` is in ``torch.export``'s form; ``axes`` the same in words for the
    manifest: per input, ``{axis: symbol}`` with symbols ``batch``, ``H``/``W`` (frame) or
    ``H/n``/``W/n`` (a level n times smaller).
    """
    name: str
    module: nn.Module
    inputs: tuple[Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_shapes: tuple
    axes: dict[str, dict[int, str]] | None = None


def _sym(div: int) -> dict[int, str]:
    return {0: "batch", 2: "H" if div == 1 else f"H/{div}", 3: "W" if div == 1 else f"W/{div}"}


def export_specs(model: LDMVFI, height: int = 512, width: int = 768, batch: int = 2,
                 max_units: int = 16) -> list[ExportSpec]:
    """Example inputs and ``torch.export`` dynamic shapes for encoder, U-Net step and decoder.

    Height and width are ``unit * k`` with k in [MIN_UNITS, max_units] (1 unit: 256 pixels);
    batch is dynamic in [1, 64]. The example batch and sides must be > 1 (unit), or the
    exporters specialise them: 512x768, batch 2 by default.
    """
    from torch.export import Dim

    unit = model.cfg.min_pad_unit()
    f = model.latent_factor
    if height % unit or width % unit:
        raise ValueError(f"example size must be a multiple of {unit}")
    p = next(model.parameters())
    # graph inputs in float32 under half: the model casts inside (precision island "io")
    dev, dt = p.device, precision.compute_dtype("io", p.dtype)
    ae = model.cfg.autoencoder
    if not (MIN_UNITS * unit <= height <= max_units * unit and MIN_UNITS * unit <= width <= max_units * unit):
        raise ValueError(f"example size {height}x{width} outside [{MIN_UNITS * unit}, {max_units * unit}]")
    kh, kw = Dim("kh", min=MIN_UNITS, max=max_units), Dim("kw", min=MIN_UNITS, max=max_units)
    b = Dim("batch", min=1, max=MAX_BATCH)
    H, W = unit * kh, unit * kw
    # two different frames: identical example tensors passed as two inputs are taken by
    # torch.export as one aliased input, and the graph would read the first for both
    frame = torch.rand(batch, 3, height, width, device=dev, dtype=dt) * 2 - 1
    frame1 = torch.rand(batch, 3, height, width, device=dev, dtype=dt) * 2 - 1
    enc = EncoderExport(model)
    with torch.no_grad():
        z, *phi = enc(frame)
        z1, *phi1 = enc(frame1)
    lat = {0: b, 2: (unit // f) * kh, 3: (unit // f) * kw}
    phi_names = [f"phi{i}" for i in range(len(phi))]
    specs = [ExportSpec("encoder", enc, (frame,), ["frame"], ["z"] + phi_names, ({0: b, 2: H, 3: W},),
                        {"frame": _sym(1)})]
    cond = torch.cat([z, z1], 1)
    t = torch.full((batch,), 500, device=dev, dtype=torch.long)
    specs.append(ExportSpec("unet_step", UNetStepExport(model), (torch.randn_like(z), t, cond), ["x_t", "t", "cond"], ["eps"],
                            (lat, {0: b}, lat), {"x_t": _sym(f), "t": {0: "batch"}, "cond": _sym(f)}))
    phi_dyn = tuple({0: b, 2: (unit >> (i + 1)) * kh, 3: (unit >> (i + 1)) * kw} for i in range(len(ae.ch_mult)))
    dec_inputs = (torch.randn_like(z), *phi, *phi1, frame, frame1)
    names = ["z"] + [f"phi0_{i}" for i in range(len(phi))] + [f"phi1_{i}" for i in range(len(phi))] + ["frame0", "frame1"]
    axes = {"z": _sym(f), "frame0": _sym(1), "frame1": _sym(1)}
    for j in (0, 1):
        axes.update({f"phi{j}_{i}": _sym(2 ** (i + 1)) for i in range(len(phi))})
    specs.append(ExportSpec("decoder", DecoderExport(model), dec_inputs, names, ["frame"],
                            (lat, (*phi_dyn, *phi_dyn, {0: b, 2: H, 3: W}, {0: b, 2: H, 3: W})), axes))
    return specs
