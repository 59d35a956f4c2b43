"""Distillation of the LDMVFI U-Net into a few-step student (progressive or consistency).

``distill(teacher_ckpt, run_dir, DistillConfig(...), data=videos | vimeo=root)`` trains; the
student checkpoint loads with :func:`ldmvfi_fast.checkpoint.load_model` and carries its sampler,
steps and timesteps (``model.distillation``). Command line: ``ldmvfi-fast distill`` (:mod:`.cli`).
"""
from .student import make_record, progressive_rounds, save_student, trailing_timesteps
from .train import DistillConfig, distill

__all__ = ["DistillConfig", "distill", "make_record", "progressive_rounds", "save_student", "trailing_timesteps"]
