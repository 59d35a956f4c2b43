"""Every environment flag ldmvfi_fast reads, in one place."""
from __future__ import annotations

import os

#: Backend override for the custom ops: ``native`` (alias ``cuda``/``cpp``), ``triton`` or ``reference``.
BACKEND_VAR = "LDMVFI_FAST_BACKEND"
#: Directory searched for the official checkpoint when ``--ckpt`` is not given.
CKPT_VAR = "LDMVFI_FAST_CKPT"
#: Triton's own interpreter switch (read by triton when it is imported): ``1`` runs kernels on CPU tensors.
TRITON_INTERPRET_VAR = "TRITON_INTERPRET"


def backend_override() -> str | None:
    """The backend named by ``LDMVFI_FAST_BACKEND`` (lower-cased), or None."""
    value = os.environ.get(BACKEND_VAR, "").strip().lower()
    return value or None


def default_checkpoint() -> str | None:
    """Checkpoint path from ``LDMVFI_FAST_CKPT``, or None."""
    value = os.environ.get(CKPT_VAR, "").strip()
    return value or None


def triton_interpret() -> bool:
    """True when Triton runs in interpreter mode (CPU tensors allowed).

    Parsed as Triton parses it (``1``, ``true``, ``on``, ``yes``, any case), so this agrees
    with whether kernels imported now would be interpreted.
    """
    return os.environ.get(TRITON_INTERPRET_VAR, "0").lower() in ("1", "true", "on", "yes")
