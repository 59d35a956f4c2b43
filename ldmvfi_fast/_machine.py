"""What compiled code depends on: this machine's architecture, processor, instruction-set flags and
GPU. AOTInductor's build (:mod:`ldmvfi_fast.export.aoti`) records it in the manifest and its
runtime (:mod:`ldmvfi_fast.runtime.aoti`) compares; a neutral module, so neither imports the other."""
from __future__ import annotations

import platform
from pathlib import Path

import torch

__all__ = ["isa_flags", "machine_info"]

# /proc/cpuinfo flags that name instruction-set extensions -march=native may use
_ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "bmi", "amx", "popcnt", "movbe", "aes", "vaes", "pclmul",
                 "vpclmul", "gfni", "sha", "adx", "abm", "lzcnt", "xsave", "rdrand", "rdseed", "cx16", "mmx",
                 "neon", "asimd", "sve", "fp16", "bf16", "i8mm", "dotprod", "fphp", "asimdhp")


def isa_flags() -> list[str]:
    """This processor's instruction-set flags (from ``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted({f for f in val.split() if f.startswith(_ISA_PREFIXES)})
    return []


def machine_info(device: torch.device | None = None) -> dict:
    """What the compiled code depends on: architecture, processor, inductor's vector ISA, ISA flags
    (the host code of CUDA packages is compiled for this processor too), and for a CUDA ``device``
    the GPU's name and compute capability (the kernels are built for it)."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "cpu model"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        vec = str(pick_vec_isa()) or "none"
    except Exception:  # noqa: BLE001 - informative only
        vec = "unknown"
    info = {"machine": platform.machine(), "system": platform.system(), "cpu": cpu, "vec_isa": vec,
            "march": torch._inductor.config.cpp.march or "native", "isa_flags": isa_flags()}
    if device is not None and device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        info["gpu"] = {"name": torch.cuda.get_device_name(idx),
                       "capability": list(torch.cuda.get_device_capability(idx))}
    return info
