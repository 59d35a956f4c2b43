"""When a missing tool or build is a skip and when it is a failure (one rule for all tests).

* On a developer machine a missing optional tool (cmake, nvcc, cuobjdump, triton, the
  compiled extension) skips the tests that need it, with the reason.
* Under ``CI=true`` (``1``/``yes``), a missing tool fails: CI images are built to have them,
  so a skip there would hide a broken image or build.
* ``LDMVFI_FAST_REQUIRE_NATIVE=1`` (a CI job that built the extension): a missing extension
  or CUDA kernel fails too.
"""
from __future__ import annotations

import os

import pytest


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def ci() -> bool:
    """True under ``CI=true``."""
    return _flag("CI")


def require_native() -> bool:
    """True under ``LDMVFI_FAST_REQUIRE_NATIVE=1``."""
    return _flag("LDMVFI_FAST_REQUIRE_NATIVE")


def missing(msg: str, *, required: bool) -> None:
    """Fail (``required``) or skip with ``msg``; never returns."""
    if required:
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def missing_tool(msg: str) -> None:
    """A tool is missing: fail under CI, skip elsewhere."""
    missing(f"{msg} [CI=true: a missing tool is a failure]" if ci() else msg, required=ci())


def missing_native(msg: str) -> None:
    """The extension or a kernel of it is missing: fail under LDMVFI_FAST_REQUIRE_NATIVE=1."""
    req = require_native()
    missing(f"{msg} [LDMVFI_FAST_REQUIRE_NATIVE=1]" if req else msg, required=req)
