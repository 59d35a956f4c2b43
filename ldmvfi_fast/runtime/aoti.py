"""AOTInductor packages (``encoder.pt2``, ``unet_step.pt2``, ``decoder.pt2`` + ``manifest.json``,
runtime ``aoti``) as a :class:`~.base.Backbone`.

Made by :func:`ldmvfi_fast.export.aoti.build_aoti` (``export/build_aoti.py``); loaded with
``torch._inductor.aoti_load_package``. Everything the pipeline needs comes from the manifest.
The packages run on the device they were compiled for, only on a processor with the
instruction-set extensions of the build machine (their host code is built with -march=native;
checked from the manifest: an illegal instruction would kill the process instead of raising)
and, for CUDA, on a GPU of the build GPU's compute capability.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from ..errors import EngineError
from ._engine import EngineBackbone

log = logging.getLogger(__name__)

__all__ = ["AotiBackbone", "check_build_machine"]


def check_build_machine(manifest: dict, where: str | Path, device: torch.device | None = None) -> None:
    """Raise :class:`EngineError` when the packages were compiled for another architecture, a processor
    with instruction-set extensions this one lacks, or (CUDA) a GPU of another compute capability."""
    from .._machine import isa_flags, machine_info

    built = manifest.get("aoti", {}).get("build_machine", {})
    if not built:
        return
    here = machine_info(device)
    if "gpu" in built and "gpu" in here and built["gpu"]["capability"] != here["gpu"]["capability"]:
        raise EngineError(f"the AOTInductor packages in {where} were compiled for {built['gpu']['name']} (compute "
                          f"capability {built['gpu']['capability']}), this GPU is {here['gpu']['name']} "
                          f"({here['gpu']['capability']}): build them again here (export/build_aoti.py)")
    if built.get("machine") and built["machine"] != here["machine"]:
        raise EngineError(f"the AOTInductor packages in {where} were compiled for {built['machine']}, this machine "
                          f"is {here['machine']}: build them again here (export/build_aoti.py)")
    flags = set(isa_flags())
    missing = sorted(set(built.get("isa_flags", [])) - flags) if flags else []
    if missing:
        raise EngineError(f"the AOTInductor packages in {where} were compiled for a processor with "
                          f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''} ({built.get('cpu', '?')}), "
                          f"which this one ({here['cpu']}) lacks: build them again here (export/build_aoti.py)")


class AotiBackbone(EngineBackbone):
    """Runs the three AOTInductor packages of one folder. Use :meth:`from_dir`."""


    def __init__(self, folder: str | Path, manifest: dict, models: dict, device: torch.device):
        self._init_facts(folder, manifest, device)
        self._mods = models  # name -> torch._inductor AOTICompiledModel

    @classmethod
    def from_dir(cls, folder: str | Path, *, device: str | torch.device | None = None,
                 expect_weights_hash: str | None = None) -> AotiBackbone:
        """Load an AOTI engine folder; ``expect_weights_hash`` (see
        :func:`~ldmvfi_fast.manifest.weights_hash`) refuses packages made from other weights.
        ``device`` may only name the kind compiled for (``cuda:N`` picks the GPU)."""
        m, paths = cls.open_folder(folder, expect_weights_hash)
        built_for = m.get("device", "cpu")
        dev = torch.device(device) if device is not None else torch.device(built_for)
        if dev.type != built_for:
            raise EngineError(f"the AOTInductor packages in {folder} are compiled for {built_for}, not {dev.type}: "
                              f"build them again with --device {dev.type}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EngineError(f"the AOTInductor packages in {folder} are compiled for cuda, and torch sees no CUDA "
                              "device here")
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        check_build_machine(m, folder, dev)
        # the proxy executor finds the ops by schema: register them first
        cls.require_compiled_ops(m, folder, "build the packages from programs exported with backend='reference'")
        mods = {}
        for name, path in paths.items():
            try:
                mods[name] = torch._inductor.aoti_load_package(
                    str(path), device_index=dev.index if dev.type == "cuda" else -1)
            except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
                raise EngineError(f"cannot load {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        log.info("loaded AOTInductor packages from %s (%s, %s)", folder, m["dtype"], dev)
        return cls(folder, m, mods, dev)

    # compiled code is specialised to dense inputs: hand it contiguous tensors
    def encode(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        z, *phi = self._mods["encoder"](frames.contiguous())
        return z, list(phi)

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self._mods["unet_step"](x_t.contiguous(), t.to(torch.long).contiguous(), cond.contiguous())

    def decode(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor], frame0: Tensor, frame1: Tensor) -> Tensor:
        args = [z, *phi0, *phi1, frame0, frame1]
        return self._mods["decoder"](*(a.contiguous() for a in args))
