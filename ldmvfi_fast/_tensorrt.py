"""TensorRT facts shared by the engine builder (:mod:`ldmvfi_fast.export.tensorrt`) and the
runtime (:mod:`ldmvfi_fast.runtime.tensorrt`): importing the package, its version, the GPU's
identity, the plugin library, the logger bridge and the key that names an engine. A neutral
module, so the builder and the runtime never import each other.

``import tensorrt`` happens only in :func:`import_tensorrt`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from ._digest import file_digest
from .errors import EngineError

log = logging.getLogger("ldmvfi_fast.export.tensorrt")  # one logger name for TensorRT's own messages

__all__ = ["import_tensorrt", "trt_version", "trt_major", "gpu_identity", "file_digest", "engine_key",
           "expected_key", "load_plugins", "make_logger", "describe"]


def import_tensorrt():
    """``import tensorrt`` with an error that names the package."""
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineError(f"TensorRT engines need the package tensorrt ({exc}): pip install tensorrt "
                          "(NVIDIA's wheels, with a CUDA GPU and driver)") from None
    return tensorrt


def trt_version(trt) -> str:
    return str(getattr(trt, "__version__", "unknown"))


def trt_major(trt) -> int:
    """TensorRT's major version (``__version__``; without one: 10 if the weak-typing builder
    flags exist, else 11)."""
    m = re.match(r"\s*(\d+)\.", trt_version(trt))
    if m:
        return int(m.group(1))
    return 10 if hasattr(trt.BuilderFlag, "FP16") else 11


def gpu_identity(device: int | None = None) -> dict:
    """``{"name", "compute_capability"}`` of the CUDA device (an engine runs only where it was built)."""
    import torch

    if not torch.cuda.is_available():
        raise EngineError("TensorRT engines are built and run on a CUDA GPU; none is available here "
                          f"(torch {torch.__version__}, CUDA {torch.version.cuda})")
    idx = torch.cuda.current_device() if device is None else device
    major, minor = torch.cuda.get_device_capability(idx)
    return {"name": torch.cuda.get_device_name(idx), "compute_capability": f"{major}.{minor}"}


def engine_key(*, onnx_digest: str, trt_version: str, gpu: dict, precision: str, profiles: dict,
               plugins_digest: str | None, policy: dict | None = None) -> str:
    """sha256 (hex) identifying one engine: what it was built from, with which TensorRT, for which
    GPU, under which precision policy (``policy``: the build manifest's record, ``{"version",
    "fp32_islands"}``, its version and islands both in the key; ``None`` when it records none)."""
    facts = {"onnx": onnx_digest, "tensorrt": trt_version, "gpu": gpu.get("name"),
             "compute_capability": gpu.get("compute_capability"), "precision": precision,
             "profiles": profiles, "plugins": plugins_digest, "precision_policy": policy}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()

def load_plugins(trt, path: str | Path | None, logger=None) -> str | None:
    """Register TensorRT's own plugins and, if given, the ldmvfi_fast plugin library; returns
    the library's digest (``None`` without one). :class:`EngineError` when it cannot be loaded."""
    if logger is not None and hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise EngineError(f"TensorRT plugin library not found: {p} (build it with cmake -DTENSORRT_ROOT=...; "
                          "see csrc/plugins/tensorrt)")
    try:
        registry = trt.get_plugin_registry()
        handle = registry.load_library(str(p))
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable library
        raise EngineError(f"cannot load the TensorRT plugin library {p}: {type(exc).__name__}: {exc}") from None
    if handle is None:
        raise EngineError(f"TensorRT refused the plugin library {p} (no getCreators / plugin creators in it)")
    return file_digest(p)

class _TrtLogger:
    """A tensorrt.ILogger that forwards to :mod:`logging`."""

    def __new__(cls, trt):
        levels = {trt.Logger.INTERNAL_ERROR: logging.CRITICAL, trt.Logger.ERROR: logging.ERROR,
                  trt.Logger.WARNING: logging.WARNING, trt.Logger.INFO: logging.INFO,
                  trt.Logger.VERBOSE: logging.DEBUG}

        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                log.log(levels.get(severity, logging.INFO), "TensorRT: %s", msg)

        return Logger()

def make_logger(trt):
    try:
        return _TrtLogger(trt)
    except Exception:  # noqa: BLE001 - bindings without ILogger subclassing: TensorRT's own logger
        return trt.Logger(trt.Logger.WARNING)

def expected_key(manifest: dict, graph: str, *, trt_version: str, gpu: dict, plugins_digest: str | None) -> str:
    """The key an engine of ``manifest`` must have to run with this TensorRT, GPU and plugin library."""
    t = manifest["tensorrt"]
    return engine_key(onnx_digest=t["engines"][graph]["onnx_digest"], trt_version=trt_version, gpu=gpu,
                      precision=t["precision"], profiles=manifest["graphs"][graph]["profiles"],
                      plugins_digest=plugins_digest, policy=t.get("precision_policy"))

def describe(manifest: dict) -> str:
    t = manifest["tensorrt"]
    return (f"TensorRT {t['version']}, {t['gpu'].get('name')} (sm {t['gpu'].get('compute_capability')}), "
            f"{t['precision']} ({t.get('precision_mode', 'typed')})")
