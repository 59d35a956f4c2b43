"""Distillation of the LDMVFI U-Net into a few-step student (progressive or consistency).

``distill(teacher_ckpt, run_dir, DistillConfig(...), data=videos | vimeo=root)`` trains; the
student checkpoint loads with :func:`ldmvfi_fast.checkpoint.load_model` and carries its sampler,
steps and timesteps (``model.distillation``). Command line: ``ldmvfi-fast distill`` (:mod:`.cli`).
"""
from .._lazy import lazy_getattr

__all__ = ["DistillConfig", "distill", "make_record", "progressive_rounds", "save_student", "trailing_timesteps"]

#: imported on first use (PEP 562): the command line's parser reads :mod:`.cli` without torch
_LAZY = {"DistillConfig": "train", "distill": "train", "make_record": "student", "progressive_rounds": "student",
         "save_student": "student", "trailing_timesteps": "student"}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
