"""Backend choice for the custom ops: one small function, :func:`pick_backend`.

Order: ``native`` (the compiled extension ``ldmvfi_fast._C``: CUDA kernels for CUDA
tensors, C++ kernels for CPU tensors), then ``triton``, then ``reference`` (pure PyTorch,
always available). Each backend is a *provider* that says why it refuses a call
(device, dtype, shape, missing extension, autograd needed but no backward); the reason is
logged once per (backend, op, reason).

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

log = logging.getLogger(__name__)

BACKENDS = ("native", "triton", "reference")
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
    order = list(BACKENDS)
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
