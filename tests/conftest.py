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
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("LDMVFI_FAST_FIXTURES", REPO.parent / "shared" / "fixtures"))


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
    if not (FIXTURES / "ldmvfi-tiny" / "tiny_random.ckpt").is_file():
        msg = (f"parity fixtures not found at {FIXTURES}: they come from the project's shared/ folder "
               "(../shared/fixtures beside the checkout), or set LDMVFI_FAST_FIXTURES")
        if _ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_ckpt(fixtures_dir) -> Path:
    """The random-weight tiny checkpoint of the shared fixtures."""
    return fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt"


@pytest.fixture(scope="session")
def tiny_engines(fixtures_dir, tmp_path_factory) -> Path:
    """The tiny checkpoint exported once per session with the command line
    (``ldmvfi-fast export``; torch.export programs, example 512x768, batch 2)."""
    from ldmvfi_fast.cli import main

    out = tmp_path_factory.mktemp("engines") / "tiny_pt2"
    assert main(["export", "--ckpt", str(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt"), "--out", str(out)]) == 0
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
    from ldmvfi_fast.export.manifest import read_manifest

    t0 = time.perf_counter()
    assert export_script("build_aoti").main(["--engines", str(engines), "--out", str(out), "--jobs", "2"]) == 0
    m = read_manifest(out)
    sizes = {k: round((out / f).stat().st_size / 1e6, 1) for k, f in AOTI_FILES.items()}
    print(f"\nAOTI build of {engines.name}: {time.perf_counter() - t0:.0f} s; compile s "
          f"{m['aoti']['compile_seconds']}; MB {sizes}")
    return out
