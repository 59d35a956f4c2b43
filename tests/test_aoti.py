"""AOTInductor packages: the torch.export programs of the tiny model (the session's ``tiny_engines``)
and of a second config with other widths (``wide_engines``) compiled with ``export/build_aoti.py
--engines --jobs 2``; each sub-model matches its PyTorch module at two sizes (one non-square) and
two batches; the pipeline through :class:`AotiBackbone` gives the PyTorch pipeline's frames at two
sizes; the manifest; bad input.

Compiling the three sub-models takes minutes on 2 CPU cores (once per session and config: the
tests that need them are ``slow``, run by CI's acceptance stage)."""
from __future__ import annotations

import pytest
import torch
from _shared import export_script

from ldmvfi_fast.errors import EngineError, LdmvfiError
from ldmvfi_fast._machine import isa_flags, machine_info
from ldmvfi_fast.export.aoti import AOTI_FILES, build_aoti
from ldmvfi_fast.manifest import read_manifest, weights_hash, write_manifest
from ldmvfi_fast.pipeline import Interpolator
from ldmvfi_fast.runtime import Backbone
from ldmvfi_fast.runtime.aoti import AotiBackbone
from ldmvfi_fast.runtime.exported import ExportedBackbone



@pytest.fixture(scope="module")
def aoti_dir(tiny_aoti):
    """The session's torch.export folder compiled by the user script (``--engines``, ``--jobs 2``)."""
    return tiny_aoti


@pytest.fixture(scope="module")
def aoti(aoti_dir):
    return AotiBackbone.from_dir(aoti_dir)


@pytest.mark.slow  # needs the compiled packages (minutes on 2 cores)
def test_backbone_satisfies_the_protocol(aoti):
    assert isinstance(aoti, Backbone) and aoti.name == "aoti" and aoti.device == torch.device("cpu")


@pytest.mark.slow  # needs the compiled packages (minutes on 2 cores)
@pytest.mark.parametrize("hw,batch", [((480, 500), 2), ((700, 300), 1)])
def test_pipeline_same_frames_from_model_and_aoti_packages(tiny_model, aoti, hw, batch):
    """Padded to 512x512 (batch 2) and 768x512 (non-square, batch 1): neither is the example
    size of the export (512x768, batch 2), so a size frozen by the compiler would show."""
    g = torch.Generator().manual_seed(7)
    f0 = torch.rand(batch, 3, *hw, generator=g) * 2 - 1
    f1 = torch.rand(batch, 3, *hw, generator=g) * 2 - 1
    eager = Interpolator(tiny_model, steps=2, padding="minimal")
    it = Interpolator(aoti, steps=2, padding="minimal")
    assert it.model is None and it.backbone.name == "aoti"
    a = eager.interpolate(f0, f1, seed=3)
    b = it.interpolate(f0, f1, seed=3)
    assert b.shape == a.shape == (batch, 3, *hw)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    assert (a - f0).abs().mean() > 0.01  # a real interpolation, not a pass-through


#: (height, width, batch) other than the export example (512x768, batch 2): one non-square, both
#: with a side of one 256-pixel unit (as the ONNX tests)
SIZES = [(256, 256, 3), (512, 256, 1)]


@pytest.mark.slow  # needs the compiled packages (minutes on 2 cores)
@pytest.mark.parametrize("config", ["tiny", "wide"])
def test_sub_models_match_pytorch(request, config):
    """encoder (latent + 5 feature levels), U-Net step (eps) and decoder (image) from the AOTI
    packages vs the PyTorch modules, within 1e-4, at sizes and batches none the example's."""
    from ldmvfi_fast.export.specs import export_specs

    if config == "tiny":
        model, folder = request.getfixturevalue("tiny_model"), request.getfixturevalue("tiny_aoti")
    else:
        model, folder = request.getfixturevalue("wide_model"), request.getfixturevalue("wide_aoti")
    bb = AotiBackbone.from_dir(folder)
    assert bb.manifest["config"]["name"] == config and bb.manifest["weights_hash"] == weights_hash(model)
    compared = 0
    for h, w, b in SIZES:
        for spec in export_specs(model, h, w, batch=b):
            with torch.no_grad():
                ref = spec.module(*spec.inputs)
                got = bb._mods[spec.name](*spec.inputs)
            ref = ref if isinstance(ref, (tuple, list)) else (ref,)
            got = got if isinstance(got, (tuple, list)) else (got,)
            assert len(got) == len(ref) == len(spec.output_names)
            for name, g, r in zip(spec.output_names, got, ref):
                assert g.shape == r.shape, (spec.name, name, h, w, b)
                torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4,
                                           msg=lambda m, s=f"{spec.name}.{name} at {h}x{w} b{b}": f"{s}: {m}")
                compared += 1
    assert compared == len(SIZES) * (1 + 5 + 1 + 1)  # z + phi0..4, eps, frame


@pytest.mark.slow  # needs the compiled packages (minutes on 2 cores)
def test_manifest_describes_the_packages(tiny_model, tiny_engines, aoti_dir):
    m, src = read_manifest(aoti_dir), read_manifest(tiny_engines)
    assert m["runtime"] == "aoti" and m["device"] == "cpu"
    assert m["weights_hash"] == src["weights_hash"] == weights_hash(tiny_model)
    assert m["sizes"] == src["sizes"] and m["alphas_cumprod"] == src["alphas_cumprod"]
    assert {k: g["inputs"] for k, g in m["graphs"].items()} == {k: g["inputs"] for k, g in src["graphs"].items()}
    assert {k: g["file"] for k, g in m["graphs"].items()} == AOTI_FILES
    # the compiled op stays a call into ldmvfi_fast._C (AOTI's proxy executor), and is listed
    assert set(m["aoti"]["proxy_executor_ops"]) <= set(m["custom_ops"])
    if src["custom_ops"]:
        assert m["aoti"]["proxy_executor_ops"], "custom ops of the programs vanished from the packages"
    built = m["aoti"]["build_machine"]
    assert built["isa_flags"] == isa_flags() and built["machine"] and built["vec_isa"]
    assert set(m["aoti"]["compile_seconds"]) == set(AOTI_FILES)
    assert m["aoti"]["source"] == {"kind": "engines", "folder": str(tiny_engines.resolve())}
    # the DDIM coefficient tables the C++ application reads (export/cpp)
    assert m["ddim"]["etas"] == [0.0, 1.0] and {"2", "200"} <= set(m["ddim"]["schedules"])


@pytest.mark.slow  # needs the compiled packages (minutes on 2 cores)
def test_load_backbone_aoti_checks_weights(aoti_dir, tiny_ckpt):
    from ldmvfi_fast.runtime import load_backbone

    bb = load_backbone("aoti", engines=aoti_dir, ckpt=tiny_ckpt)
    assert isinstance(bb, AotiBackbone)


# --- bad input: all fail before any compile or load (no compiled packages needed; ``fake_aoti``:
# conftest) -----------------------------------------------------------------------------------

def test_non_empty_output_without_overwrite_is_refused(tiny_engines, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(EngineError, match="not empty"):
        build_aoti(tiny_engines, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_source_that_is_not_an_export_folder_is_refused(tmp_path, fake_aoti):
    with pytest.raises(EngineError, match="not found"):
        build_aoti(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(EngineError, match="no manifest.json"):
        build_aoti(tmp_path, tmp_path / "out")
    with pytest.raises(EngineError, match="not exported engines"):  # an AOTI folder is not a source
        build_aoti(fake_aoti, tmp_path / "out")
    with pytest.raises(EngineError, match="is the source"):
        build_aoti(fake_aoti, fake_aoti, overwrite=True)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_missing_package_file_is_refused(fake_aoti):
    (fake_aoti / AOTI_FILES["decoder"]).unlink()
    with pytest.raises(EngineError, match="engine file missing.*decoder.pt2"):
        AotiBackbone.from_dir(fake_aoti)


def test_unreadable_package_is_refused(fake_aoti):
    with pytest.raises(EngineError, match="cannot load .*encoder.pt2"):
        AotiBackbone.from_dir(fake_aoti)


def test_wrong_runtime_device_weights_or_processor_is_refused(fake_aoti, tiny_engines):
    with pytest.raises(EngineError, match="not AOTInductor packages"):
        AotiBackbone.from_dir(tiny_engines)
    with pytest.raises(EngineError, match="not exported engines"):
        ExportedBackbone.from_dir(fake_aoti)
    with pytest.raises(EngineError, match="compiled for cpu, not cuda"):
        AotiBackbone.from_dir(fake_aoti, device="cuda")
    with pytest.raises(EngineError, match="other weights"):
        AotiBackbone.from_dir(fake_aoti, expect_weights_hash="sha256:" + "0" * 64)
    m = read_manifest(fake_aoti)
    m["aoti"]["build_machine"]["machine"] = "sparc64"
    write_manifest(fake_aoti, m)  # sealed again: the build machine is what is refused, not an edit
    with pytest.raises(EngineError, match="compiled for sparc64"):
        AotiBackbone.from_dir(fake_aoti)
    if not isa_flags():
        pytest.skip("no /proc/cpuinfo flags on this machine: the instruction-set check is off")
    m["aoti"]["build_machine"].update(machine=machine_info()["machine"])
    m["aoti"]["build_machine"]["isa_flags"].append("avx1024_imaginary")
    write_manifest(fake_aoti, m)
    with pytest.raises(EngineError, match="avx1024_imaginary"):
        AotiBackbone.from_dir(fake_aoti)


def _script():
    return export_script("build_aoti")


def test_script_user_errors_exit_2_with_one_line(tiny_engines, tmp_path, capsys):
    main = _script().main
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("")
    assert main(["--engines", str(tiny_engines), "--out", str(out)]) == 2
    assert main(["--engines", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert main(["--engines", str(tiny_engines), "--out", str(tmp_path / "o3"), "--device", "tpu"]) == 2
    assert main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err), err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()
    with pytest.raises(SystemExit):  # argparse: one of --ckpt / --engines
        main(["--out", str(tmp_path / "o5")])
    with pytest.raises(SystemExit):
        main(["--engines", str(tiny_engines), "--out", str(tmp_path / "o6"), "--jobs", "0"])
    assert not (tmp_path / "o5").exists() and not (tmp_path / "o6").exists()


def test_errors_are_user_errors():
    assert issubclass(EngineError, LdmvfiError)
