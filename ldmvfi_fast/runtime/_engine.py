"""What every engine-folder runtime shares: reading and checking the folder's manifest, the
backbone facts it records, and the size check against the shapes the engines accept.

A runtime subclasses :class:`EngineBackbone` (its name comes from :mod:`ldmvfi_fast.formats`),
calls :meth:`EngineBackbone.open_folder` in its
``from_dir`` (manifest validated, runtime kind, weights hash, every file present) and
:meth:`EngineBackbone._init_facts` in its constructor, then implements ``encode`` /
``denoise`` / ``decode``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from .. import formats
from ..manifest import engine_facts, open_engine_folder, require_compiled_ops

__all__ = ["EngineBackbone"]


class EngineBackbone:
    """Base of the backbones that run an engine folder (``manifest.json`` + one file per sub-model).

    A subclass's ``runtime``, ``name`` and ``kind`` come from the format registry
    (:mod:`ldmvfi_fast.formats`: the entry whose backbone is the subclass), not from the class."""

    name = "engine"
    #: the manifest's ``runtime`` this class runs (set from the registry)
    runtime = ""
    #: words for messages ("torch.export programs", "ONNX graphs", ...)
    kind = "engines"

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        try:
            fmt = formats.for_module(cls.__module__)
        except LookupError:  # a class outside the registry (a test's stand-in) names itself
            return
        cls.runtime = cls.name = fmt.runtime
        cls.kind = fmt.kind

    @classmethod
    def open_folder(cls, folder: str | Path, expect_weights_hash: str | None = None) -> tuple[dict, dict[str, Path]]:
        """(manifest, {graph: path}) of a checked folder; :class:`EngineError` on anything unusable."""
        return open_engine_folder(folder, cls.runtime, cls.kind, expect_weights_hash)

    @staticmethod
    def require_compiled_ops(manifest: dict, folder: str | Path, hint: str) -> None:
        """See :func:`ldmvfi_fast.manifest.require_compiled_ops`."""
        require_compiled_ops(manifest, folder, hint)

    def _init_facts(self, folder: str | Path, manifest: dict, device: torch.device) -> None:
        facts = engine_facts(manifest)
        self.folder, self.manifest, self.device, self.facts = Path(folder), manifest, device, facts
        self.dtype = getattr(torch, facts.dtype)
        self.pad_unit = facts.pad_unit
        self.latent_factor = facts.latent_factor
        self.latent_channels = facts.latent_channels
        self.prediction = facts.prediction
        self.alphas_cumprod = torch.tensor(facts.alphas_cumprod, dtype=torch.float32, device=device)
        self.weights_hash = facts.weights_hash
        #: a distilled student's record (its sampler, steps, timesteps), None for the teacher
        self.distillation = facts.distillation

    def check_size(self, height: int, width: int, batch: int) -> None:
        s = self.manifest["sizes"]
        ok = (s["min_height"] <= height <= s["max_height"] and s["min_width"] <= width <= s["max_width"]
              and height % s["multiple"] == 0 and width % s["multiple"] == 0 and 1 <= batch <= s["max_batch"])
        if not ok:
            raise InputError(f"padded frames {height}x{width} (batch {batch}) are outside what the {self.kind} "
                             f"accept: heights {s['min_height']}..{s['max_height']}, widths "
                             f"{s['min_width']}..{s['max_width']}, multiples of {s['multiple']}, batch <= "
                             f"{s['max_batch']}; use the torch runtime for this size")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.folder)!r}, {self.device}, {self.dtype})"

    # runtimes that run each graph on a flat list of tensors implement ``_run`` and get the
    # three Backbone calls from here (ONNX Runtime, TensorRT)
    def _run(self, graph: str, tensors: list) -> list:
        raise NotImplementedError

    def encode(self, frames):
        z, *phi = self._run("encoder", [frames])
        return z, phi

    def denoise(self, x_t, t, cond):
        return self._run("unet_step", [x_t, t, cond])[0]

    def decode(self, z, phi0, phi1, frame0, frame1):
        return self._run("decoder", [z, *phi0, *phi1, frame0, frame1])[0]
