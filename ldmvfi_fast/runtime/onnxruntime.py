"""ONNX graphs (``encoder.onnx``, ``unet_step.onnx``, ``decoder.onnx`` + ``manifest.json``) run
with ONNX Runtime as a :class:`~.base.Backbone`.

Made by :func:`ldmvfi_fast.export.onnx.export_onnx`. Everything the pipeline needs (pad
unit, schedule, prediction type, accepted sizes, output shapes) comes from the manifest.

Tensors are passed with I/O binding: the inputs' memory is handed to ONNX Runtime as is and
the outputs are written into torch tensors allocated here, so on CUDA (``onnxruntime-gpu``,
``CUDAExecutionProvider``) frames and latents never leave the device, and ONNX Runtime runs
on torch's current CUDA stream (``user_compute_stream``, fixed when the sessions are made).
``onnxruntime`` is imported only when a folder is loaded.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from ..errors import EngineError
from ..runtime_options import OrtOptions
from ._engine import EngineBackbone

log = logging.getLogger(__name__)

__all__ = ["OrtBackbone", "OrtOptions", "import_onnxruntime"]



def import_onnxruntime():
    """``import onnxruntime`` with an error that names the package."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineError(f"the onnxruntime runtime needs the package onnxruntime ({exc}): pip install onnxruntime "
                          "(CPU) or onnxruntime-gpu (CUDA)") from None
    return onnxruntime


def _np_type(dtype: torch.dtype):
    import numpy as np

    if dtype == torch.bfloat16:
        try:
            import ml_dtypes
        except ImportError:
            raise EngineError("bfloat16 engines need the package ml_dtypes (pip install ml_dtypes)") from None
        return ml_dtypes.bfloat16
    return {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64,
            torch.int32: np.int32}[dtype]


def _sizes_from(inputs: list[dict], tensors: list[Tensor]) -> dict[str, int]:
    """Values of the symbols ``batch``, ``H``, ``W`` from the inputs' named axes."""
    env: dict[str, int] = {}
    for desc, t in zip(inputs, tensors):
        for i, sym in enumerate(desc["shape"]):
            if isinstance(sym, str):
                base, _, div = sym.partition("/")
                env.setdefault(base, int(t.shape[i]) * (int(div) if div else 1))
    return env


def _shape(desc: dict, env: dict[str, int]) -> list[int]:
    out = []
    for sym in desc["shape"]:
        if isinstance(sym, int):
            out.append(sym)
        else:
            base, _, div = sym.partition("/")
            out.append(env[base] // (int(div) if div else 1))
    return out


class OrtBackbone(EngineBackbone):
    """Runs the three ONNX graphs of one folder with ONNX Runtime. Use :meth:`from_dir`."""


    def __init__(self, folder: str | Path, manifest: dict, sessions: dict, device: torch.device):
        self._init_facts(folder, manifest, device)
        self.sessions = sessions
        self.providers = {k: s.get_providers() for k, s in sessions.items()}

    @classmethod
    def from_dir(cls, folder: str | Path, *, device: str | torch.device | None = None,
                 providers: list | None = None, expect_weights_hash: str | None = None,
                 session_options=None, options: OrtOptions | None = None) -> OrtBackbone:
        """Load an ONNX engine folder.

        Args:
            device: ``cpu`` (default) or ``cuda[:i]`` (needs ``onnxruntime-gpu``).
            providers: ONNX Runtime execution providers (default: CUDA with torch's stream
                for a CUDA device, else CPU).
            expect_weights_hash: refuse engines made from other weights
                (see :func:`~ldmvfi_fast.manifest.weights_hash`).
            session_options: an ``onnxruntime.SessionOptions`` for every session.
            options: :class:`OrtOptions` (the same, by name; ignored when ``session_options`` is given).
        """
        m, paths = cls.open_folder(folder, expect_weights_hash)
        if m.get("custom_ops_mode") == "domain":
            raise EngineError(f"the graphs in {folder} were exported with custom_ops='domain': their "
                              f"{sorted(m.get('custom_op_domains') or ['ldmvfi_fast'])} domain nodes "
                              f"({', '.join(m.get('custom_ops') or []) or '?'}) need the TensorRT plugins, "
                              "which ONNX Runtime does not have; export again with custom_ops='decompose' "
                              "(--custom-ops decompose) to run them here")
        if m.get("custom_ops"):
            raise EngineError(f"the graphs in {folder} use the custom op domain ({m['custom_ops']}), which this "
                              "runtime cannot run; export again with custom_ops='decompose'")
        ort = import_onnxruntime()
        dev = torch.device(device if device is not None else "cpu")
        if providers is None:
            if dev.type == "cuda":
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise EngineError("device cuda needs onnxruntime-gpu (CUDAExecutionProvider is not available: "
                                      f"{ort.get_available_providers()}); pip install onnxruntime-gpu")
                idx = dev.index if dev.index is not None else torch.cuda.current_device()
                dev = torch.device("cuda", idx)
                with torch.cuda.device(idx):
                    stream = torch.cuda.current_stream().cuda_stream
                providers = [("CUDAExecutionProvider", {"device_id": idx, "has_user_compute_stream": "1",
                                                        "user_compute_stream": str(stream)})]
            elif dev.type == "cpu":
                providers = ["CPUExecutionProvider"]
            else:
                raise EngineError(f"the onnxruntime runtime runs on cpu or cuda, not {dev}")
        so = session_options
        if so is None and options is not None and not options.is_default():
            so = options.session_options(ort)
        if so is None:
            so = ort.SessionOptions()
            so.log_severity_level = 3
        sessions = {}
        for name, path in paths.items():
            try:
                sessions[name] = ort.InferenceSession(str(path), so, providers=providers)
            except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
                raise EngineError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
        log.info("loaded ONNX engines from %s (%s, %s, %s)", folder, m["dtype"], dev,
                 sessions["encoder"].get_providers()[0])
        return cls(folder, m, sessions, dev)

    def _run(self, graph: str, tensors: list[Tensor]) -> list[Tensor]:
        g = self.manifest["graphs"][graph]
        sess = self.sessions[graph]
        io = sess.io_binding()
        dev_type = "cuda" if self.device.type == "cuda" else "cpu"
        dev_id = self.device.index or 0
        keep = []
        for desc, t in zip(g["inputs"], tensors):
            t = t.to(device=self.device, dtype=getattr(torch, desc["dtype"])).contiguous()
            keep.append(t)  # alive until the run ends
            io.bind_input(desc["name"], dev_type, dev_id, _np_type(t.dtype), list(t.shape), t.data_ptr())
        env = _sizes_from(g["inputs"], keep)
        outs = []
        for desc in g["outputs"]:
            o = torch.empty(_shape(desc, env), dtype=getattr(torch, desc["dtype"]), device=self.device)
            io.bind_output(desc["name"], dev_type, dev_id, _np_type(o.dtype), list(o.shape), o.data_ptr())
            outs.append(o)
        sess.run_with_iobinding(io)
        return outs

