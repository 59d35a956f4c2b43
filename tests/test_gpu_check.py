"""benchmarks/gpu_check.sh and its sanitizer driver, on a machine without a GPU.

The script's dry mode (forced with --dry-run, automatic without CUDA) lists every step's command
and exits 0; the driver lists its cases without a GPU and runs them on the CPU (native CPU
kernels against the reference) so that its inputs and comparisons are checked here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
DRIVER = REPO / "benchmarks" / "gpu_check_driver.py"
STEPS = ["env", "build", "pytest_cuda", "memcheck", "racecheck", "initcheck", "memcheck_big", "bench_ops", "kernels",
         "compile", "precision", "latency_half"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _sh(*args, env=None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], check=False, capture_output=True, text=True, timeout=120, cwd=REPO, env=e)


def _dry_steps(out: str) -> dict[str, str]:
    return {line.split()[1]: line for line in out.splitlines() if line.startswith("[dry-run] ")}


def test_dry_run_lists_every_step(tmp_path):
    r = _sh("--dry-run", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    steps = _dry_steps(r.stdout)
    assert list(steps) == STEPS
    assert "setup.py build_ext --inplace" in steps["build"] and "pip" not in steps["build"]
    assert "-m pytest -m cuda" in steps["pytest_cuda"]
    for name, tool in (("memcheck", "memcheck"), ("racecheck", "racecheck"), ("initcheck", "initcheck"),
                       ("memcheck_big", "memcheck")):
        assert "compute-sanitizer" in steps[name] and f"--tool {tool}" in steps[name], steps[name]
        assert "gpu_check_driver.py" in steps[name]
    for name in ("memcheck", "initcheck", "memcheck_big"):  # caching allocator off
        assert "PYTORCH_NO_CUDA_MEMORY_CACHING=1" in steps[name]
    assert "--ops maxvit_attention" in steps["racecheck"]
    assert "--big" in steps["memcheck_big"] and "--small" in steps["memcheck"]
    assert "--bench" in steps["bench_ops"]
    assert "kernels.py --no-compile" in steps["kernels"]
    assert "kernels.py --cases dsepconv decoder_output" in steps["compile"] and "--no-compile" not in steps["compile"]
    for line in steps.values():  # every output under the one folder
        if "--out " in line.split(":", 1)[1] or "--junitxml" in line:
            assert str(tmp_path / "o") in line, line
    assert not (tmp_path / "o").exists()  # nothing written in a dry run
    # the package comes from the checkout (the GPU image does not install it)
    assert 'export PYTHONPATH="$REPO' in SCRIPT.read_text()


def test_without_cuda_the_script_runs_dry(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = _sh("--out", str(tmp_path / "o"), "--only", "build,memcheck")
    assert r.returncode == 0, r.stderr
    assert "no CUDA device" in r.stdout and list(_dry_steps(r.stdout)) == ["build", "memcheck"]
    assert not (tmp_path / "o").exists()


def test_bad_options_exit_2():
    assert _sh("--only", "nope").returncode == 2
    assert _sh("--frobnicate").returncode == 2
    r = _sh("--list")
    assert r.returncode == 0 and r.stdout.split() == STEPS


def test_driver_lists_the_awkward_and_1080p_cases():
    r = subprocess.run([sys.executable, str(DRIVER), "--list"], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    cases = r.stdout.splitlines()
    attn = [c for c in cases if c.startswith("maxvit_attention[") and "1080p" not in c]
    for w in (1, 2, 4, 7, 8):
        assert any(f"[w{w} " in c for c in attn), w
    for hd in (32, 96, 256):
        assert any(f" hd{hd}x" in c for c in attn), hd
    assert any("grid" in c for c in attn) and any("strided" in c for c in attn)
    for op in ("dsepconv", "decoder_output"):
        small = [c for c in cases if c.startswith(op + "[") and "1080p" not in c]
        assert any(" K3 " in c for c in small) and any(" K5 " in c for c in small)
        assert any("strided" in c for c in small) and any(" 1x1" in c for c in small)
        assert any("1536x2048" in c for c in cases if c.startswith(op + "["))
    big = subprocess.run([sys.executable, str(DRIVER), "--list", "--big"], check=False, capture_output=True, text=True,
                         timeout=60).stdout.splitlines()
    assert big and all("1080p" in c for c in big)


def test_driver_runs_on_cpu(tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(DRIVER), "--device", "cpu", "--small", "--ops", "dsepconv", "decoder_output",
                        "--backends", "native", "reference", "--dtypes", "float32", "--out", str(out)], check=False,
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    import json

    rows = json.loads(out.read_text())["results"]
    assert rows and {row["status"] for row in rows} <= {"ok", "skipped"}
    assert any(row["status"] == "ok" and row["backend"] == "reference" for row in rows)
    # without CUDA the default (cuda) device is refused with a message, not a traceback
    r = subprocess.run([sys.executable, str(DRIVER), "--small"], check=False, capture_output=True, text=True, timeout=120)
    import torch

    if not torch.cuda.is_available():
        assert r.returncode == 2 and "no CUDA device" in r.stderr and "Traceback" not in r.stderr
