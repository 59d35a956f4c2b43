"""One place for each decision: the format registry, the manifest contract and its seal, the
dtype table, and the import structure (export and runtime never import each other)."""
from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from ldmvfi_fast import formats
from ldmvfi_fast.errors import EngineError, OptionError
from ldmvfi_fast.manifest import (FORMAT, FORMAT_VERSION, contract_hash, engine_facts, read_manifest,
                                  write_manifest)

PKG = Path(__file__).resolve().parents[1] / "ldmvfi_fast"


def _imports(path: Path, where: Path | None = None) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against ``where``, the
    file's place in the package, default ``path``), at any depth."""
    tree = ast.parse(path.read_text())
    here = list((where or path).relative_to(PKG.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            else:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            out |= set(names)
    return out


@pytest.mark.parametrize("src,dst", [("export", "runtime"), ("runtime", "export")])
def test_export_and_runtime_never_import_each_other(src, dst):
    bad = {}
    for f in sorted((PKG / src).rglob("*.py")):
        hits = sorted(m for m in _imports(f) if m == f"ldmvfi_fast.{dst}" or m.startswith(f"ldmvfi_fast.{dst}."))
        if hits:
            bad[str(f.relative_to(PKG))] = hits
    assert not bad, f"ldmvfi_fast.{src} imports ldmvfi_fast.{dst}: {bad}"


def test_neutral_modules_import_neither():
    for name in ("manifest.py", "formats.py", "dtypes.py", "_machine.py", "_tensorrt.py", "_atomic.py", "engine_io.py",
                 "samplers.py", "choices.py", "runtime_options.py", "jobs.py", "_digest.py"):
        hits = [m for m in _imports(PKG / name) if m.startswith(("ldmvfi_fast.export", "ldmvfi_fast.runtime"))]
        assert not hits, (name, hits)


def test_the_import_reader_sees_a_planted_cycle(tmp_path):
    """The reader above resolves relative imports: a planted ``from ..runtime import x`` is found."""
    f = PKG / "export" / "pt2.py"
    planted = tmp_path / "pt2.py"
    planted.write_text(f.read_text() + "\n\ndef late():\n    from ..runtime.exported import ExportedBackbone\n")
    assert "ldmvfi_fast.runtime.exported" in _imports(planted, where=f)
    assert "ldmvfi_fast.runtime.exported" not in _imports(f)


# ---------------------------------------------------------------------------------------------
# the registry


def test_registry_names_every_runtime_once_and_its_classes_agree():
    assert formats.RUNTIMES == tuple(formats.FORMATS)
    for fmt in formats.FORMATS.values():
        cls = fmt.backbone_class()
        if fmt.folder:
            assert cls.runtime == cls.name == fmt.runtime and cls.kind == fmt.kind
            assert fmt.exporter_function().__module__ == fmt.exporter.partition(":")[0]
    assert formats.EXPORT_FORMATS == {"pt2": "exported", "onnx": "onnxruntime", "aoti": "aoti"}
    from ldmvfi_fast.export import aoti, onnx, pt2, tensorrt

    assert (pt2.FORMAT_RUNTIME, onnx.FORMAT_RUNTIME, aoti.FORMAT.runtime, tensorrt.FORMAT.runtime) == (
        "exported", "onnxruntime", "aoti", "tensorrt")


def test_cli_choices_come_from_the_tables():
    from ldmvfi_fast import dtypes
    from ldmvfi_fast.cli import _parser

    p = _parser()
    sub = next(a for a in p._actions if a.dest == "command").choices
    acts = {a.dest: a for a in sub["interpolate"]._actions}
    assert tuple(acts["runtime"].choices) == formats.RUNTIMES
    assert set(acts["dtype"].choices) == set(dtypes.ALIASES)
    ex = {a.dest: a for a in sub["export"]._actions}
    assert tuple(ex["format"].choices) == tuple(formats.EXPORT_FORMATS)


def test_runtime_options_parse_into_the_runtime_dataclass():
    from ldmvfi_fast.runtime_options import OrtOptions

    o = formats.parse_options("onnxruntime", ["opt=basic", "threads=2", "spin=0"])
    assert o == OrtOptions(opt="basic", threads=2, spin=False)
    assert formats.parse_options("onnxruntime", "opt=all+inter=1") == OrtOptions(opt="all", inter=1)
    assert formats.parse_options("onnxruntime", None) is None
    with pytest.raises(OptionError, match="unknown option 'fast' for runtime onnxruntime"):
        formats.parse_options("onnxruntime", ["fast=1"])
    with pytest.raises(OptionError, match="opt='max'"):
        formats.parse_options("onnxruntime", ["opt=max"])
    with pytest.raises(OptionError, match="takes no options"):
        formats.parse_options("exported", ["threads=2"])
    with pytest.raises(OptionError, match="runtime must be one of"):
        formats.get("tflite")
    assert formats.parse_options("tensorrt", ["cuda_graphs=0"]).cuda_graphs is False


# ---------------------------------------------------------------------------------------------
# the manifest contract


def _manifest(**kw) -> dict:
    m = {"format": FORMAT, "format_version": FORMAT_VERSION, "toolkit_version": "0", "runtime": "exported",
         "config": {}, "pad_unit": 256, "latent_factor": 32, "latent_channels": 3, "prediction": "eps",
         "alphas_cumprod": [0.99, 0.5, 0.01], "weights_hash": "sha256:0", "dtype": "float32", "op_backend": "auto",
         "graphs": {g: {"file": f"{g}.pt2", "inputs": [], "outputs": []} for g in ("encoder", "unet_step", "decoder")},
         "sizes": {"min_height": 256, "min_width": 256, "max_height": 4096, "max_width": 4096, "multiple": 256,
                   "max_batch": 8}}
    m.update(kw)
    return m


@pytest.mark.parametrize("field,value", [("prediction", "v"), ("pad_unit", 128), ("alphas_cumprod", [0.9, 0.5, 0.1]),
                                         ("latent_channels", 4), ("dtype", "bfloat16"), ("device", "cuda")])
def test_a_hand_edited_manifest_is_refused(tmp_path, field, value):
    write_manifest(tmp_path, _manifest(device="cpu"))
    m = read_manifest(tmp_path)
    assert m["contract_hash"] == contract_hash(m)
    m[field] = value
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="integrity hash"):
        read_manifest(tmp_path)


def test_an_older_format_without_the_seal_is_refused(tmp_path):
    m = _manifest(format_version=1)
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="older ldmvfi_fast and carries no integrity hash"):
        read_manifest(tmp_path)


def test_engine_facts_is_the_one_reader(tmp_path):
    write_manifest(tmp_path, _manifest(prediction="v", distillation={"method": "progressive", "steps": 4}))
    f = engine_facts(read_manifest(tmp_path))
    assert (f.prediction, f.pad_unit, f.alphas_cumprod, f.distillation["steps"]) == ("v", 256, (0.99, 0.5, 0.01), 4)


def test_edited_prediction_is_refused_by_the_command_line(tiny_engines, tmp_path, capsys):
    """The reported defect: ``"prediction": "v"`` edited into a manifest ran and gave frames 174/255 off."""
    import numpy as np

    from ldmvfi_fast.cli import main
    from ldmvfi_fast.video import write_image

    d = tmp_path / "engines"
    shutil.copytree(tiny_engines, d)
    m = json.loads((d / "manifest.json").read_text())
    m["prediction"] = "v"
    (d / "manifest.json").write_text(json.dumps(m))
    a = np.zeros((64, 64, 3), np.uint8)
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", a + 10)
    out = tmp_path / "mid.png"
    rc = main(["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out), "--runtime",
               "exported", "--engines", str(d), "--steps", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "integrity hash" in err and err.count("\n") == 1, err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# dtypes


def test_dtype_names_come_from_one_table():
    import torch

    from ldmvfi_fast import dtypes
    from ldmvfi_fast.checkpoint import DTYPE_NAMES
    from ldmvfi_fast.export.tensorrt import PRECISION_DTYPES, PRECISIONS

    assert {k: str(v).removeprefix("torch.") for k, v in DTYPE_NAMES.items()} == dtypes.ALIASES
    assert PRECISIONS == tuple(dtypes.SHORT.values()) and PRECISION_DTYPES == {v: k for k, v in dtypes.SHORT.items()}
    assert dtypes.to_torch("bf16") is torch.bfloat16 and dtypes.canonical(torch.float16) == "float16"
    with pytest.raises(OptionError, match="unsupported dtype"):
        dtypes.canonical("int8")


def test_engine_dtype_mismatch_is_refused_before_loading(tiny_engines, tmp_path, capsys, monkeypatch):
    """The reported defect: ``--dtype float16`` with float32 engines on CPU loaded for 21 s and then
    said "export them again for float16" (impossible on the CPU). The folder's dtype is used:
    another one is refused at once, saying why re-exporting would not help here."""
    import numpy as np

    import ldmvfi_fast.runtime as runtime
    from ldmvfi_fast.cli import main
    from ldmvfi_fast.video import write_image

    def no_load(*a, **k):
        raise AssertionError("the engines were loaded before the dtype was checked")

    monkeypatch.setattr(runtime, "load_backbone", no_load)
    a = np.zeros((64, 64, 3), np.uint8)
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", a)
    argv = ["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "m.png"),
            "--runtime", "exported", "--engines", str(tiny_engines), "--device", "cpu"]
    assert main(argv + ["--dtype", "float16"]) == 2
    err = capsys.readouterr().err
    assert "float32" in err and "cannot run here" in err and "export them again" not in err, err
    assert main(argv + ["--dtype", "bfloat16"]) == 2  # would run here: re-exporting is the way
    assert "export them again in bfloat16" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["interpolate", "--help"], ["export", "--help"], ["distill", "--help"],
                                  ["clip"], ["interpolate", "a.png", "b.png", "-o", "m.png", "--steps", "0"],
                                  ["interpolate", "a.png", "b.png", "-o", "m.png", "--sampler", "ddpm", "--steps", "4"]])
def test_help_clip_and_option_errors_do_not_import_torch(argv, tmp_path):
    """``ldmvfi-fast --help`` took ~2 s, almost all importing torch: the parser, ``clip`` and the option
    checks run on torch-free tables (formats, dtypes, choices, samplers)."""
    import subprocess
    import sys

    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")  # exist: the option check comes next
    code = ("import sys; from ldmvfi_fast.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', rc, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "NOTORCH" in p.stderr, p.stderr[-2000:]
    if "--steps" in argv:
        assert "error: " in p.stderr and " 2" in p.stderr.splitlines()[-1]
