"""The runtime seam: the pipeline gives the same frames from the PyTorch model and from the
``torch.export`` programs of an engine folder; the engine folder's manifest and bad input."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from ldmvfi_fast.errors import EngineError, InputError, LdmvfiError
from ldmvfi_fast.manifest import FORMAT_VERSION, read_manifest, weights_hash
from ldmvfi_fast.export.pt2 import export_pt2
from ldmvfi_fast.pipeline import Interpolator
from ldmvfi_fast.runtime import Backbone, TorchBackbone, load_backbone
from ldmvfi_fast.runtime.exported import ExportedBackbone


@pytest.fixture(scope="module")
def engines(tiny_engines):
    """The tiny model exported by ``ldmvfi-fast export`` (conftest), shared by the session."""
    return tiny_engines


@pytest.fixture(scope="module")
def exported(engines):
    return ExportedBackbone.from_dir(engines)


def test_backbones_satisfy_the_protocol(tiny_model, exported):
    assert isinstance(TorchBackbone(tiny_model), Backbone)
    assert isinstance(exported, Backbone)


@pytest.mark.parametrize("hw,batch", [((480, 500), 2), ((700, 300), 1), ((200, 330), 1)])
def test_pipeline_same_frames_from_model_and_exported_programs(tiny_model, exported, hw, batch):
    """Padded to 512x512 (batch 2), 768x512 (non-square, batch 1) and 256x512 (one pad unit
    high): none is the export's example size, so a dimension frozen by the exporter would show."""
    g = torch.Generator().manual_seed(7)
    f0 = torch.rand(batch, 3, *hw, generator=g) * 2 - 1
    f1 = torch.rand(batch, 3, *hw, generator=g) * 2 - 1
    eager = Interpolator(tiny_model, steps=2, eta=1.0, padding="minimal")
    it = Interpolator(exported, steps=2, eta=1.0, padding="minimal")
    assert it.model is None and it.backbone.name == "exported"
    a = eager.interpolate(f0, f1, seed=3)
    b = it.interpolate(f0, f1, seed=3)
    assert a.shape == (batch, 3, *hw)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert (a - f0).abs().mean() > 0.01  # a real interpolation, not a pass-through


def test_graphs_keep_batch_height_and_width_symbolic(exported):
    """The exporter can freeze a dynamic dimension silently: every frame-like input of every
    graph must stay symbolic in batch, height and width (the run at other sizes above proves
    the computation; this names the input that froze)."""
    for name, ep in exported.programs.items():
        user = set(ep.graph_signature.user_inputs)
        placeholders = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in user]
        four_d = [n for n in placeholders if len(n.meta["val"].shape) == 4]
        assert len(four_d) == {"encoder": 1, "unet_step": 2, "decoder": 13}[name]
        for n in four_d:
            shape = n.meta["val"].shape
            assert all(not isinstance(d, int) for d in (shape[0], shape[2], shape[3])), (name, n.name, shape)


def test_manifest_describes_the_graphs(tiny_model, engines):
    m = read_manifest(engines)
    assert m["format_version"] == FORMAT_VERSION and m["prediction"] == "eps" and m["pad_unit"] == 256
    assert m["weights_hash"] == weights_hash(tiny_model)
    assert len(m["alphas_cumprod"]) == 1000
    assert m["alphas_cumprod"][500] == pytest.approx(float(tiny_model.alphas_cumprod[500]), rel=1e-7)
    enc, unet, dec = (m["graphs"][k] for k in ("encoder", "unet_step", "decoder"))
    assert enc["inputs"] == [{"name": "frame", "dtype": "float32", "shape": ["batch", 3, "H", "W"]}]
    assert [i["name"] for i in unet["inputs"]] == ["x_t", "t", "cond"]
    assert unet["inputs"][1]["dtype"] == "int64" and unet["inputs"][2]["shape"] == ["batch", 6, "H/32", "W/32"]
    assert dec["inputs"][1]["shape"] == ["batch", 32, "H/2", "W/2"]
    assert m["op_backend"] == "auto" and m["sizes"]["min_height"] == 256
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert (engines / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_load_backbone_checks_the_weights(tiny_ckpt, engines, tmp_path):
    other = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    key = "first_stage_model.quant_conv.bias"
    other["state_dict"][key] = other["state_dict"][key] + 1
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(EngineError, match="other weights"):
        load_backbone("exported", engines=engines, ckpt=tmp_path / "other.ckpt")


def _copy(engines, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(engines, dst)
    return dst


def test_bad_engine_folders(engines, tmp_path):
    with pytest.raises(EngineError, match="not found"):
        ExportedBackbone.from_dir(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineError, match="manifest.json"):
        ExportedBackbone.from_dir(empty)
    d = _copy(engines, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**m, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(EngineError, match="newer"):
        ExportedBackbone.from_dir(d)
    bad = dict(m)
    del bad["alphas_cumprod"]
    (d / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(EngineError, match="alphas_cumprod"):
        ExportedBackbone.from_dir(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(EngineError, match="cannot be read"):
        ExportedBackbone.from_dir(d)
    (d / "manifest.json").write_text(json.dumps(m))
    (d / "decoder.pt2").unlink()
    with pytest.raises(EngineError, match="decoder.pt2"):
        ExportedBackbone.from_dir(d)
    shutil.copy(engines / "decoder.pt2", d / "decoder.pt2")
    (d / "encoder.pt2").write_bytes(b"truncated")
    with pytest.raises(EngineError, match="cannot load"):
        ExportedBackbone.from_dir(d)
    assert issubclass(EngineError, LdmvfiError)


def test_sizes_outside_the_graphs_are_refused_before_running(exported):
    it = Interpolator(exported, steps=2, padding="minimal")
    f = torch.zeros(1, 3, 64, 4100)  # pads to 256x4352: wider than the graphs' 4096 maximum
    with pytest.raises(InputError, match="outside what the exported engines accept"):
        it.interpolate(f, f, seed=0)


def test_export_never_clobbers(tiny_model, engines, tmp_path):
    target = tmp_path / "eng"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(EngineError, match="not empty"):
        export_pt2(tiny_model, target)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_engines_calling_compiled_ops_need_the_extension(engines, tmp_path, monkeypatch):
    """The tiny export calls ldmvfi_fast::decoder_output; without the extension the folder is
    refused with a message (before torch.export.load fails on an unknown schema)."""
    from ldmvfi_fast.ops import _native

    assert read_manifest(engines)["custom_ops"]  # the compiled op is in the graphs
    monkeypatch.setattr(_native, "LOAD_ERROR", "ImportError: not built (simulated)")
    with pytest.raises(EngineError, match="ldmvfi_fast._C is not available.*backend='reference'"):
        ExportedBackbone.from_dir(engines)
