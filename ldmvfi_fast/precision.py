"""The precision policy: what stays float32 when the model runs in float16 or bfloat16, and why.

One table (:data:`ISLANDS`), read by everything that decides a dtype:

* the model code (:mod:`ldmvfi_fast.models`, :mod:`ldmvfi_fast.ops`) upcasts through
  :func:`upcast` / :func:`keeps_fp32` with the island's name, so the eager model, the
  ``torch.export`` programs and the ONNX graphs traced from it compute the same thing;
* the ONNX exporter writes the upcasts as explicit ``Cast`` nodes (a strongly typed graph:
  TensorRT 11 builds what the graph says) and records :func:`describe` in the manifest;
* TensorRT 10's weakly typed build marks the layers of the islands' ONNX patterns
  (:attr:`Island.onnx_ops`) float32 (``ldmvfi_fast.export.tensorrt``).

Nothing else restates which operations are float32. :func:`disabled` turns islands off for a
scope (the accuracy benchmark measures what each one buys: ``benchmarks/precision.py``);
turned-off islands also change what a trace in that scope writes.

Half-precision formats: float16 (10-bit mantissa, max 65504: overflow is the risk) and
bfloat16 (7-bit mantissa, float32's range: rounding is the risk).
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["POLICY_VERSION", "HALF_DTYPES", "Island", "ISLANDS", "keeps_fp32", "upcast", "compute_dtype",
           "disabled", "active_islands", "describe", "is_half"]

#: bumped whenever an island is added, removed or changes what it covers (recorded in manifests)
POLICY_VERSION = 1
HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Island:
    """One group of operations computed in float32 under float16 / bfloat16."""
    name: str
    #: what runs in float32
    covers: str
    #: why half precision is not enough there
    why: str
    #: where the upcast is written (module:function), for readers and tests
    where: tuple[str, ...]
    #: ONNX op types that mark the island in a graph (TensorRT 10 constraints, graph tests)
    onnx_ops: tuple[str, ...] = ()


_TABLE = (
    Island("io", "graph inputs and outputs (frames, latents, features, eps, the decoded frame)",
           "the pipeline, the sampler and the C++ app feed and read the same float32 buffers at every "
           "precision; the cast to half happens inside the graph",
           ("ldmvfi_fast.export.specs", "ldmvfi_fast.runtime.torch")),
    Island("sampler", "the sampler's state x_t and every coefficient (DDIM, DPM-Solver++, consistency)",
           "x_t accumulates small updates over many steps; sqrt(1 - a_t) differs from 1 below "
           "half precision's resolution near t = 0",
           ("ldmvfi_fast.pipeline", "ldmvfi_fast.sampling")),
    Island("timestep_embedding", "the sinusoidal timestep embedding (t * freq, cos, sin)",
           "t * freq reaches 1000 rad: bfloat16 keeps 3 significant digits there, the phase would be noise",
           ("ldmvfi_fast.models.unet:timestep_embedding",), ("Cos", "Sin")),
    Island("groupnorm", "GroupNorm mean, variance and normalisation",
           "variance of up to 64k values per group: a half-precision sum loses the small terms and "
           "float16 squares overflow",
           ("ldmvfi_fast.models.layers:GroupNorm32",), ("GroupNormalization", "InstanceNormalization")),
    Island("layernorm", "LayerNorm of the MaxViT blocks (statistics and the normalised output)",
           "as GroupNorm; the attention's queries and keys are computed from its output",
           ("ldmvfi_fast.models.maxvit:LayerNorm32",), ("LayerNormalization",)),
    Island("softmax", "attention scores q k^T * scale + relative-position bias, the softmax, and attn @ v",
           "the autoencoder's middle attention has one 256-wide head: a dot product of 256 terms of "
           "|x| ~ 10 overflows float16, and bfloat16's rounding of large logits reorders the softmax",
           ("ldmvfi_fast.ops.maxvit_ref:maxvit_attention_reference",), ("Softmax",)),
    Island("dsepconv", "DSepConv and the decoder output: sample coordinates, offsets, bilinear weights, the "
           "5x5 accumulation, the mask blend and the residual sum",
           "positions of up to 4096 + offsets need 1/256-pixel resolution (bfloat16 has 1/2 pixel at 256); "
           "the 50-term accumulation cancels",
           ("ldmvfi_fast.ops.dsepconv_ref", "ldmvfi_fast.ops.dsepconv_export"), ("Floor", "GatherElements")),
    Island("quantizer", "codebook distances |z|^2 + |e|^2 - 2 z.e and their argmin",
           "the distance is a difference of large terms; a half-precision argmin picks other codes",
           ("ldmvfi_fast.models.autoencoder:VectorQuantizer",), ("ArgMin",)),
)
ISLANDS: dict[str, Island] = {i.name: i for i in _TABLE}

_DISABLED: contextvars.ContextVar[frozenset] = contextvars.ContextVar("ldmvfi_fast_fp32_disabled",
                                                                       default=frozenset())


def is_half(dtype: torch.dtype) -> bool:
    return dtype in HALF_DTYPES


def keeps_fp32(name: str) -> bool:
    """Whether island ``name`` is on (all are, outside :func:`disabled`)."""
    if name not in ISLANDS:
        raise KeyError(f"unknown precision island {name!r}; islands: {sorted(ISLANDS)}")
    return name not in _DISABLED.get()


def compute_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype island ``name`` computes in for tensors of ``dtype``."""
    return torch.float32 if is_half(dtype) and keeps_fp32(name) else dtype


def upcast(name: str, *tensors: Tensor) -> tuple[Tensor, ...]:
    """``tensors`` cast to float32 where they are half precision and island ``name`` is on
    (others unchanged). Returns a tuple even for one tensor."""
    on = keeps_fp32(name)
    return tuple(t.float() if on and t.dtype in HALF_DTYPES else t for t in tensors)


@contextlib.contextmanager
def disabled(*names: str):
    """Scope in which the named islands compute in the model's half precision (for measuring
    what each buys). Unknown names raise :class:`KeyError`."""
    for n in names:
        if n not in ISLANDS:
            raise KeyError(f"unknown precision island {n!r}; islands: {sorted(ISLANDS)}")
    token = _DISABLED.set(_DISABLED.get() | frozenset(names))
    try:
        yield
    finally:
        _DISABLED.reset(token)


def active_islands() -> list[str]:
    return [n for n in ISLANDS if keeps_fp32(n)]


def describe() -> dict:
    """The policy as recorded in an engine manifest: version and the islands in force."""
    return {"version": POLICY_VERSION, "fp32_islands": active_islands()}
