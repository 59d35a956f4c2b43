"""TensorRT engines (made by ``export/build_trt.py``) run as a :class:`~.base.Backbone`.

:meth:`TrtBackbone.from_dir` checks the folder's manifest (runtime ``tensorrt``), loads the
ldmvfi_fast plugin library first when the engines use it, recomputes every engine's key
(:func:`ldmvfi_fast.export.tensorrt.engine_key`: ONNX source, TensorRT version, GPU,
precision, profile, plugin library) and refuses a stale engine, then deserializes them.

Each sub-model runs from static torch CUDA buffers (allocated on first use at the size
asked, grown when a larger size comes, never beyond the engine's profile): inputs are
copied in, ``set_input_shape`` is called when the shapes change, and ``execute_async_v3``
runs on torch's current stream. The U-Net step, called once per sampling step with the
same shapes, is captured in a CUDA graph after one warm-up run per shape and replayed; if
the capture fails, it is logged and that graph runs plainly from then on.

Buffers are allocated in each I/O tensor's dtype as the manifest describes it (float32 frames,
latents and eps at every engine precision; int64 ``t``). Needs ``tensorrt`` (TensorRT 10 or 11
Python bindings) and a CUDA GPU; imported only when a folder is loaded.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor

from ..errors import EngineError, InputError
from .._tensorrt import (
    expected_key,
    gpu_identity,
    import_tensorrt,
    load_plugins,
    make_logger,
    trt_version,
)
from ..runtime_options import TrtOptions
from ._engine import EngineBackbone

log = logging.getLogger(__name__)

__all__ = ["PLUGINS_ENV", "TrtBackbone", "TrtOptions"]

#: environment variable naming the plugin library when it is not beside the engines
PLUGINS_ENV = "LDMVFI_FAST_TRT_PLUGINS"
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "int64": torch.int64, "int32": torch.int32}


class _Graph:
    """One engine with its execution context, static buffers and (optionally) a CUDA graph."""

    def __init__(self, name: str, engine, spec: dict, device: torch.device, use_graph: bool):
        self.name, self.engine, self.spec, self.device = name, engine, spec, device
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineError(f"TensorRT could not create an execution context for {name} (out of GPU memory?)")
        self.inputs = [d["name"] for d in spec["inputs"]]
        self.outputs = [d["name"] for d in spec["outputs"]]
        self.dtypes = {d["name"]: _TORCH_DTYPES[d["dtype"]] for d in spec["inputs"] + spec["outputs"]}
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if names != set(self.inputs) | set(self.outputs):
            raise EngineError(f"engine {name} has tensors {sorted(names)}, the manifest says "
                              f"{sorted(self.inputs + self.outputs)}: rebuild it with export/build_trt.py")
        self.max_shapes = {n: tuple(s["max"]) for n, s in spec["profiles"].items()}
        self.buffers: dict[str, Tensor] = {}
        self.shapes: tuple | None = None
        self.use_graph = use_graph
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self.warm: set[tuple] = set()

    def _buffer(self, name: str, numel: int) -> bool:
        """Make the static buffer of ``name`` hold ``numel`` elements; True when it moved."""
        buf = self.buffers.get(name)
        if buf is not None and buf.numel() >= numel:
            return False
        self.buffers[name] = torch.empty(numel, dtype=self.dtypes[name], device=self.device)
        self.context.set_tensor_address(name, self.buffers[name].data_ptr())
        return True

    def run(self, tensors: list[Tensor]) -> list[Tensor]:
        shapes = tuple(tuple(t.shape) for t in tensors)
        for name, shp in zip(self.inputs, shapes):
            hi = self.max_shapes.get(name)
            if hi is not None and (len(hi) != len(shp) or any(a > b for a, b in zip(shp, hi))):
                raise InputError(f"{self.name} input {name} of shape {list(shp)} exceeds the engine's profile "
                                 f"{list(hi)}: build the engines with a larger --profile max=HxW")
        moved = False
        if shapes != self.shapes:
            for name, shp in zip(self.inputs, shapes):
                if not self.context.set_input_shape(name, shp):
                    raise InputError(f"TensorRT refused shape {list(shp)} for {self.name} input {name}")
                moved |= self._buffer(name, _numel(shp))
            self.shapes = shapes
            self.graphs.clear()  # a graph replays the launches of the shapes it was captured at
            self.warm.clear()
        out_shapes = [tuple(self.context.get_tensor_shape(n)) for n in self.outputs]
        for name, shp in zip(self.outputs, out_shapes):
            moved |= self._buffer(name, _numel(shp))
        if moved:  # captured graphs point at the old buffers
            self.graphs.clear()
            self.warm.clear()
        for name, t, shp in zip(self.inputs, tensors, shapes):
            self.buffers[name][:_numel(shp)].view(shp).copy_(t, non_blocking=True)
        stream = torch.cuda.current_stream(self.device)
        graph = self.graphs.get(shapes)
        if graph is not None:
            graph.replay()
        elif self.use_graph and shapes in self.warm:
            self._capture(shapes, stream)
        else:
            self._execute(stream)
            self.warm.add(shapes)
        return [self.buffers[n][:_numel(s)].view(s).clone() for n, s in zip(self.outputs, out_shapes)]

    def _execute(self, stream) -> None:
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"TensorRT failed to run {self.name} (see the TensorRT log)")

    def _capture(self, shapes: tuple, stream) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._execute(torch.cuda.current_stream(self.device))
        except Exception as exc:  # noqa: BLE001 - any capture failure: run without graphs
            log.warning("%s: CUDA graph capture failed (%s: %s); running without CUDA graphs", self.name,
                        type(exc).__name__, exc)
            self.use_graph = False
            torch.cuda.synchronize(self.device)
            self._execute(stream)
            return
        self.graphs[shapes] = graph
        log.debug("%s: captured a CUDA graph for %s", self.name, shapes)
        graph.replay()


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


class TrtBackbone(EngineBackbone):
    """Runs the three TensorRT engines of one folder. Use :meth:`from_dir`."""


    def __init__(self, folder: str | Path, manifest: dict, engines: dict, device: torch.device,
                 cuda_graphs: bool = True, keep_alive=()):
        self._init_facts(folder, manifest, device)
        self._keep_alive = keep_alive  # runtime + logger outlive the engines
        self.graphs = {g: _Graph(g, e, manifest["graphs"][g], device, use_graph=cuda_graphs and g == "unet_step")
                       for g, e in engines.items()}

    @classmethod
    def from_dir(cls, folder: str | Path, *, device: str | torch.device | None = None,
                 expect_weights_hash: str | None = None, plugins: str | Path | None = None,
                 cuda_graphs: bool | None = None, options: TrtOptions | None = None) -> TrtBackbone:
        """Load a TensorRT engine folder.

        Args:
            device: ``cuda[:i]`` (default: the current CUDA device).
            plugins: the plugin library, when the engines use it (default: the file named in
                the manifest beside the engines, or ``$LDMVFI_FAST_TRT_PLUGINS``).
            cuda_graphs: capture and replay the U-Net step in a CUDA graph (default on).
            options: :class:`TrtOptions` (``cuda_graphs`` and ``plugins`` given here win).
        """
        options = options or TrtOptions()
        cuda_graphs = options.cuda_graphs if cuda_graphs is None else cuda_graphs
        plugins = plugins if plugins is not None else options.plugins
        m, paths = cls.open_folder(folder, expect_weights_hash)
        if not isinstance(m.get("tensorrt"), dict):
            raise EngineError(f"{folder}: the manifest has no 'tensorrt' build record: build it with "
                              "export/build_trt.py")
        trt = import_tensorrt()
        dev = torch.device(device if device is not None else "cuda")
        if dev.type != "cuda":
            raise EngineError(f"TensorRT engines run on a CUDA device, not {dev}")
        if not torch.cuda.is_available():
            raise EngineError("TensorRT engines need a CUDA GPU; none is available here")
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        dev = torch.device("cuda", idx)
        rec = m["tensorrt"]
        logger = make_logger(trt)
        lib = None
        if rec.get("plugins"):
            lib = Path(plugins or os.environ.get(PLUGINS_ENV) or Path(folder) / rec["plugins"]["file"])
            if not lib.is_file():
                raise EngineError(f"the engines in {folder} use the ldmvfi_fast TensorRT plugins, but the library "
                                  f"{lib} is missing: pass plugins= (--plugins) or set {PLUGINS_ENV}")
        digest = load_plugins(trt, lib, logger)
        gpu = gpu_identity(idx)
        version = trt_version(trt)
        for g, path in paths.items():
            key = expected_key(m, g, trt_version=version, gpu=gpu, plugins_digest=digest)
            if key != rec["engines"][g]["key"] or key[:16] not in path.name:
                raise EngineError(
                    f"stale TensorRT engine {path.name}: built for {rec['version']} on {rec['gpu'].get('name')} "
                    f"(sm {rec['gpu'].get('compute_capability')}) with plugins {_short(rec.get('plugins'))}; here: "
                    f"TensorRT {version} on {gpu['name']} (sm {gpu['compute_capability']}), plugins "
                    f"{(digest or 'none')[:19]}: build the engines again with export/build_trt.py")
        runtime = trt.Runtime(logger)
        engines = {}
        with torch.cuda.device(idx):
            for g, path in paths.items():
                engine = runtime.deserialize_cuda_engine(path.read_bytes())
                if engine is None:
                    raise EngineError(f"TensorRT could not deserialize {path} (see the TensorRT log)")
                engines[g] = engine
        log.info("loaded TensorRT engines from %s (%s, %s)", folder, rec["precision"], gpu["name"])
        return cls(folder, m, engines, dev, cuda_graphs=cuda_graphs, keep_alive=(runtime, logger))

    def _run(self, graph: str, tensors: list[Tensor]) -> list[Tensor]:
        g = self.graphs[graph]
        ts = [t.to(device=self.device, dtype=g.dtypes[n]) for n, t in zip(g.inputs, tensors)]
        with torch.cuda.device(self.device):
            return g.run(ts)



def _short(plugins: dict | None) -> str:
    return (plugins or {}).get("digest", "none")[:19] if plugins else "none"
