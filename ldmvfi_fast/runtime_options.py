"""The options of the runtimes that take some, as dataclasses (torch-free: the command line's
``--runtime-option KEY=VALUE`` is parsed into them by :func:`ldmvfi_fast.formats.parse_options`
before anything heavy loads; the format registry names them)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import OptionError

__all__ = ["OrtOptions", "TrtOptions", "ORT_LEVELS"]

#: ``opt`` -> ONNX Runtime's graph optimisation level
ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


@dataclass(frozen=True)
class OrtOptions:
    """Session options of the onnxruntime runtime (``--runtime-option KEY=VALUE``; each None:
    ONNX Runtime's default). ``opt``: graph optimisation (disable, basic, extended, all);
    ``threads`` / ``inter``: intra-/inter-op threads (0: ONNX Runtime picks); ``mode``: seq or par;
    ``mem_pattern``, ``arena``: memory planning and the CPU arena; ``spin``: intra-op threads
    busy-wait after a run (on by default in ONNX Runtime: cores taken from what runs next)."""
    opt: str | None = None
    threads: int | None = None
    inter: int | None = None
    mode: str | None = None
    mem_pattern: bool | None = None
    arena: bool | None = None
    spin: bool | None = None

    def __post_init__(self):
        if self.opt is not None and self.opt not in ORT_LEVELS:
            raise OptionError(f"onnxruntime opt={self.opt!r}: use one of {', '.join(ORT_LEVELS)}")
        if self.mode is not None and self.mode not in ("seq", "par"):
            raise OptionError(f"onnxruntime mode={self.mode!r}: use seq or par")
        for k in ("threads", "inter"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise OptionError(f"onnxruntime {k}={v!r}: expected a non-negative integer")

    def is_default(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def session_options(self, ort):
        """An ``onnxruntime.SessionOptions`` with these options set (the others ONNX Runtime's)."""
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.opt is not None:
            so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[self.opt])
        if self.threads is not None:
            so.intra_op_num_threads = self.threads
        if self.inter is not None:
            so.inter_op_num_threads = self.inter
        if self.mode is not None:
            so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if self.mode == "par" else ort.ExecutionMode.ORT_SEQUENTIAL
        if self.mem_pattern is not None:
            so.enable_mem_pattern = self.mem_pattern
        if self.arena is not None:
            so.enable_cpu_mem_arena = self.arena
        if self.spin is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        return so


@dataclass(frozen=True)
class TrtOptions:
    """Options of the tensorrt runtime (``--runtime-option KEY=VALUE``): ``cuda_graphs``: capture
    and replay the U-Net step in a CUDA graph (default on); ``plugins``: the plugin library (default:
    the manifest's, or ``$LDMVFI_FAST_TRT_PLUGINS``)."""
    cuda_graphs: bool = True
    plugins: str | None = None
