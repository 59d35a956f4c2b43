"""What every engine-folder runtime shares: reading and checking the folder's manifest, the
backbone facts it records, and the size check against the shapes the engines accept.

A runtime subclasses :class:`EngineBackbone`, calls :meth:`EngineBackbone.open_folder` in its
``from_dir`` (manifest validated, runtime kind, weights hash, every file present) and
:meth:`EngineBackbone._init_facts` in its constructor, then implements ``encode`` /
``denoise`` / ``decode``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import EngineError, InputError
from ..export.manifest import read_manifest

__all__ = ["EngineBackbone"]


class EngineBackbone:
    """Base of the backbones that run an engine folder (``manifest.json`` + one file per sub-model)."""

    name = "engine"
    #: the manifest's ``runtime`` this class runs
    runtime = ""
    #: words for messages ("torch.export programs", "ONNX graphs", ...)
    kind = "engines"

    @classmethod
    def open_folder(cls, folder: str | Path, expect_weights_hash: str | None = None) -> tuple[dict, dict[str, Path]]:
        """(manifest, {graph: path}) of a checked folder; :class:`EngineError` on anything unusable."""
        m = read_manifest(folder)
        if m["runtime"] != cls.runtime:
            raise EngineError(f"{folder} holds {m['runtime']!r} engines, not {cls.kind} ({cls.runtime!r})")
        if expect_weights_hash is not None and expect_weights_hash != m["weights_hash"]:
            raise EngineError(f"the engines in {folder} were made from other weights than this checkpoint "
                              f"({m['weights_hash'][:19]}... vs {expect_weights_hash[:19]}...): export them again")
        paths = {name: Path(folder) / g["file"] for name, g in m["graphs"].items()}
        for path in paths.values():  # all present before any slow loading starts
            if not path.is_file():
                raise EngineError(f"engine file missing: {path} (named in the manifest)")
        return m, paths

    @staticmethod
    def require_compiled_ops(manifest: dict, folder: str | Path, hint: str) -> None:
        """Load ``ldmvfi_fast._C`` when the engines call its ops (their schemas must be registered
        before the engines load); :class:`EngineError` with ``hint`` when it is not available."""
        if not manifest.get("custom_ops"):
            return
        from ..ops import _native

        if _native.LOAD_ERROR is not None:
            raise EngineError(f"the engines in {folder} call the compiled ops {manifest['custom_ops']}, but the "
                              f"extension ldmvfi_fast._C is not available here ({_native.LOAD_ERROR}); {hint}")

    def _init_facts(self, folder: str | Path, manifest: dict, device: torch.device) -> None:
        self.folder, self.manifest, self.device = Path(folder), manifest, device
        self.dtype = getattr(torch, manifest["dtype"])
        self.pad_unit = manifest["pad_unit"]
        self.latent_factor = manifest["latent_factor"]
        self.latent_channels = manifest["latent_channels"]
        self.prediction = manifest["prediction"]
        self.alphas_cumprod = torch.tensor(manifest["alphas_cumprod"], dtype=torch.float32, device=device)
        self.weights_hash = manifest["weights_hash"]

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
