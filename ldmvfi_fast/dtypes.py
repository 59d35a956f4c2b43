"""Floating types by name: the one table of names, aliases and short names (torch-free; torch is
imported only to hand out a :class:`torch.dtype`).

``--dtype`` choices, manifests (``"dtype"``, ``"io_dtype"``), TensorRT's precision names
(``fp32``/``fp16``/``bf16``) and the checks of which device runs which dtype
(:func:`ldmvfi_fast.checkpoint.check_device_dtype`) all read it.
"""
from __future__ import annotations

from .errors import OptionError

__all__ = ["NAMES", "ALIASES", "SHORT", "canonical", "name", "to_torch", "short", "from_short"]

#: the floating types ldmvfi_fast computes in (canonical names, as torch spells them)
NAMES = ("float32", "float16", "bfloat16")
#: every accepted spelling -> canonical name
ALIASES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16"}
#: canonical -> short name (TensorRT's precision names, engine file names)
SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def canonical(dtype) -> str:
    """The canonical name of a name, alias, ``"torch.x"`` string or :class:`torch.dtype`;
    :class:`OptionError` for anything else (integer types included)."""
    text = str(dtype).removeprefix("torch.")
    try:
        return ALIASES[text]
    except KeyError:
        raise OptionError(f"unsupported dtype {dtype}: use float32, bfloat16 or float16 (aliases "
                          f"{', '.join(a for a in ALIASES if a not in NAMES)})") from None


def name(dtype) -> str:
    """``torch.float32`` -> ``"float32"`` for any dtype (floating or not); names pass through."""
    return str(dtype).removeprefix("torch.")


def to_torch(dtype):
    """The :class:`torch.dtype` of a name, alias or dtype (:func:`canonical`)."""
    import torch

    return getattr(torch, canonical(dtype))


def short(dtype) -> str:
    """``fp32`` / ``fp16`` / ``bf16`` of a dtype or name."""
    return SHORT[canonical(dtype)]


def from_short(precision: str) -> str:
    """The canonical name of a short name (``fp16`` -> ``float16``)."""
    for k, v in SHORT.items():
        if v == precision:
            return k
    raise OptionError(f"precision must be one of {', '.join(SHORT.values())}, got {precision!r}")
