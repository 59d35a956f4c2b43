"""Backend choice for the custom ops: one small function, :func:`pick_backend`.

Backends: ``native`` (the compiled extension ``ldmvfi_fast._C``: CUDA kernels for CUDA
tensors, C++ kernels for CPU tensors), ``triton``, ``reference`` (pure PyTorch, always
available). Each backend is a *provider* that says why it refuses a call (device, dtype,
shape, missing extension, autograd needed but no backward); the reason is logged once per
(backend, op, reason).

Automatic order, per case (:data:`ORDER`, read by :func:`backend_order`): the fastest
backend first, then the next one that accepts the call. **Unmeasured**: no GPU was
available when this table was written, so the CUDA rows are the order the kernels' design
gives, not timings (measure with ``python benchmarks/kernels.py`` plus the Triton kernels
on the target GPU, then edit :data:`ORDER`):

==================  ======  ===============  ==============================  ==========
op                  device  dtype            order                           basis
==================  ======  ===============  ==============================  ==========
dsepconv            cuda    any              native, triton, reference       unmeasured
decoder_output      cuda    any              native, triton, reference       unmeasured
maxvit_attention    cuda    float32          native, triton, reference       unmeasured
maxvit_attention    cuda    float16/bf16     native, triton, reference       unmeasured
dsepconv            cpu     any              native, reference (no Triton)   measured*
decoder_output      cpu     any              native, reference               measured*
maxvit_attention    cpu     any              reference, native               design**
==================  ======  ===============  ==============================  ==========

Reasons for the CUDA rows: dsepconv / decoder_output: one fused pass with the tap
geometry shared by all channels (native) vs Triton kernels that the static review found
spending registers and barriers on layout conversions. maxvit_attention float32: the
CUDA kernel's FFMA path keeps fp32 accuracy without spilling, where Triton's
``input_precision="ieee"`` fp32 dot spills. float16/bfloat16: both use tensor cores
(native: WMMA since the block kernel's half/bf16 path, Triton: ``tl.dot``), and native
also has the one-warp kernel for window 2; this is the row to measure first.
(*) ``benchmarks/results/ops-cpu-1080x1920.txt`` (``benchmarks/ops_cpu.py``, 2 threads):
native 4.9x the reference for dsepconv, 3.6x for decoder_output. (**) the native CPU
attention is a plain correctness fallback (no BLAS); the reference's batched matmuls are
expected faster (not in that file); the native provider also refuses CPU attention.

Choosing a backend, strongest first:

1. the ``backend=`` argument of an op: **strict** (a backend that cannot run the call
   raises ``RuntimeError`` with the reason);
2. a :func:`use_backend` scope: **strict** like ``backend=``, for every op called inside
   it; ``use_backend(None)`` asks for the automatic order (no preference, whatever the
   environment says). Scopes nest (the innermost wins) and are per thread / per asyncio
   task (a ``contextvars.ContextVar``: a new thread starts outside any scope; carry a
   scope into one with ``contextvars.copy_context().run``);
3. the environment variable ``LDMVFI_FAST_BACKEND``, the default outside any scope: a
   **preference** (when that backend cannot run a call, a warning is logged once and the
   usual order is used), so one setting can serve a whole run of mixed calls.

:func:`current_backend` says what is asked for at this point (scope, else environment).
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
from typing import Callable, Iterator, Protocol, Sequence

import torch
from torch import Tensor

from .. import _env
from ..choices import BACKENDS

log = logging.getLogger(__name__)


#: automatic backend order per case: {(op, device type, dtype group): order}; the first
#: matching key of (op, device, dtype), (op, device, "*"), (op, "*", "*") wins, else BACKENDS.
#: dtype groups: "float32", "half" (float16 and bfloat16), "float64". See the module docs.
ORDER: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("dsepconv", "cuda", "*"): ("native", "triton", "reference"),
    ("decoder_output", "cuda", "*"): ("native", "triton", "reference"),
    ("maxvit_attention", "cuda", "float32"): ("native", "triton", "reference"),
    ("maxvit_attention", "cuda", "half"): ("native", "triton", "reference"),
    ("dsepconv", "cpu", "*"): ("native", "reference", "triton"),
    ("decoder_output", "cpu", "*"): ("native", "reference", "triton"),
    ("maxvit_attention", "cpu", "*"): ("reference", "native", "triton"),
}
ALIASES = {"cuda": "native", "cpp": "native", "cpu": "native", "c++": "native", "torch": "reference",
           "ref": "reference", "pytorch": "reference"}
OPS = ("dsepconv", "decoder_output", "maxvit_attention")


class Provider(Protocol):
    name: str

    def check(self, op: str, tensors: Sequence[Tensor], **kw) -> str | None:
        """None when this backend can run ``op`` on these tensors, else the reason it cannot."""

    def get(self, op: str) -> Callable:
        """The implementation of ``op``, same signature as the reference."""


_MODULES = {"native": "._native", "triton": "._triton", "reference": "._reference"}
_providers: dict[str, Provider | str] = {}
_logged: set[tuple] = set()


def canonical(name: str) -> str:
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} "
                         f"(aliases: {', '.join(sorted(ALIASES))})")
    return name


def _provider(name: str) -> Provider | str:
    """The provider of a backend, or a string saying why it is unavailable."""
    if name not in _providers:
        try:
            mod = importlib.import_module(_MODULES[name], __package__)
            _providers[name] = mod.PROVIDER
        except Exception as exc:  # a missing optional dependency is a clean fallback
            _providers[name] = f"cannot import {name} backend: {type(exc).__name__}: {exc}"
    return _providers[name]


def _dtype_group(dtype: torch.dtype) -> str:
    if dtype in (torch.float16, torch.bfloat16):
        return "half"
    return str(dtype).replace("torch.", "")


def backend_order(op: str, tensors: Sequence[Tensor]) -> tuple[str, ...]:
    """The automatic order of the backends for this call (:data:`ORDER`), every backend once."""
    first = next((t for t in tensors if isinstance(t, Tensor)), None)
    device = first.device.type if first is not None else "*"
    group = _dtype_group(first.dtype) if first is not None else "*"
    for key in ((op, device, group), (op, device, "*"), (op, "*", "*")):
        if key in ORDER:
            order = ORDER[key]
            return tuple(order) + tuple(b for b in BACKENDS if b not in order)
    return BACKENDS


def available_backends(op: str, tensors: Sequence[Tensor], **kw) -> dict[str, str | None]:
    """For each backend: None if it can run this call, else the reason it cannot."""
    out = {}
    for name in BACKENDS:
        prov = _provider(name)
        out[name] = prov if isinstance(prov, str) else prov.check(op, tensors, **kw)
    return out


#: the innermost use_backend() scope: None outside any scope, else a 1-tuple holding the
#: canonical backend name or None (= automatic order)
_SCOPE: contextvars.ContextVar[tuple[str | None] | None] = contextvars.ContextVar("ldmvfi_fast_backend_scope",
                                                                                 default=None)


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[str | None]:
    """Run the custom ops of this scope on backend ``name`` (strict), or automatically (None).

    Args:
        name: ``"native"`` (aliases ``cuda``, ``cpp``), ``"triton"``, ``"reference"``, or None
            for the automatic order (also ignoring ``LDMVFI_FAST_BACKEND``).

    Yields:
        The canonical name (or None). An op's own ``backend=`` argument still wins.

    Raises:
        ValueError: unknown backend name (at entry). Inside the scope, an op that the
            backend cannot run raises ``RuntimeError`` with the reason.
    """
    value = None if name is None else canonical(name)
    token = _SCOPE.set((value,))
    try:
        yield value
    finally:
        _SCOPE.reset(token)


def current_backend() -> str | None:
    """The backend asked for here: the innermost :func:`use_backend` scope's (None = automatic),
    else the canonical name of ``LDMVFI_FAST_BACKEND`` (a preference), else None."""
    scope = _SCOPE.get()
    if scope is not None:
        return scope[0]
    env = _env.backend_override()
    return canonical(env) if env else None


def _note(level: int, key: tuple, msg: str, *args) -> None:
    if torch.compiler.is_compiling() or key in _logged:
        return
    _logged.add(key)
    log.log(level, msg, *args)


def pick_backend(op: str, tensors: Sequence[Tensor], backend: str | None = None, **kw) -> Callable:
    """Return the implementation of ``op`` to use for these tensors.

    Args:
        op: one of :data:`OPS`.
        tensors: the tensor arguments (device, dtype, shape and requires_grad are read).
        backend: explicit choice; raises ``RuntimeError`` if that backend cannot run the call.
            None: the :func:`use_backend` scope (strict too), else the automatic order with
            ``LDMVFI_FAST_BACKEND`` as a preference.
        **kw: non-tensor arguments the providers check (window, mode, num_heads, ...).
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    source = "backend="
    scope = _SCOPE.get()
    if backend is None and scope is not None:
        backend, source = scope[0], "use_backend()"
    if backend is not None:
        name = canonical(backend)
        prov = _provider(name)
        reason = prov if isinstance(prov, str) else prov.check(op, tensors, **kw)
        if reason is not None:
            raise RuntimeError(f"backend {name!r} (asked for by {source}) cannot run {op}: {reason}")
        return prov.get(op)
    order = list(backend_order(op, tensors))
    preferred = None if scope is not None else _env.backend_override()
    if preferred:
        preferred = canonical(preferred)
        order.remove(preferred)
        order.insert(0, preferred)
    for name in order:
        prov = _provider(name)
        reason = prov if isinstance(prov, str) else prov.check(op, tensors, **kw)
        if reason is None:
            return prov.get(op)
        level = logging.WARNING if name == preferred else logging.INFO
        _note(level, (name, op, reason), "ldmvfi_fast.ops: skipping %s backend for %s: %s", name, op, reason)
    raise RuntimeError(f"no backend can run {op}")  # unreachable: reference accepts everything
