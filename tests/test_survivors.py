"""Fast pins for orderings that the slow tests alone used to see.

* The frames of ``--multi 4`` / ``--multi 8`` come out in temporal order: a probe backbone whose
  decoder returns the mean of the two neighbours' frames makes every output's value its position
  in time (``Interpolator.interpolate_multi`` / ``interpolate_sequence``).
* ``EngineBackbone.decode`` (ONNX Runtime, TensorRT) hands the decoder graph its inputs in the
  order the exporter names them in the manifest (``z, phi0_*, phi1_*, frame0, frame1``), and that
  order, fed to the module the graphs are exported from, is the eager decoder's call.

No fixtures, no exports: seconds.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ldmvfi_fast.pipeline import Interpolator
from ldmvfi_fast.runtime import Backbone
from ldmvfi_fast.runtime._engine import EngineBackbone
from ldmvfi_fast.sampling import DiffusionSchedule, make_beta_schedule


def _alphas_cumprod() -> torch.Tensor:
    """The original's training schedule (linear betas 0.0015..0.0195 over 1000 steps)."""
    return DiffusionSchedule.from_betas(make_beta_schedule("linear", 1000, 0.0015, 0.0195)).buffers[
        "alphas_cumprod"].float()


class ProbeBackbone:
    """A :class:`~ldmvfi_fast.runtime.base.Backbone` without a network: ``decode`` returns the mean
    of the two neighbours' frames, so between a frame of -1 and one of +1 every output's value is
    its position in time (whatever the sampled latent)."""

    name = "probe"
    prediction = "eps"

    def __init__(self):
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.pad_unit, self.latent_factor, self.latent_channels = 8, 8, 3
        self.alphas_cumprod = _alphas_cumprod()
        self.decoded: list[tuple[float, float]] = []  # (mean of frame0, mean of frame1) per decode

    def check_size(self, height: int, width: int, batch: int) -> None:
        assert height % self.pad_unit == 0 and width % self.pad_unit == 0

    def encode(self, frames):
        return F.avg_pool2d(frames, self.latent_factor), [F.avg_pool2d(frames, 2)]

    def denoise(self, x_t, t, cond):
        return x_t * 0.5

    def decode(self, z, phi0, phi1, frame0, frame1):
        self.decoded.append((float(frame0.mean()), float(frame1.mean())))
        return (frame0 + frame1) * 0.5


def _const(v: float, hw=(16, 24)) -> torch.Tensor:
    return torch.full((1, 3, *hw), float(v))


def _values(frames) -> list[float]:
    out = []
    for f in frames:
        assert f.shape == (1, 3, 16, 24)
        v = float(f.mean())
        assert torch.allclose(f, torch.full_like(f, v), atol=1e-6), "a probe frame is not constant"
        out.append(round(v, 6))
    return out


def test_probe_is_a_backbone():
    assert isinstance(ProbeBackbone(), Backbone)


@pytest.mark.parametrize("multi", [2, 4, 8])
def test_multi_frames_come_out_in_temporal_order(multi):
    bb = ProbeBackbone()
    it = Interpolator(bb, steps=2, padding="minimal")
    e0, e1 = it.encode(_const(-1.0)), it.encode(_const(1.0))
    got = _values(it.interpolate_multi(e0, e1, multi, it.new_generator(0)))
    assert got == [round(-1 + 2 * k / multi, 6) for k in range(1, multi)]
    # each new frame is decoded between its two temporal neighbours, earlier one first
    assert all(a < b for a, b in bb.decoded), bb.decoded


@pytest.mark.parametrize("multi", [2, 4, 8])
def test_sequence_outputs_are_in_temporal_order(multi):
    inputs = [-1.0, 0.5, 1.0, -0.5]  # unevenly spaced, not monotonic: any reordering shows
    it = Interpolator(ProbeBackbone(), steps=2, padding="minimal")
    got = _values(it.interpolate_sequence((_const(v) for v in inputs), multi=multi, seed=3))
    want = [round(a + (b - a) * k / multi, 6) for a, b in zip(inputs, inputs[1:]) for k in range(multi)]
    want.append(inputs[-1])
    assert len(got) == multi * (len(inputs) - 1) + 1
    assert got == want


# --- EngineBackbone.decode: the flat decoder inputs in the exporter's order ------------------

@pytest.fixture(scope="module")
def tiny_contract():
    """The tiny model's export specs at one unit (256x256, batch 1) and the graph descriptions the
    ONNX exporter writes into manifest.json (the pt2 export names the inputs alike). Only the
    encoder runs (export_specs' example features): ~1 s."""
    from _shared import random_model
    from ldmvfi_fast.export.onnx import onnx_manifest
    from ldmvfi_fast.export.specs import export_specs

    model = random_model("tiny", init="default")  # seed 0, the default initialisation
    specs = {s.name: s for s in export_specs(model, 256, 256, batch=1, max_units=2)}
    # outputs given: the manifest is written without running the U-Net and the decoder
    manifest = onnx_manifest(model, list(specs.values()), opset=20, custom_ops="decompose", max_units=2,
                             outputs={name: [] for name in specs})
    return specs, manifest


class RecordingEngine(EngineBackbone):
    """An EngineBackbone whose ``_run`` records the flat tensor list; with a decoder ``module`` it
    also runs it on the list bound by the manifest's input names, as ONNX Runtime
    (``io.bind_input(desc["name"], ...)``) and TensorRT (``set_tensor_address(name, ...)``) do."""

    def __init__(self, manifest: dict, input_names: list[str] | None = None, module=None):
        self.manifest, self.input_names, self.module, self.calls = manifest, input_names, module, []

    def _run(self, graph, tensors):
        self.calls.append((graph, list(tensors)))
        if self.module is None:
            return [tensors[0]]
        names = [d["name"] for d in self.manifest["graphs"][graph]["inputs"]]
        assert len(names) == len(tensors)
        feeds = dict(zip(names, tensors))
        return [self.module(*[feeds[n] for n in self.input_names])]


def _decoder_args(levels: int):
    """z, phi0, phi1, frame0, frame1: distinct tensors (identity tells them apart)."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(1, 3, 8, 8, generator=g)
    phi0 = [torch.randn(1, 4, 128 >> i, 128 >> i, generator=g) for i in range(levels)]
    phi1 = [torch.randn(1, 4, 128 >> i, 128 >> i, generator=g) for i in range(levels)]
    f0, f1 = torch.rand(1, 3, 256, 256, generator=g), torch.rand(1, 3, 256, 256, generator=g)
    return z, phi0, phi1, f0, f1


def _levels(specs) -> int:
    return len(specs["encoder"].output_names) - 1


def test_engine_decode_passes_the_inputs_the_manifest_names(tiny_contract):
    specs, manifest = tiny_contract
    levels = _levels(specs)
    names = [d["name"] for d in manifest["graphs"]["decoder"]["inputs"]]
    assert names == specs["decoder"].input_names
    # the names say which frame each feature map belongs to
    assert names == (["z"] + [f"phi0_{i}" for i in range(levels)] + [f"phi1_{i}" for i in range(levels)]
                     + ["frame0", "frame1"])
    z, phi0, phi1, f0, f1 = _decoder_args(levels)
    label = {id(z): "z", id(f0): "frame0", id(f1): "frame1"}
    label.update({id(p): f"phi0_{i}" for i, p in enumerate(phi0)})
    label.update({id(p): f"phi1_{i}" for i, p in enumerate(phi1)})
    rec = RecordingEngine(manifest)
    rec.decode(z, phi0, phi1, f0, f1)
    (graph, tensors), = rec.calls
    assert graph == "decoder"
    assert [label.get(id(t), "?") for t in tensors] == names
    # encoder and U-Net step too
    assert [d["name"] for d in manifest["graphs"]["encoder"]["inputs"]] == ["frame"]
    assert [d["name"] for d in manifest["graphs"]["unet_step"]["inputs"]] == ["x_t", "t", "cond"]
    t, cond = torch.tensor([5]), torch.cat([z, z], 1)
    rec.encode(f0)
    rec.denoise(z, t, cond)
    assert rec.calls[1] == ("encoder", [f0])
    assert rec.calls[2][0] == "unet_step" and all(a is b for a, b in zip(rec.calls[2][1], (z, t, cond)))


class _RecordingModel:
    """What DecoderExport wraps: records the arguments of ``decode``."""

    def __init__(self, levels: int):
        from types import SimpleNamespace

        self.cfg = SimpleNamespace(autoencoder=SimpleNamespace(ch_mult=(1,) * levels))
        self.got = None

    def decode(self, z, phi0, phi1, frame0, frame1, quantize=True):
        self.got = (z, list(phi0), list(phi1), frame0, frame1)
        return frame0


def test_engine_decode_reaches_the_decoder_as_the_eager_call(tiny_contract):
    """The flat inputs, bound by name to DecoderExport (what decoder.onnx / decoder.pt2 are traced
    from), call the model's ``decode(z, phi0, phi1, frame0, frame1)`` with the very tensors given
    to ``EngineBackbone.decode``: frame 0's features with frame 0."""
    from ldmvfi_fast.export.specs import DecoderExport

    specs, manifest = tiny_contract
    levels = _levels(specs)
    assert isinstance(specs["decoder"].module, DecoderExport)
    inner = _RecordingModel(levels)
    args = _decoder_args(levels)
    z, phi0, phi1, f0, f1 = args
    label = {id(z): "z", id(f0): "frame0", id(f1): "frame1"}
    label.update({id(p): f"phi0_{i}" for i, p in enumerate(phi0)})
    label.update({id(p): f"phi1_{i}" for i, p in enumerate(phi1)})
    RecordingEngine(manifest, specs["decoder"].input_names, DecoderExport(inner)).decode(*args)
    g_z, g_phi0, g_phi1, g_f0, g_f1 = inner.got
    # what the decoder got as (z, phi0, phi1, frame0, frame1), named by what was passed in
    got = [label.get(id(g_z), "?"), [label.get(id(p), "?") for p in g_phi0],
           [label.get(id(p), "?") for p in g_phi1], label.get(id(g_f0), "?"), label.get(id(g_f1), "?")]
    assert got == ["z", [f"phi0_{i}" for i in range(levels)], [f"phi1_{i}" for i in range(levels)],
                   "frame0", "frame1"], "the decoder graph would see the frames or their features swapped"
