"""The pure-PyTorch backend: accepts every call (it is the fallback and the oracle)."""
from __future__ import annotations

from .decoder_output_ref import decoder_output_reference
from .dsepconv_ref import dsepconv_reference
from .maxvit_ref import maxvit_attention_reference


class _Reference:
    name = "reference"
    _impl = {"dsepconv": dsepconv_reference, "decoder_output": decoder_output_reference,
             "maxvit_attention": maxvit_attention_reference}

    def check(self, op, tensors, **kw):
        return None

    def get(self, op):
        return self._impl[op]


PROVIDER = _Reference()
