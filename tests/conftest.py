"""Shared test configuration.

* ``@pytest.mark.cuda``: needs a CUDA device; skipped cleanly without one (CUDA is never
  queried at import time).
* ``@pytest.mark.slow``: long tests (whole engine builds, the distillation runs), skipped by
  default so the suite stays under 15 minutes on 2 cores; ``-m slow`` (or any ``-m`` expression
  naming ``slow``) runs them. CI runs them after the default suite (``.ci/run``, the acceptance stage).
* ``@pytest.mark.manual``: tests too long for CI (the official preset's export: tens of
  minutes), skipped unless ``-m`` names ``manual``.
* ``fixtures_dir``: ../shared/fixtures beside the checkout. With ``CI=true`` a missing
  folder fails the run; elsewhere the tests that need it skip with a message.

The fixtures the test modules share are defined here, once: the tiny checkpoint (``tiny_ckpt``;
``ckpt``: its path as a string) and its model (``tiny_model``, loaded once per module), the
session's engine folders, the second config's model, a fake AOTI engine folder (``fake_aoti``),
the benchmark scripts as modules (``latency``, ``quality``). Plain helpers (the random-model
builder, folder snapshots, the export scripts) are in ``_shared``.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("LDMVFI_FAST_FIXTURES", REPO.parent / "shared" / "fixtures"))
#: the random-weight tiny checkpoint, relative to the fixtures folder (tests use ``tiny_ckpt``)
TINY_CKPT = Path("ldmvfi-tiny") / "tiny_random.ckpt"


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: long-running test (skipped unless -m names slow)")
    config.addinivalue_line("markers", "manual: too long for CI (skipped unless -m names manual)")


def pytest_collection_modifyitems(config, items):
    import torch

    expr = config.getoption("-m") or ""
    skip_slow = pytest.mark.skip(reason="slow (whole engine builds): run with -m slow")
    skip_manual = pytest.mark.skip(reason="manual (too long for CI): run with -m manual")
    for item in items:
        if "manual" in item.keywords and "manual" not in expr:
            item.add_marker(skip_manual)
        elif "slow" in item.keywords and "slow" not in expr:
            item.add_marker(skip_slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / TINY_CKPT).is_file():
        msg = (f"parity fixtures not found at {FIXTURES}: they come from the project's shared/ folder "
               "(../shared/fixtures beside the checkout), or set LDMVFI_FAST_FIXTURES")
        if _ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_ckpt(fixtures_dir) -> Path:
    """The random-weight tiny checkpoint of the shared fixtures."""
    return fixtures_dir / TINY_CKPT


@pytest.fixture(scope="session")
def ckpt(tiny_ckpt) -> str:
    """``str(tiny_ckpt)``: the tiny checkpoint as a command-line argument (the CLI tests)."""
    return str(tiny_ckpt)


@pytest.fixture(scope="module")
def tiny_model(tiny_ckpt):
    """``load_model(tiny_ckpt)``: the tiny model (EMA weights, CPU, float32), loaded once per test
    module (module scope: a module may change it in place without touching another's)."""
    from ldmvfi_fast.checkpoint import load_model

    return load_model(tiny_ckpt)


@pytest.fixture(scope="module")
def loader(tiny_ckpt):
    """A :class:`ldmvfi_fast.segments.Loader` of the tiny checkpoint, 2 DDIM steps, minimal padding
    (what a segmented job's actors load)."""
    from ldmvfi_fast.samplers import SamplingRequest
    from ldmvfi_fast.segments import Loader

    return Loader(ckpt=str(tiny_ckpt), sampling=SamplingRequest(steps=2), padding="minimal")


@pytest.fixture(scope="module")
def interp(loader):
    """``loader()``: the tiny model's Interpolator, loaded once per test module."""
    return loader()


@pytest.fixture(scope="session")
def tiny_engines(tiny_ckpt, tmp_path_factory) -> Path:
    """The tiny checkpoint exported once per session with the command line
    (``ldmvfi-fast export``; torch.export programs, example 512x768, batch 2)."""
    from ldmvfi_fast.cli import main

    out = tmp_path_factory.mktemp("engines") / "tiny_pt2"
    assert main(["export", "--ckpt", str(tiny_ckpt), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_aoti(tiny_engines, tmp_path_factory) -> Path:
    """The session's torch.export programs compiled with AOTInductor by the user script
    (``export/build_aoti.py --engines ... --jobs 2``): minutes on 2 cores, once per session."""
    return _build_aoti(tiny_engines, tmp_path_factory.mktemp("aoti") / "tiny_aoti")


@pytest.fixture(scope="session")
def wide_model():
    """The second config (other widths; see ``_shared.wide_config``) with random weights."""
    from _shared import random_model, wide_config

    return random_model(wide_config())


@pytest.fixture(scope="session")
def wide_engines(wide_model, tmp_path_factory) -> Path:
    """The wide model's torch.export programs (example 512x768, batch 2)."""
    from ldmvfi_fast.export.pt2 import export_pt2

    return export_pt2(wide_model, tmp_path_factory.mktemp("engines") / "wide_pt2")


@pytest.fixture(scope="session")
def wide_aoti(wide_engines, tmp_path_factory) -> Path:
    return _build_aoti(wide_engines, tmp_path_factory.mktemp("aoti") / "wide_aoti")


def _build_aoti(engines: Path, out: Path) -> Path:
    import time

    from _shared import export_script
    from ldmvfi_fast.export.aoti import AOTI_FILES
    from ldmvfi_fast.manifest import read_manifest

    t0 = time.perf_counter()
    assert export_script("build_aoti").main(["--engines", str(engines), "--out", str(out), "--jobs", "2"]) == 0
    m = read_manifest(out)
    sizes = {k: round((out / f).stat().st_size / 1e6, 1) for k, f in AOTI_FILES.items()}
    print(f"\nAOTI build of {engines.name}: {time.perf_counter() - t0:.0f} s; compile s "
          f"{m['aoti']['compile_seconds']}; MB {sizes}")
    return out


@pytest.fixture
def fake_aoti(tiny_engines, tmp_path) -> Path:
    """An AOTI engine folder as ``build_aoti`` writes it (the session's export manifest with the
    ``aoti`` record and the DDIM tables, sealed) whose packages are not packages: for the refusals
    made before anything loads (the Python runtime's and the C++ app's)."""
    from ldmvfi_fast._machine import machine_info
    from ldmvfi_fast.export.aoti import AOTI_FILES, ddim_tables
    from ldmvfi_fast.manifest import read_manifest, write_manifest

    folder = tmp_path / "fake_aoti"
    folder.mkdir()
    m = read_manifest(tiny_engines)
    m.update(runtime="aoti", device="cpu", aoti={"build_machine": machine_info(), "compile_seconds": {},
                                                  "proxy_executor_ops": m["custom_ops"]},
             ddim=ddim_tables(m["alphas_cumprod"], steps=(2,)))
    write_manifest(folder, m)  # sealed afresh (contract_hash), as build_aoti does
    for f in AOTI_FILES.values():
        (folder / f).write_bytes(b"not a package")
    return folder


@pytest.fixture(scope="module")
def benchmarks():
    """``benchmarks("latency")``: a script of ``benchmarks/`` imported as a module. The folder stays
    on ``sys.path`` while the test module runs: the scripts import ``_common`` (some lazily)."""
    path = str(REPO / "benchmarks")
    sys.path.insert(0, path)
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(path)


@pytest.fixture(scope="module")
def latency(benchmarks):
    """``benchmarks/latency.py`` as a module."""
    return benchmarks("latency")


@pytest.fixture(scope="module")
def quality(benchmarks):
    """``benchmarks/quality.py`` as a module."""
    return benchmarks("quality")
