"""``benchmarks/latency.py --runtime ...``: variants, engine cache, JSON fields, memory, errors.

Timings are never asserted (speed is measured by running the benchmark, not by tests).
Default suite: the option parsing and its errors, the difference and memory helpers, and a
whole run of ``--runtime torch,exported`` on the tiny model (torch.export programs are quick
to build) whose JSON is checked field by field, plus the engine cache (reused, never
deleted, a foreign folder refused). ``slow``: ``--runtime torch,onnxruntime`` on the tiny
model (the ONNX export of the decoder takes minutes on 2 cores) and the official preset's
ONNX export run at 256x448.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

STAGES = ["encode (1 frame)", "unet step", "decode", "interpolate (1 steps)"]


def _run(latency, tmp_path, *extra) -> tuple[int, dict | None]:
    out = tmp_path / "r.json"
    rc = latency.main(["--config", "tiny", "--steps", "1", "--repeats", "1", "--warmup", "1", "--quiet",
                       "--out", str(out), *extra])
    return rc, (json.loads(out.read_text()) if out.is_file() else None)


def test_variants_and_their_errors(latency):
    from ldmvfi_fast.errors import OptionError

    vs = latency.parse_variants("torch,onnxruntime,aoti", "auto")
    assert [v["name"] for v in vs] == ["torch", "onnxruntime", "aoti"]
    vs = latency.parse_variants("torch,onnxruntime:opt=basic+threads=2", "auto,reference")
    assert [v["name"] for v in vs] == ["torch[ops=auto]", "torch[ops=reference]", "onnxruntime:opt=basic+threads=2"]
    assert vs[2]["options"] == {"opt": "basic", "threads": 2}  # typed by the runtime's options class
    for bad, words in [("torch,tensorflow", "unknown runtime 'tensorflow'"), ("torch:opt=basic", "takes no options"),
                       ("onnxruntime:opt=max", "opt='max'"), ("onnxruntime:threads=x", "threads='x'"),
                       ("torch,torch", "listed twice"), (",", "no runtime")]:
        with pytest.raises(OptionError, match=words.replace("(", r"\(").replace("[", r"\[")):
            latency.parse_variants(bad, "auto")
    with pytest.raises(OptionError, match="backend"):
        latency.parse_variants("torch", "fast")


def test_command_line_errors_exit_2_with_one_line(latency, tmp_path, capsys, monkeypatch):
    rc, report = _run(latency, tmp_path, "--runtime", "torch,tensorrt")
    err = capsys.readouterr().err
    assert rc == 2 and report is None
    assert err.count("\n") == 1 and "unknown runtime 'tensorrt'" in err and "onnxruntime" in err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    rc, report = _run(latency, tmp_path, "--runtime", "torch,onnxruntime")
    err = capsys.readouterr().err
    assert rc == 2 and report is None and "pip install onnxruntime" in err and "Traceback" not in err


def test_max_diff_covers_every_output(latency):
    from ldmvfi_fast.pipeline import Encoded

    z, phi = torch.zeros(1, 3, 2, 2), [torch.zeros(1, 4, 8, 8), torch.zeros(1, 8, 4, 4)]
    other = [p.clone() for p in phi]
    other[1][0, 0, 0, 0] = 0.25
    a, b = Encoded(torch.zeros(1, 3, 8, 8), z, phi, (8, 8)), Encoded(torch.zeros(1, 3, 8, 8), z.clone(), other, (8, 8))
    assert latency._max_diff(a, b) == 0.25
    assert latency._max_diff(torch.ones(3), torch.zeros(3)) == 1.0


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_rss_is_reset_between_stages(benchmarks):
    from _common import peak_rss_mib, release_memory, reset_peak_rss, rss_mib  # benchmarks/ is on sys.path
    big = bytearray(300 * 2 ** 20)
    big[::4096] = b"\1" * len(big[::4096])  # resident
    assert peak_rss_mib() - rss_mib() > -1
    del big
    release_memory()
    assert reset_peak_rss()
    before = rss_mib()
    assert peak_rss_mib() < before + 50  # the 300 MiB of the earlier "stage" is forgotten
    big = bytearray(100 * 2 ** 20)
    big[::4096] = b"\1" * len(big[::4096])
    assert peak_rss_mib() - before > 90
    del big


def test_torch_json_and_memory(latency, tmp_path, capsys):
    rc, r = _run(latency, tmp_path, "--height", "200", "--width", "250")
    out = capsys.readouterr().out
    assert rc == 0
    m = r["meta"]
    for k in ("date", "commit", "git", "command", "device", "machine", "torch", "threads", "load_average_1_5_15min",
              "memory_method"):
        assert k in m
    assert m["command"].startswith("benchmarks/") and "--config tiny" in m["command"]
    assert m["backends"] == ["torch"] and m["baseline"] == "torch" and m["engines"] == {}
    assert m["padded_hw"] == [256, 256] and m["input_hw"] == [200, 250] and m["config"] == "tiny"
    assert list(r["results"]) == STAGES
    for s in STAGES:
        c = r["results"][s]["torch"]
        assert c["repeats"] == 1 and len(c["raw_ms"]) == 1 and c["median_ms"] > 0 and c["iqr_ms"] == 0
        assert c["max_abs_diff"] == 0.0 and c["ratio_vs_torch"] == 1.0
    mem = r["memory"]["torch"]
    for stage in ("load", "encode (1 frame)", "unet step", "decode"):
        assert mem[stage]["peak_mib"] >= mem[stage]["rss_before_mib"] > 0, stage
    assert mem["load"]["extra_mib"] > 1  # the model's weights became resident
    assert "| decode |" in out and "Peak resident memory" in out


class _Skewed:
    """A stand-in engine: the eager model, with one decoded value off by 0.5."""

    def __init__(self, bb):
        self.bb = bb
        for k in ("device", "dtype", "pad_unit", "latent_factor", "latent_channels", "alphas_cumprod", "prediction",
                  "check_size", "encode", "denoise"):
            setattr(self, k, getattr(bb, k))
        self.name = "skewed"

    def decode(self, *a):
        out = self.bb.decode(*a).clone()
        out[0, 0, 0, 0] += 0.5
        return out


@pytest.fixture
def stand_in_engines(latency, monkeypatch):
    """Engine builds replaced by a manifest-only folder and the 'exported' runtime by :class:`_Skewed`
    (a real build takes minutes: see the slow tests)."""
    builds = []

    def build(runtime, model, folder, device):
        builds.append(folder)
        folder.mkdir()
        (folder / "manifest.json").write_text("{}")
        return {"runtime": runtime, "build_s": 0.0, "graphs": {"decoder": {"size_mb": 1.0}}}

    real = latency.load_variant

    def load(v, model, folder, device, whash):
        if v["runtime"] == "exported":
            assert folder in builds or folder.parent == builds[0].parent
            return _Skewed(real(dict(v, runtime="torch"), model, None, device, whash))
        return real(v, model, folder, device, whash)
    monkeypatch.setattr(latency, "_build", build)
    monkeypatch.setattr(latency, "load_variant", load)
    return builds


def test_engine_runtimes_diff_column(latency, tmp_path, capsys, stand_in_engines):
    cache = tmp_path / "cache"
    rc, r = _run(latency, tmp_path, "--runtime", "torch,exported", "--height", "256", "--width", "256",
                 "--engines-cache", str(cache), "--no-memory")
    assert rc == 0, capsys.readouterr().err
    res = r["results"]
    assert [res[s]["exported"]["max_abs_diff"] for s in STAGES[:3]] == [0.0, 0.0, 0.5]  # the column sees the bug
    assert res[STAGES[3]]["exported"]["max_abs_diff"] > 0
    assert all(res[s]["exported"]["ratio_vs_torch"] > 0 for s in STAGES)
    eng = r["meta"]["engines"]["exported"]
    assert not eng["reused"] and Path(eng["folder"]).parent == cache and eng["graphs"]["decoder"]["size_mb"] == 1.0
    assert "| stage | torch | exported |" in capsys.readouterr().out


def test_engine_cache_reuses_flags_and_never_deletes(latency, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ldmvfi_fast.errors import EngineError

    built = []

    def build(runtime, model, folder, device):
        built.append(folder)
        folder.mkdir()
        (folder / "manifest.json").write_text("{}")
        return {"runtime": runtime, "build_s": 1.5, "graphs": {}}
    monkeypatch.setattr(latency, "_build", build)
    monkeypatch.setattr(latency, "source_hash", lambda: "src1")
    model = SimpleNamespace(cfg=SimpleNamespace(name="tiny"), parameters=lambda: iter([torch.zeros(1)]))
    cache, cpu = tmp_path / "cache", torch.device("cpu")
    folder, facts = latency.engines_for("onnxruntime", model, cpu, cache, "sha256:abc")
    assert folder.parent == cache and "tiny-onnxruntime-float32-cpu" in folder.name and not facts["reused"]
    listing = sorted(p.name for p in cache.iterdir())
    assert len(listing) == 2  # the engine folder and its build facts
    again, facts = latency.engines_for("onnxruntime", model, cpu, cache, "sha256:abc")
    assert again == folder and facts["reused"] and not facts["stale_source"] and facts["build_s"] == 1.5
    monkeypatch.setattr(latency, "source_hash", lambda: "src2")  # the model/op/export code changed since
    _, facts = latency.engines_for("onnxruntime", model, cpu, cache, "sha256:abc")
    assert facts["reused"] and facts["stale_source"] and len(built) == 1
    other, _ = latency.engines_for("onnxruntime", model, cpu, cache, "sha256:def")  # other weights: other folder
    assert other != folder and len(built) == 2
    foreign = cache / latency.engine_key("aoti", model, cpu, "sha256:abc")
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    with pytest.raises(EngineError, match="holds no manifest.json"):
        latency.engines_for("aoti", model, cpu, cache, "sha256:abc")
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"] and len(built) == 2
    assert set(listing) <= {p.name for p in cache.iterdir()}


# ---------------------------------------------------------------------------------- slow


@pytest.mark.manual  # torch.export of the tiny model: 3 min on 2 cores; out of CI to keep it under 60 min
def test_torch_and_exported_runtimes_json(latency, tmp_path):
    rc, r = _run(latency, tmp_path, "--runtime", "torch,exported", "--height", "500", "--width", "300",
                 "--padding", "minimal", "--engines-cache", str(tmp_path / "cache"))
    assert rc == 0 and r["meta"]["padded_hw"] == [512, 512]
    for s in STAGES:
        assert r["results"][s]["exported"]["max_abs_diff"] < 1e-4, s
    eng = r["meta"]["engines"]["exported"]
    assert set(eng["graphs"]) == {"encoder", "unet_step", "decoder"}
    assert all(g["size_mb"] > 0 and g["torch_export_s"] > 0 for g in eng["graphs"].values())
    assert r["memory"]["exported"]["decode"]["peak_mib"] > 0


@pytest.mark.manual  # the tiny decoder's ONNX export: 6 min on 2 cores; out of CI to keep it under 60 min
def test_torch_and_onnxruntime_runtimes_json(latency, tmp_path):
    rc, r = _run(latency, tmp_path, "--runtime", "torch,onnxruntime,onnxruntime:opt=basic+threads=1", "--height",
                 "512", "--width", "512", "--engines-cache", str(tmp_path / "cache"), "--profile-decoder")
    assert rc == 0
    assert r["meta"]["ort_session_options"]["onnxruntime:opt=basic+threads=1"] == {"opt": "basic", "threads": 1}  # typed by OrtOptions
    eng = r["meta"]["engines"]["onnxruntime"]
    for g in eng["graphs"].values():
        assert g["size_mb"] > 0 and g["export_s"] > 0 and "check_s" in g
    for s, row in r["results"].items():
        assert row["onnxruntime"]["max_abs_diff"] < 1e-3, s
    assert r["memory"]["onnxruntime"]["decode"]["peak_mib"] > 0
    prof = r["profile"]
    assert prof["torch"]["top"] and prof["onnxruntime"]["top_ops"]
    assert abs(sum(o["share"] for o in prof["onnxruntime"]["top_ops"]) - 1) < 0.5


@pytest.mark.manual  # the official preset's export: tens of minutes on 2 cores (outside CI)
def test_official_preset_exports_and_runs_on_onnxruntime_at_256x448(tmp_path):
    from _shared import random_model
    from ldmvfi_fast.export.onnx import export_onnx
    from ldmvfi_fast.pipeline import Interpolator
    from ldmvfi_fast.runtime.onnxruntime import OrtBackbone

    model = random_model("official", init="default", requires_grad=False)  # seed 0, the default initialisation
    folder = export_onnx(model, tmp_path / "onnx")
    ort = Interpolator(OrtBackbone.from_dir(folder), steps=2)
    eager = Interpolator(model, steps=2)
    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.rand(1, 3, 256, 448, generator=g) * 2 - 1, torch.rand(1, 3, 256, 448, generator=g) * 2 - 1
    with torch.inference_mode():
        got, want = ort.interpolate(f0, f1, seed=1), eager.interpolate(f0, f1, seed=1)
    assert got.shape == (1, 3, 256, 448)
    assert (got - want).abs().max().item() < 1e-3


def test_dtypes_to_time(latency):
    assert latency.bench_dtypes("bfloat16", None) == ["float32", "bfloat16"]  # the reference is on for half types
    assert latency.bench_dtypes("float16", None) == ["float32", "float16"]
    assert latency.bench_dtypes("float32", None) == ["float32"]
    assert latency.bench_dtypes("bfloat16", "none") == ["bfloat16"]
    assert latency.bench_dtypes("bfloat16", "bfloat16") == ["bfloat16"]
    vs = latency.with_dtypes(latency.parse_variants("torch,onnxruntime", "auto"), ["float32", "bfloat16"])
    assert [(v["name"], v["base_name"], v["dtype"]) for v in vs] == [
        ("torch float32", "torch", "float32"), ("torch bfloat16", "torch", "bfloat16"),
        ("onnxruntime float32", "onnxruntime", "float32"), ("onnxruntime bfloat16", "onnxruntime", "bfloat16")]


def test_bfloat16_against_float32_in_one_run(latency, tmp_path, capsys):
    rc, r = _run(latency, tmp_path, "--height", "256", "--width", "256", "--dtype", "bfloat16", "--no-memory",
                 "--peer", "rife")  # RIFE: the cached weights or random ones, timed in both dtypes
    out = capsys.readouterr().out
    assert rc == 0
    m = r["meta"]
    assert m["dtypes"] == ["float32", "bfloat16"] and m["compare_dtype"] == "float32" and m["unsupported"] == {}
    assert m["backends"] == ["torch float32", "torch bfloat16"] and m["baseline"] == "torch float32"
    sp = r["speedup_vs_float32"]["torch bfloat16"]
    for s in STAGES:
        ref, half = r["results"][s]["torch float32"], r["results"][s]["torch bfloat16"]
        assert half["speedup_vs_float32"] == pytest.approx(ref["median_ms"] / half["median_ms"]) == sp[s]
        assert "speedup_vs_float32" not in ref
        assert 0 < half["max_abs_diff"] < 0.5, s  # bfloat16's rounding, not another computation
    assert "bfloat16 vs float32, same runtime, same run" in out and "| stage | torch bfloat16 |" in out
    peer, whole = r["peer"], r["results"][STAGES[3]]
    assert list(peer["results"]) == ["rife float32", "rife bfloat16"]
    for n, d in (("torch float32", "float32"), ("torch bfloat16", "bfloat16")):  # each against RIFE in its dtype
        assert peer["ratio_vs_rife"][n] == whole[n]["ratio_vs_rife"] == pytest.approx(
            whole[n]["median_ms"] / peer["median_ms"][d])


def test_half_engine_that_fails_is_reported_not_supported(latency, tmp_path, capsys, monkeypatch):
    """A half-precision engine a runtime cannot build is a 'not supported' row; float32 failures still raise."""
    from ldmvfi_fast.errors import EngineError

    def build(runtime, model, folder, device):
        if next(model.parameters()).dtype != torch.float32:
            raise EngineError("no bfloat16 Conv kernel here")
        folder.mkdir()
        (folder / "manifest.json").write_text("{}")
        return {"runtime": runtime, "build_s": 0.0, "graphs": {}}

    real = latency.load_variant
    monkeypatch.setattr(latency, "_build", build)
    monkeypatch.setattr(latency, "load_variant", lambda v, model, folder, device, whash: real(
        dict(v, runtime="torch"), model, None, device, whash))
    rc, r = _run(latency, tmp_path, "--runtime", "torch,exported", "--height", "256", "--width", "256", "--dtype",
                 "bfloat16", "--no-memory", "--engines-cache", str(tmp_path / "cache"))
    out = capsys.readouterr().out
    assert rc == 0
    why = r["meta"]["unsupported"]["exported bfloat16"]
    assert "no bfloat16 Conv kernel here" in why
    assert all(r["results"][s]["exported bfloat16"] == {"unsupported": why} for s in STAGES)
    assert all(r["results"][s]["exported float32"]["median_ms"] > 0 for s in STAGES)
    assert "- exported bfloat16: not supported: build: EngineError: no bfloat16 Conv kernel here" in out
    assert "exported bfloat16" not in r["speedup_vs_float32"] and "torch bfloat16" in r["speedup_vs_float32"]


def test_float16_on_cpu_is_refused_with_one_line(latency, tmp_path, capsys):
    rc, report = _run(latency, tmp_path, "--dtype", "float16", "--device", "cpu")
    err = capsys.readouterr().err
    assert rc == 2 and report is None and err.count("\n") == 1 and "float16 on cpu is not supported" in err


def test_peer_rife_in_the_same_run(latency, benchmarks, tmp_path, capsys):
    """``--peer rife``: RIFE (random weights from a file here) timed on the same frames, and the whole
    interpolation divided by RIFE's time (both dtypes: test_bfloat16_against_float32_in_one_run)."""
    rife = benchmarks("peers.rife")
    torch.manual_seed(0)
    weights = tmp_path / "rife.pkl"
    torch.save(rife.IFNet().state_dict(), weights)
    rc, r = _run(latency, tmp_path, "--height", "200", "--width", "250", "--no-memory", "--peer", "rife",
                 "--rife-weights", str(weights))
    out = capsys.readouterr().out
    assert rc == 0
    peer, whole = r["peer"], r["results"][STAGES[3]]
    assert r["meta"]["peer"] == "rife" and peer["weights"] == str(weights) and peer["padded_hw"] == [256, 256]
    assert list(peer["median_ms"]) == ["float32"] and list(peer["results"]) == ["rife"]
    assert peer["median_ms"]["float32"] > 0 and len(peer["results"]["rife"]["raw_ms"]) == 1
    ratio = whole["torch"]["median_ms"] / peer["median_ms"]["float32"]
    assert whole["torch"]["ratio_vs_rife"] == pytest.approx(ratio)
    assert peer["ratio_vs_rife"] == {"torch": whole["torch"]["ratio_vs_rife"]}
    assert "ratio_vs_rife" not in r["results"][STAGES[0]]["torch"]  # the whole interpolation only
    assert "| variant | LDMVFI interpolate (1 steps) | RIFE | LDMVFI / RIFE |" in out
    assert "| torch |" in out.split("Peer: RIFE")[1]
    # a foreign weights file fails at once, in one line; --rife-weights alone is refused
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "foreign.pkl")
    rc, _ = _run(latency, tmp_path, "--peer", "rife", "--rife-weights", str(tmp_path / "foreign.pkl"), "--no-memory")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "not Practical-RIFE 4.25-style IFNet weights" in err
    with pytest.raises(SystemExit) as ei:
        _run(latency, tmp_path, "--rife-weights", str(weights))
    assert ei.value.code == 2 and "--rife-weights needs --peer rife" in capsys.readouterr().err
