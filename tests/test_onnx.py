"""ONNX export (:mod:`ldmvfi_fast.export.onnx`) and the ONNX Runtime backbone
(:mod:`ldmvfi_fast.runtime.onnxruntime`).

Default suite: the vectorised DSepConv / decoder output (the ``decompose`` formulation) vs
the reference ops; for the tiny config and a second config with other widths (random
weights), the encoder, U-Net step and decoder graphs in both custom-op modes (the encoder
and U-Net step have no custom ops: one graph serves both modes) checked by ``onnx.checker``
(full), symbolic axes, and run against PyTorch at two sizes (one non-square, one a single
256-pixel unit high) and two batches, none the example's (ONNX Runtime; the ``domain``
decoder with ``onnx.reference`` and Python implementations of the domain ops); options and
target folder refused before any work, the manifest's profiles, the runtime's refusals and
the export script's exit status. ``slow``: whole exports with ``export_onnx`` (both configs,
both modes), the whole interpolation through :class:`OrtBackbone` vs the PyTorch pipeline,
and float16 / bfloat16 exports.

onnx, onnxscript and onnxruntime are optional: these tests skip without them, except under
``CI=true`` where they must be installed.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import shutil

import pytest
import torch
from _requirements import ci
from _shared import export_script

for _pkg in ("onnx", "onnxscript", "onnxruntime"):
    if ci():  # CI images must have them: an ImportError here is a failure, not a skip
        importlib.import_module(_pkg)
    else:
        pytest.importorskip(_pkg)

from ldmvfi_fast.errors import EngineError, InputError, OptionError
from ldmvfi_fast.manifest import (
    FORMAT_VERSION,
    read_manifest,
    weights_hash,
    write_manifest,
)
from ldmvfi_fast.export.onnx import (
    ONNX_FILES,
    check_graph,
    export_graph,
    export_onnx,
    onnx_manifest,
    output_axes,
    shape_profiles,
)
from ldmvfi_fast.export.specs import export_specs
from ldmvfi_fast.export.specs import EncoderExport, ExportSpec
from ldmvfi_fast.ops import _onnx, decoder_output_reference, dsepconv_reference, use_backend
from ldmvfi_fast.ops.dsepconv_export import decoder_output_vectorized, dsepconv_vectorized
from ldmvfi_fast.pipeline import Interpolator
from ldmvfi_fast.runtime import Backbone, load_backbone
from ldmvfi_fast.runtime.onnxruntime import OrtBackbone

#: (height, width, batch) other than the export example (512x768, batch 2): one non-square,
#: both with a side of one 256-pixel unit
SIZES = [(256, 256, 3), (512, 256, 1)]
TOL = {"rtol": 1e-4, "atol": 1e-4}


def _ort(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _compare(path, model, index, sizes=SIZES):
    """The ONNX graph ``path`` (spec ``index``) vs the PyTorch sub-model at ``sizes`` (ONNX Runtime;
    graphs with ldmvfi_fast domain nodes: onnx.reference with the Python domain ops)."""
    for h, w, b in sizes:
        spec = export_specs(model, h, w, batch=b)[index]
        with torch.no_grad():
            ref = spec.module(*spec.inputs)
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        got = _run_graph(path, {n: t.numpy() for n, t in zip(spec.input_names, spec.inputs)})
        assert len(got) == len(ref)
        for name, g, r in zip(spec.output_names, got, ref):
            where = f"{spec.name}.{name} at {h}x{w} batch {b}"
            g = torch.from_numpy(g)
            if spec.name == "decoder":
                # DSepConv floors each tap position: where a random offset puts a tap within
                # rounding of a pixel edge at the clamped border, ONNX Runtime and PyTorch pick
                # neighbouring corners (seen: 3 of 2.4 M values, 5e-3 apart). Isolated values
                # may differ; everything else within TOL (the pipeline test below is strict).
                bad = ~torch.isclose(g, r, **TOL)
                assert g.shape == r.shape and int(bad.sum()) <= max(4, r.numel() // 100_000), \
                    (where, int(bad.sum()), float((g - r).abs().max()))
            else:
                torch.testing.assert_close(g, r, **TOL, msg=lambda m, where=where: f"{where}: {m}")


@pytest.fixture(scope="module")
def tiny_enc_unet(tiny_model, tmp_path_factory):
    """encoder.onnx and unet_step.onnx of the tiny model (no decoder: the slow one) and a
    manifest for the three graphs (the decoder's output described, not run: the slow tests
    check the real one)."""
    d = tmp_path_factory.mktemp("onnx_parts")
    outputs = {"decoder": [{"name": "frame", "dtype": "float32", "shape": ["batch", 3, "H", "W"]}]}
    with use_backend("reference"):
        specs = export_specs(tiny_model)
        for spec in specs[:2]:
            export_graph(spec, d / ONNX_FILES[spec.name])
            outputs[spec.name] = check_graph(d / ONNX_FILES[spec.name], spec, output_axes(spec, tiny_model.latent_factor))
    manifest = onnx_manifest(tiny_model, specs, opset=20, custom_ops="decompose", max_units=16, outputs=outputs)
    return d, specs, manifest


# ---------------------------------------------------------------- the custom ops in both modes

def _dsep_inputs(B=2, C=3, H=13, W=17, K=5, spread=6.0, seed=0):
    """Random DSepConv inputs whose offsets push many taps outside the frame (clamping)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return (r(B, C, H + K - 1, W + K - 1), r(B, K, H, W), r(B, K, H, W), r(B, K * K, H, W) * spread,
            r(B, K * K, H, W) * spread, torch.rand(B, K * K, H, W, generator=g))


def _decoder_output_inputs(B=2, H=16, W=24, K=5, spread=6.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    heads = lambda: (r(B, K, H, W), r(B, K, H, W), r(B, K * K, H, W) * spread, r(B, K * K, H, W) * spread)  # noqa: E731
    return (r(B, 3, H, W), r(B, 3, H, W), *heads(), *heads(), torch.rand(B, K * K, H, W, generator=g), r(B, 3, H, W))


def test_vectorized_dsepconv_matches_the_reference():
    """The decompose-mode formulation: same tap origin, row/column offsets, clamping and
    floor as the reference (taps far outside the frame included), to float rounding."""
    for seed, spread in ((0, 6.0), (1, 0.5), (2, 40.0)):
        args = _dsep_inputs(seed=seed, spread=spread)
        torch.testing.assert_close(dsepconv_vectorized(*args), dsepconv_reference(*args), rtol=1e-5, atol=1e-5)
    # integer positions (the floor's edge cases) and a non-square frame, batch 1
    args = list(_dsep_inputs(B=1, H=9, W=5))
    args[3], args[4] = args[3].round(), args[4].round()
    torch.testing.assert_close(dsepconv_vectorized(*args), dsepconv_reference(*args), rtol=1e-5, atol=1e-5)
    args = _decoder_output_inputs()
    torch.testing.assert_close(decoder_output_vectorized(*args), decoder_output_reference(*args),
                               rtol=1e-5, atol=1e-5)


class _OpModule(torch.nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op = op

    def forward(self, *args):
        import ldmvfi_fast.ops as ops

        return getattr(ops, self.op)(*args)


def _op_spec(op, B=2, H=16, W=24):
    """An ExportSpec of one custom op with dynamic batch, height and width."""
    from torch.export import Dim

    b, h, w = Dim("batch", min=1, max=8), Dim("h", min=2, max=512), Dim("w", min=2, max=512)
    if op == "dsepconv":
        inputs = _dsep_inputs(B=B, H=H, W=W)
        names = ["input", "vertical", "horizontal", "offset_x", "offset_y", "mask"]
        dyn = ({0: b, 2: h + 4, 3: w + 4},) + tuple({0: b, 2: h, 3: w} for _ in range(5))
    else:
        inputs = _decoder_output_inputs(B=B, H=H, W=W)
        names = list(_onnx.DOMAIN_OPS["DecoderOutput"][1])
        dyn = tuple({0: b, 2: h, 3: w} for _ in range(12))
    axes = {n: {0: "batch"} for n in names}
    return ExportSpec(op, _OpModule(op), inputs, names, ["output"], (dyn,), axes)  # (dyn,): forward(*args)


@pytest.fixture(scope="module")
def op_graphs(tmp_path_factory):
    """The custom ops exported alone: {(op, mode): path}. decoder_output (the op the decoder
    calls) in both modes, DSepConv in domain mode (its decomposition is inside decoder_output's)."""
    d = tmp_path_factory.mktemp("op_graphs")
    out = {}
    for op, mode in (("decoder_output", "decompose"), ("decoder_output", "domain"), ("dsepconv", "domain")):
        if True:
            path = d / f"{op}_{mode}.onnx"
            export_graph(_op_spec(op), path, custom_ops=mode)
            out[op, mode] = path
    return out


def _run_graph(path, feeds):
    import onnx
    from onnx.reference import ReferenceEvaluator

    if _onnx.domain_ops_in(onnx.load(str(path))):
        return ReferenceEvaluator(str(path), new_ops=_onnx.reference_ops()).run(None, feeds)
    return _ort(path).run(None, feeds)


def test_op_graphs_both_modes(op_graphs):
    """decompose: standard ONNX ops only, a few hundred nodes, run by ONNX Runtime; domain: one
    node of the ldmvfi_fast domain (v1) with the contract's inputs, run by onnx.reference with the
    Python domain ops. Both pass onnx.checker (full) and match the reference at two sizes (one
    non-square) and two batches other than the example's (batch 2, 16x24)."""
    import onnx

    for (op, mode), path in op_graphs.items():
        # checker with full shape inference; batch, height and width stay symbolic
        check_graph(path, _op_spec(op), {"output": {0: "batch", 2: "H", 3: "W"}})
        m = onnx.load(str(path))
        nodes = m.graph.node
        if mode == "decompose":
            assert not [n for n in nodes if n.domain not in ("", "ai.onnx")], (op, mode)
            # measured 2 590 (most are shape arithmetic of the dynamic reshapes, optimize=False);
            # the reference's loop over 25 taps x 4 corners traced: ~13 800
            assert len(nodes) < 4000, (op, len(nodes))
        else:
            (dom,) = [n for n in nodes if n.domain == _onnx.DOMAIN]
            op_type = {"dsepconv": "DSepConv", "decoder_output": "DecoderOutput"}[op]
            assert dom.op_type == op_type and not dom.attribute and len(dom.output) == 1
            assert len(dom.input) == len(_onnx.DOMAIN_OPS[op_type][1])
            assert [o.version for o in m.opset_import if o.domain == _onnx.DOMAIN] == [1]
            out = m.graph.output[0].type.tensor_type.shape.dim
            assert out[0].dim_param and out[2].dim_param and out[3].dim_param  # inferred, symbolic
        ref_fn = dsepconv_reference if op == "dsepconv" else decoder_output_reference
        for B, H, W in ((1, 8, 8), (3, 20, 12)):
            spec = _op_spec(op, B=B, H=H, W=W)
            (got,) = _run_graph(path, {n: t.numpy() for n, t in zip(spec.input_names, spec.inputs)})
            torch.testing.assert_close(torch.from_numpy(got), ref_fn(*spec.inputs), rtol=1e-4, atol=1e-4,
                                       msg=lambda s, op=op, mode=mode, B=B: f"{op} {mode} batch {B}: {s}")


# ---------------------------------------------------------------- fast

def test_bad_options_are_refused_before_any_work(tiny_model, tmp_path):
    out = tmp_path / "eng"
    for opset in (17, 24, "20", True):
        with pytest.raises(OptionError, match="opset"):
            export_onnx(tiny_model, out, opset=opset)
    with pytest.raises(OptionError, match="example size 256x768"):
        export_onnx(tiny_model, out, height=256)  # an example side of 1 unit would be specialised
    with pytest.raises(OptionError, match="example size 512x700"):
        export_onnx(tiny_model, out, width=700)
    with pytest.raises(OptionError, match="custom_ops"):
        export_onnx(tiny_model, out, custom_ops="plugins")
    with pytest.raises(OptionError, match="dtype"):
        export_onnx(tiny_model, out, dtype=torch.float64)
    with pytest.raises(OptionError, match="bfloat16 graphs need opset 22"):
        export_onnx(tiny_model, out, dtype=torch.bfloat16)
    assert list(tmp_path.iterdir()) == []


def test_export_never_clobbers(tiny_model, tmp_path):
    target = tmp_path / "eng"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(EngineError, match="not empty"):
        export_onnx(tiny_model, target)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    with pytest.raises(EngineError, match="does not exist"):
        export_onnx(tiny_model, tmp_path / "no" / "eng")


def test_failed_export_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    import ldmvfi_fast.export.onnx as mod

    def boom(spec, path, **kw):
        path.write_bytes(b"half")
        if spec.name == "unet_step":
            raise RuntimeError("exporter crashed")

    monkeypatch.setattr(mod, "export_graph", boom)
    monkeypatch.setattr(mod, "check_graph", lambda *a, **k: None)
    monkeypatch.setattr(mod, "_verify", lambda *a, **k: None)
    monkeypatch.setattr(mod, "_domain_ops", lambda *a, **k: [])
    with pytest.raises(EngineError, match="exporter failed on unet_step"):
        export_onnx(tiny_model, tmp_path / "eng")
    assert list(tmp_path.iterdir()) == []


def test_encoder_and_unet_graphs_match_pytorch(tiny_model, tiny_enc_unet):
    """Two sizes (one non-square) and two batches, none the example's (512x768, batch 2)."""
    d, specs, _ = tiny_enc_unet
    for i, spec in enumerate(specs[:2]):
        _compare(d / ONNX_FILES[spec.name], tiny_model, i)


def test_graph_inputs_and_outputs_stay_symbolic(tiny_enc_unet):
    import onnx

    d, _, _ = tiny_enc_unet
    m = onnx.load(str(d / "encoder.onnx"))
    (frame,) = m.graph.input
    dims = frame.type.tensor_type.shape.dim
    assert dims[1].dim_value == 3 and all(dims[i].dim_param for i in (0, 2, 3))
    assert all(o.type.tensor_type.shape.dim[i].dim_param for o in m.graph.output for i in (0, 2, 3))


def test_frozen_dimension_is_caught(tiny_model, tiny_enc_unet, tmp_path):
    """A graph whose batch axis was fixed (what the exporter does silently) is refused."""
    import onnx

    d, specs, _ = tiny_enc_unet
    m = onnx.load(str(d / "unet_step.onnx"))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    onnx.save(m, str(tmp_path / "frozen.onnx"))
    with pytest.raises(EngineError, match="froze"):
        check_graph(tmp_path / "frozen.onnx", specs[1])


def test_manifest_profiles(tiny_model, tiny_enc_unet):
    _, specs, m = tiny_enc_unet
    assert m["runtime"] == "onnxruntime" and m["opset"] == 20 and m["custom_ops_mode"] == "decompose"
    assert m["weights_hash"] == weights_hash(tiny_model) and m["format_version"] == FORMAT_VERSION
    frame = m["graphs"]["encoder"]["profiles"]["frame"]
    # 256x256 (one unit); 1080p padded minimally; 4K UHD padded
    assert frame == {"min": [1, 3, 256, 256], "opt": [1, 3, 1280, 2048], "max": [4, 3, 2304, 3840]}
    assert m["sizes"]["min_height"] == m["sizes"]["min_width"] == 256
    unet = m["graphs"]["unet_step"]["profiles"]
    assert unet["t"] == {"min": [1], "opt": [1], "max": [4]} and unet["cond"]["opt"] == [1, 6, 40, 64]
    assert m["graphs"]["decoder"]["profiles"]["phi1_0"]["max"] == [4, 32, 1152, 1920]
    assert m["graphs"]["encoder"]["outputs"][1] == {"name": "phi0", "dtype": "float32",
                                                    "shape": ["batch", 32, "H/2", "W/2"]}
    small = shape_profiles(specs[0], unit=256, max_units=4, profile={"batch": (1, 2, 100)})
    assert small["frame"] == {"min": [1, 3, 256, 256], "opt": [2, 3, 1024, 1024], "max": [64, 3, 1024, 1024]}


@pytest.fixture()
def fake_folder(tiny_model, tiny_enc_unet, tmp_path):
    """An ONNX engine folder with real encoder/U-Net graphs and a placeholder decoder file
    (enough for every refusal that happens before the sessions are made)."""
    d, _, manifest = tiny_enc_unet
    out = tmp_path / "eng"
    out.mkdir()
    for name in ("encoder", "unet_step"):
        shutil.copy(d / ONNX_FILES[name], out / ONNX_FILES[name])
    (out / "decoder.onnx").write_bytes(b"not an onnx file")
    write_manifest(out, manifest)
    return out


def test_runtime_refuses_bad_folders(tiny_model, fake_folder, tmp_path):
    d = fake_folder
    m = json.loads((d / "manifest.json").read_text())
    with pytest.raises(EngineError, match="not found"):
        OrtBackbone.from_dir(tmp_path / "nope")
    with pytest.raises(EngineError, match="other weights"):
        OrtBackbone.from_dir(d, expect_weights_hash="sha256:" + "0" * 64)
    with pytest.raises(EngineError, match="cannot load .*decoder.onnx"):
        OrtBackbone.from_dir(d, expect_weights_hash=weights_hash(tiny_model))
    (d / "manifest.json").write_text(json.dumps({**m, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(EngineError, match="newer"):
        OrtBackbone.from_dir(d)
    write_manifest(d, {**m, "runtime": "exported"})  # sealed as a writer would: the runtime check is what is tested
    with pytest.raises(EngineError, match="not ONNX engines"):
        OrtBackbone.from_dir(d)
    write_manifest(d, m)
    with pytest.raises(EngineError, match="cpu or cuda"):
        OrtBackbone.from_dir(d, device="meta")
    (d / "unet_step.onnx").unlink()
    with pytest.raises(EngineError, match="unet_step.onnx"):
        OrtBackbone.from_dir(d)
    assert read_manifest(d)["runtime"] == "onnxruntime"


def test_runtime_refuses_domain_mode_folders(fake_folder):
    d = fake_folder
    m = json.loads((d / "manifest.json").read_text())
    write_manifest(d, {**m, "custom_ops_mode": "domain", "custom_ops": ["DecoderOutput"],
                       "custom_op_domains": {"ldmvfi_fast": 1}})
    with pytest.raises(EngineError, match="custom_ops='domain'.*DecoderOutput.*TensorRT plugins"):
        OrtBackbone.from_dir(d)


def test_load_backbone_checks_the_weights(tiny_ckpt, fake_folder, tmp_path):
    other = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    key = "first_stage_model.quant_conv.bias"
    other["state_dict"][key] = other["state_dict"][key] + 1
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(EngineError, match="other weights"):
        load_backbone("onnxruntime", engines=fake_folder, ckpt=tmp_path / "other.ckpt")


def _script():
    return export_script("export_onnx")


def test_export_script_user_errors_exit_2(tiny_ckpt, tmp_path, capsys):
    main = _script().main
    assert main(["--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "e"), "--opset", "12"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ONNX opset 12 is not supported") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:  # argparse's own refusal
        main(["--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "e"), "--custom-ops", "tensorrt"])
    assert exc.value.code == 2 and "--custom-ops" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "e")]) == 2
    assert not (tmp_path / "e").exists()


# ---------------------------------------------------------------- slow: whole exports

@pytest.fixture(scope="module", params=["tiny", "wide"])
def exported(request, tmp_path_factory):
    model = request.getfixturevalue(f"{request.param}_model")  # tiny_model, wide_model (conftest)
    out = tmp_path_factory.mktemp("onnx") / f"{request.param}_onnx"
    export_onnx(model, out)  # checks (onnx.checker full) and verifies at a second size itself
    return model, out, OrtBackbone.from_dir(out, expect_weights_hash=weights_hash(model))


@pytest.mark.slow
def test_exported_folder(exported):
    model, out, bb = exported
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "manifest.json",
                                                     "unet_step.onnx"]
    assert isinstance(bb, Backbone) and bb.name == "onnxruntime"
    import onnx

    m = read_manifest(out)
    assert m["config"] == json.loads(json.dumps(model.cfg.to_dict())) and m["opset"] == 20
    assert m["graphs"]["decoder"]["outputs"] == [{"name": "frame", "dtype": "float32",
                                                  "shape": ["batch", 3, "H", "W"]}]
    for name in ONNX_FILES:
        onnx.checker.check_model(str(out / ONNX_FILES[name]), full_check=True)
        onnx.shape_inference.infer_shapes_path(str(out / ONNX_FILES[name]), str(out.parent / "inferred.onnx"),
                                               strict_mode=True)
    bb.check_size(256, 512, 1)  # one unit is accepted
    with pytest.raises(InputError, match="outside what the ONNX engines accept"):
        bb.check_size(256, 8192, 1)


@pytest.mark.slow
def test_all_graphs_match_pytorch(exported):
    model, out, _ = exported
    for i, name in enumerate(ONNX_FILES.values()):
        _compare(out / name, model, i)


@pytest.mark.slow
@pytest.mark.parametrize("hw,batch", [((480, 500), 2), ((700, 300), 1)])
def test_pipeline_same_frames_from_model_and_onnxruntime(exported, hw, batch):
    model, _, bb = exported
    g = torch.Generator().manual_seed(7)
    f0 = torch.rand(batch, 3, *hw, generator=g) * 2 - 1
    f1 = torch.rand(batch, 3, *hw, generator=g) * 2 - 1
    a = Interpolator(model, steps=2, eta=1.0, padding="minimal").interpolate(f0, f1, seed=3)
    it = Interpolator(bb, steps=2, eta=1.0, padding="minimal")
    assert it.backbone.name == "onnxruntime"
    b = it.interpolate(f0, f1, seed=3)
    assert b.shape == a.shape == (batch, 3, *hw)
    torch.testing.assert_close(b, a, **TOL)
    assert (a - f0).abs().mean() > 0.01


@pytest.mark.slow
def test_load_backbone_onnxruntime(tiny_ckpt, exported):
    model, out, _ = exported
    if model.cfg.name != "tiny":
        pytest.skip("the checkpoint is the tiny one")
    bb = load_backbone("onnxruntime", engines=out, ckpt=tiny_ckpt)
    assert isinstance(bb, OrtBackbone) and bb.weights_hash == weights_hash(model)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", ["tiny", "wide"])
def test_domain_mode_whole_export(request, cfg, tmp_path):
    """export_onnx(custom_ops="domain") verifies the decoder with onnx.reference at 256x512 b1
    itself; its three graphs pass the checker (full) and match the PyTorch sub-models at the
    two sizes and batches (the decoder's DecoderOutput node through onnx.reference and the
    Python domain op); the manifest names the domain ops, and ONNX Runtime refuses the folder."""
    import onnx

    model = request.getfixturevalue(f"{cfg}_model")  # tiny_model, wide_model (conftest)
    out = export_onnx(model, tmp_path / "dom", custom_ops="domain")
    for i, name in enumerate(ONNX_FILES.values()):
        onnx.checker.check_model(str(out / name), full_check=True)
        _compare(out / name, model, i)
    assert _onnx.domain_ops_in(onnx.load(str(out / ONNX_FILES["decoder"])))
    m = read_manifest(out)
    assert m["custom_ops_mode"] == "domain" and m["custom_ops"] == ["DecoderOutput"]
    assert m["custom_op_domains"] == {"ldmvfi_fast": 1}
    assert m["graphs"]["decoder"]["domain_ops"] == ["DecoderOutput"] and m["graphs"]["encoder"]["domain_ops"] == []
    with pytest.raises(EngineError, match="TensorRT plugins"):
        OrtBackbone.from_dir(out)


@pytest.mark.manual  # 7 min on 2 cores (float16 299 s, bfloat16 119 s): outside CI
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_exports(tiny_model, dtype, tmp_path):
    """Whole float16 / bfloat16 exports: every graph passes onnx.checker (full), takes and returns
    float32 (island io; the manifest says so and records the policy), and the islands of the U-Net
    and the decoder are float32 in the graph: Cos/Sin (timestep_embedding), ArgMin (quantizer),
    Floor of DSepConv's sample positions (dsepconv). float16 graphs run at a second size in ONNX
    Runtime (export_onnx checks that itself)."""
    import onnx

    from ldmvfi_fast import precision

    opset = 22 if dtype == "bfloat16" else 20  # ONNX Conv has bfloat16 from opset 22
    out = export_onnx(tiny_model, tmp_path / "e", dtype=getattr(torch, dtype), opset=opset)
    m = read_manifest(out)
    assert m["dtype"] == dtype and m["io_dtype"] == "float32" and m["precision_policy"] == precision.describe()
    for g in m["graphs"].values():
        assert {d["dtype"] for d in g["inputs"] + g["outputs"]} <= {"float32", "int64"}
    f32 = onnx.TensorProto.FLOAT
    for name in ONNX_FILES.values():
        onnx.checker.check_model(str(out / name), full_check=True)
    islands = {"unet_step.onnx": ("Cos", "Sin"), "decoder.onnx": ("ArgMin", "Floor")}
    for name, ops in islands.items():
        model = onnx.load(str(out / name))
        types = _elem_types(model)
        for op in ops:
            nodes = [n for n in model.graph.node if n.op_type == op]
            assert nodes and all(types[n.input[0]] == f32 for n in nodes), (name, op)


# ---------------------------------------------------------------- half precision: typed graphs

def _elem_types(model_proto) -> dict:
    """tensor name -> ONNX elem_type, after (strict) shape inference."""
    import onnx

    m = onnx.shape_inference.infer_shapes(model_proto, strict_mode=True)
    types = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in m.graph.initializer:
        types[init.name] = init.data_type
    return types


@pytest.fixture(scope="module", params=["float16", "bfloat16"])
def half_encoder_graph(request, tiny_model, tmp_path_factory):
    """The tiny model's encoder exported in float16 / bfloat16 (the fast graph: it holds the
    GroupNorm, LayerNorm and attention islands; the U-Net and decoder are in the manual test)."""
    import copy

    dtype = getattr(torch, request.param)
    half = copy.deepcopy(tiny_model).to(dtype)
    path = tmp_path_factory.mktemp(f"half_{request.param}") / "encoder.onnx"
    with use_backend("reference"):
        # example inputs from the float32 model (float32 either way: island io); PyTorch's CPU
        # float16 convolutions are ~200x slower, so the half model only runs inside the trace
        spec = dataclasses.replace(export_specs(tiny_model, 512, 512, max_units=4)[0], module=EncoderExport(half))
        export_graph(spec, path, opset=22 if dtype == torch.bfloat16 else 20)
        check_graph(path, spec, output_axes(spec, half.latent_factor))
    return request.param, tiny_model, path


def test_half_graph_is_typed_with_the_policy_casts(half_encoder_graph):
    """A half-precision graph computes in half (its Convs and MatMuls), keeps float32 inputs and
    outputs (island io), and feeds every Softmax, LayerNormalization and GroupNorm/InstanceNorm
    float32 tensors (islands softmax, layernorm, groupnorm): TensorRT 11 builds what it reads."""
    import onnx

    name, _, path = half_encoder_graph
    half = {"float16": onnx.TensorProto.FLOAT16, "bfloat16": onnx.TensorProto.BFLOAT16}[name]
    f32 = onnx.TensorProto.FLOAT
    m = onnx.load(str(path))
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [f32]
    assert {o.type.tensor_type.elem_type for o in m.graph.output} == {f32}
    types = _elem_types(m)
    ops = {}
    for n in m.graph.node:
        ops.setdefault(n.op_type, []).append(n)
    assert ops.get("Conv") and all(types[n.input[0]] == half for n in ops["Conv"]), "Convs must compute in half"
    for op in ("Softmax", "LayerNormalization"):
        assert ops.get(op), f"no {op} in the encoder graph"
        assert all(types[n.input[0]] == f32 for n in ops[op]), f"{op} input is not float32"
    norms = ops.get("GroupNormalization", []) + ops.get("InstanceNormalization", [])
    assert norms and all(types[n.input[0]] == f32 for n in norms), "GroupNorm statistics are not float32"
    # the score MatMul of each attention is float32, the projections half
    mm = [types[n.output[0]] for n in ops["MatMul"]]
    assert f32 in mm and half in mm
    casts = {n.attribute[0].i for n in ops["Cast"]}
    assert {f32, half} <= casts


def test_half_graph_runs_at_two_sizes(half_encoder_graph):
    """float32 buffers in and out at two sizes and batches; the values follow PyTorch's float32 model
    within half precision's error (float16's latent is ~0.3% off, 2% allowed; bfloat16's ~2-3%, 5%).
    ONNX Runtime's CPU provider runs float16 graphs (inserting its own casts where it lacks a float16
    kernel); it has no bfloat16 Conv: bfloat16 graphs are refused with NOT_IMPLEMENTED (asserted, so
    that a runtime that learns them shows up) and run in onnx.reference instead."""
    import numpy as np

    name, fp32, path = half_encoder_graph
    ort = pytest.importorskip("onnxruntime")
    try:
        run = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run
        assert name == "float16"
    except Exception as exc:  # noqa: BLE001
        assert name == "bfloat16" and "NOT_IMPLEMENTED" in str(exc), exc
        from onnx.reference import ReferenceEvaluator

        run = ReferenceEvaluator(str(path)).run
    for h, w, b in [(256, 256, 2), (256, 512, 1)]:
        spec = export_specs(fp32, h, w, batch=b, max_units=4)[0]
        feeds = {n: t.numpy() for n, t in zip(spec.input_names, spec.inputs)}
        assert all(v.dtype == np.float32 for v in feeds.values())
        got = run(None, feeds)
        with torch.no_grad():
            ref = spec.module(*spec.inputs)
        for g, r in zip(got, ref):
            assert g.dtype == np.float32 and g.shape == tuple(r.shape)
            r = r.float().numpy()
            tol = 2e-2 if name == "float16" else 5e-2
            err = float(np.abs(g - r).max()) / float(np.abs(r).max())
            assert 0 < err <= tol, (name, h, w, err)


def test_second_size_check_allows_isolated_decoder_values_only():
    """export_onnx's value check at the second size: the decoder may differ at a few isolated
    values (DSepConv's floor at a pixel edge: ONNX Runtime and PyTorch pick neighbouring corners),
    no other graph may, and more than a few values is an error."""
    import types
    from pathlib import Path

    import numpy as np

    from ldmvfi_fast.export import onnx as eo

    def spec(name):
        return types.SimpleNamespace(name=name, module=torch.nn.Identity(), inputs=(torch.zeros(1, 3, 8, 16),),
                                     output_names=["frame"], input_names=["x"], axes={})

    desc = [{"name": "frame", "dtype": "float32", "shape": [1, 3, 8, 16]}]
    got = np.zeros((1, 3, 8, 16), np.float32)
    got[0, 0, 0, 0] = 3e-3
    eo._compare(Path("decoder.onnx"), spec("decoder"), spec("decoder"), torch.float32, desc, [got], "x")
    with pytest.raises(EngineError, match="1 values beyond"):
        eo._compare(Path("encoder.onnx"), spec("encoder"), spec("encoder"), torch.float32, desc, [got], "x")
    got[0, 0, 0, :5] = 3e-3
    with pytest.raises(EngineError, match="5 values beyond"):
        eo._compare(Path("decoder.onnx"), spec("decoder"), spec("decoder"), torch.float32, desc, [got], "x")
