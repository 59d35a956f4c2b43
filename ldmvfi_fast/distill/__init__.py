"""Distillation of the LDMVFI U-Net into a few-step student (progressive or consistency).

``distill(teacher_ckpt, run_dir, DistillConfig(...), data=videos | vimeo=root)`` trains; the
student checkpoint loads with :func:`ldmvfi_fast.checkpoint.load_model` and carries its sampler,
steps and timesteps (``model.distillation``). Command line: ``ldmvfi-fast distill`` (:mod:`.cli`).
"""
import importlib

__all__ = ["DistillConfig", "distill", "make_record", "progressive_rounds", "save_student", "trailing_timesteps"]

#: imported on first use (PEP 562): the command line's parser reads :mod:`.cli` without torch
_LAZY = {"DistillConfig": "train", "distill": "train", "make_record": "student", "progressive_rounds": "student",
         "save_student": "student", "trailing_timesteps": "student"}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ldmvfi_fast.distill' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value
