"""ONNX exporter rules of the custom ops: nodes of the ``ldmvfi_fast`` operator domain.

As torchvision registers the ONNX rules of its ops beside them, this module holds the rules
that turn ``torch.ops.ldmvfi_fast.*`` calls of an exported program into ONNX nodes of
domain :data:`DOMAIN` (opset version :data:`VERSION`), for the ONNX export's ``domain``
mode (:func:`ldmvfi_fast.export.onnx.export_onnx` with ``custom_ops="domain"``), whose
graphs run where these ops are implemented: TensorRT plugins of the same names.

Contract (kept in step with the TensorRT plugins; layouts as the torch op schemas in
``csrc/ops/schemas.cpp`` and :mod:`ldmvfi_fast.ops`):

* ``DSepConv``: inputs ``input`` (B, C, H+K-1, W+K-1), ``vertical``, ``horizontal``
  (B, K, H, W), ``offset_x``, ``offset_y``, ``mask`` (B, K*K, H, W); one output
  (B, C, H, W); no attributes.
* ``DecoderOutput``: inputs ``frame0``, ``frame1`` (B, 3, H, W), ``vertical0``,
  ``horizontal0``, ``offset_x0``, ``offset_y0``, ``vertical1``, ``horizontal1``,
  ``offset_x1``, ``offset_y1``, ``mask`` (B, K*K, H, W), ``residual`` (B, 3, H, W); one
  output (B, 3, H, W); no attributes.

MaxViT attention is not a domain op: its standard-op form (MatMul, Softmax, Gather of the
bias) runs in every runtime and TensorRT fuses it, so both modes export it the same way.

Also here, for checking graphs without TensorRT:

* :func:`register_schemas`: ``onnx.defs`` schemas of the domain ops, so ``onnx.checker``
  and shape inference know them (output type and shape from the inputs);
* :func:`reference_ops`: ``onnx.reference`` implementations (``ReferenceEvaluator(...,
  new_ops=reference_ops())``) built on the PyTorch reference ops.

onnx / onnxscript are imported lazily (only by these functions).
"""
from __future__ import annotations

import functools

import torch

__all__ = ["DOMAIN", "VERSION", "DOMAIN_OPS", "translation_table", "register_schemas", "reference_ops",
           "domain_ops_in"]

DOMAIN = "ldmvfi_fast"
VERSION = 1
#: ONNX op type -> (torch op name, input names)
DOMAIN_OPS = {
    "DSepConv": ("dsepconv", ("input", "vertical", "horizontal", "offset_x", "offset_y", "mask")),
    "DecoderOutput": ("decoder_output", ("frame0", "frame1", "vertical0", "horizontal0", "offset_x0", "offset_y0",
                                         "vertical1", "horizontal1", "offset_x1", "offset_y1", "mask", "residual")),
}


def _require_custom_ops() -> None:
    from ._native import LOAD_ERROR

    if LOAD_ERROR is not None:
        from ..errors import EngineError

        raise EngineError("ONNX 'domain' mode traces the ops as torch.ops.ldmvfi_fast.*, which the compiled "
                          f"extension ldmvfi_fast._C registers; it did not load ({LOAD_ERROR})")


def translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``: each
    ``torch.ops.ldmvfi_fast`` op of :data:`DOMAIN_OPS` to one node of the domain."""
    _require_custom_ops()
    from onnxscript.values import Opset

    register_schemas()  # onnxscript builds a domain node from its registered onnx.defs schema
    dom = Opset(DOMAIN, VERSION)

    def dsepconv(input, vertical, horizontal, offset_x, offset_y, mask):
        return dom.DSepConv(input, vertical, horizontal, offset_x, offset_y, mask)

    def decoder_output(frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0,
                       vertical1, horizontal1, offset_x1, offset_y1, mask, residual):
        return dom.DecoderOutput(frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0,
                                 vertical1, horizontal1, offset_x1, offset_y1, mask, residual)

    ops = torch.ops.ldmvfi_fast
    return {ops.dsepconv.default: dsepconv, ops.decoder_output.default: decoder_output}


@functools.lru_cache(maxsize=1)
def register_schemas() -> bool:
    """Register ``onnx.defs`` schemas of :data:`DOMAIN_OPS` (once per process), so that
    ``onnx.checker.check_model(full_check=True)`` accepts the nodes; the output type is the
    first input's. Returns False where this onnx cannot register Python schemas (then the
    checker is given the graph as is)."""
    import onnx
    from onnx import defs

    if not hasattr(defs, "register_schema"):
        return False
    FP = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"]
    for op_type, (_, names) in DOMAIN_OPS.items():
        try:
            defs.get_schema(op_type, VERSION, DOMAIN)
            continue  # already registered
        except defs.SchemaError:
            pass
        schema = defs.OpSchema(
            op_type, DOMAIN, VERSION,
            doc=f"ldmvfi_fast {op_type} (see ldmvfi_fast.ops._onnx)",
            inputs=[defs.OpSchema.FormalParameter(n, "T") for n in names],
            outputs=[defs.OpSchema.FormalParameter("output", "T")],
            type_constraints=[("T", FP, "floating tensors")],
        )
        if hasattr(schema, "set_type_and_shape_inference_function"):
            schema.set_type_and_shape_inference_function(functools.partial(_infer, op_type))
        defs.register_schema(schema)
    return True


def _infer(op_type: str, ctx) -> None:
    """Output type and shape: DSepConv (B, C) of ``input`` and (H, W) of ``vertical``;
    DecoderOutput the shape of ``frame0``."""
    import onnx

    first = ctx.get_input_type(0)
    if first is None or not first.HasField("tensor_type"):
        return
    out = onnx.TypeProto()
    out.tensor_type.elem_type = first.tensor_type.elem_type
    src = first.tensor_type
    if src.HasField("shape"):
        dims = list(src.shape.dim)
        if op_type == "DSepConv":
            vert = ctx.get_input_type(1)
            if vert is None or not vert.tensor_type.HasField("shape") or len(vert.tensor_type.shape.dim) != 4:
                dims = None
            else:
                dims = dims[:2] + list(vert.tensor_type.shape.dim)[2:]
        if dims is not None:
            shape = out.tensor_type.shape
            for d in dims:
                shape.dim.add().CopyFrom(d)
    ctx.set_output_type(0, out)


def domain_ops_in(model) -> list[str]:
    """Sorted op types of :data:`DOMAIN` used by an ``onnx.ModelProto`` (functions included)."""
    found = {n.op_type for n in model.graph.node if n.domain == DOMAIN}
    for f in model.functions:
        found |= {n.op_type for n in f.node if n.domain == DOMAIN}
    return sorted(found)


def reference_ops() -> list[type]:
    """``onnx.reference.op_run.OpRun`` classes of :data:`DOMAIN_OPS`, computing with the
    PyTorch reference ops, for ``onnx.reference.ReferenceEvaluator(model, new_ops=...)``."""
    import numpy as np
    from onnx.reference.op_run import OpRun

    from .decoder_output_ref import decoder_output_reference
    from .dsepconv_ref import dsepconv_reference

    def run(fn, inputs):
        dtype = inputs[0].dtype
        with torch.no_grad():
            out = fn(*(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in inputs))
        return (out.numpy().astype(dtype),)

    class DSepConv(OpRun):
        op_domain = DOMAIN

        def _run(self, *inputs):
            return run(dsepconv_reference, inputs)

    class DecoderOutput(OpRun):
        op_domain = DOMAIN

        def _run(self, *inputs):
            return run(decoder_output_reference, inputs)

    return [DSepConv, DecoderOutput]
