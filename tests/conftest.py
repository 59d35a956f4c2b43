"""Shared test configuration.

* ``@pytest.mark.cuda``: needs a CUDA device; skipped cleanly without one (CUDA is never
  queried at import time).
* ``@pytest.mark.slow``: long tests (whole engine builds), skipped by default so the suite stays
  under 15 minutes on 2 cores; ``-m slow`` (or any ``-m`` expression naming ``slow``) runs them.
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


def pytest_collection_modifyitems(config, items):
    import torch

    if "slow" not in (config.getoption("-m") or ""):
        skip_slow = pytest.mark.skip(reason="slow (whole engine builds): run with -m slow")
        for item in items:
            if "slow" in item.keywords:
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
