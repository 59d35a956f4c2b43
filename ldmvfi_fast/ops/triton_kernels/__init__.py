"""Triton kernels of the custom ops (imported lazily by :mod:`ldmvfi_fast.ops._triton`).

Importing this package imports ``triton``. For CPU tensors, ``TRITON_INTERPRET=1`` must be
in the environment *before* this import: ``triton.jit`` decides at decoration time whether
a kernel runs interpreted.

* :mod:`.dsepconv` - DSepConv forward/backward and the fused decoder output;
* :mod:`.maxvit_attention` - fused block/grid window attention with relative-position bias.
"""
from __future__ import annotations

from .dsepconv import DSepConvFunction, decoder_output, dsepconv
from .maxvit_attention import INTERPRETED, maxvit_attention

__all__ = ["dsepconv", "decoder_output", "maxvit_attention", "DSepConvFunction", "INTERPRETED", "IMPLS"]

#: op name -> implementation (same signature as the reference). The functions shadow the
#: submodules of the same name as package attributes, so look them up here.
IMPLS = {"dsepconv": dsepconv, "decoder_output": decoder_output, "maxvit_attention": maxvit_attention}
