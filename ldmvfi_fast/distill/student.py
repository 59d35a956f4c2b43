"""The student: its timesteps, its distillation record, and its checkpoint file.

A student checkpoint is a normal LDMVFI checkpoint (``{"state_dict": ...}`` with the teacher's
key layout) plus a top-level ``"distillation"`` record:

* ``model.diffusion_model.*``: the student's raw (last-iterate) U-Net weights;
* ``model_ema.*``: the EMA of the student's U-Net, which :func:`~ldmvfi_fast.checkpoint.load_model`
  loads by default (``use_ema=False`` loads the raw weights);
* ``first_stage_model.*`` and the schedule buffers: the teacher's, unchanged (frozen);
* ``"distillation"``: ``{"method", "prediction", "unet_output", "steps", "timesteps", "sampler",
  "boundary" (consistency only), "teacher_weights_hash", "config", "toolkit_version", ...}``.

Timesteps use the sampler registry's "trailing" spacing
(:func:`ldmvfi_fast.sampling.make_timesteps`, ``t_i = round(T - i T / N) - 1`` for i < N), the
one the pipeline samples with: the first step starts at t = T - 1 (pure noise), and the grid of
N/2 steps is every second point of the grid of N steps (progressive rounds nest) wherever
``i T / N`` is exact, e.g. for every power of 2 on T = 1000 (the registry computes ``T - i T / N``
in floating point, so a tie such as 937.5 for 48 steps of 1000 can round down: 48 steps do not
nest in 96). After the last step the sampler lands at ``alphas_cumprod[0]`` (as the original's
DDIM).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import (AE_PREFIX, DISTILLATION_KEY, EMA_PREFIX, UNET_PREFIX, ema_key,  # noqa: F401
                          validate_distillation)
from .._atomic import replace_atomically
from ..errors import OptionError
from ..models.ldmvfi import LDMVFI
from ..sampling import SCHEDULE_BUFFERS, make_timesteps

__all__ = ["trailing_timesteps", "progressive_rounds", "make_record", "student_state_dict", "save_student",
           "atomic_torch_save"]


def trailing_timesteps(steps: int, num_train_steps: int = 1000) -> list[int]:
    """``steps`` descending timesteps of the registry's trailing spacing on ``num_train_steps``
    training steps (:func:`~ldmvfi_fast.sampling.make_timesteps`; the first is T - 1)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_train_steps:
        raise OptionError(f"steps must be an integer in [1, {num_train_steps}], got {steps!r}")
    # the trailing spacing reads only the schedule's length
    return [int(t) for t in make_timesteps(torch.zeros(num_train_steps), steps, spacing="trailing")]


def progressive_rounds(teacher_steps: int, steps: int) -> list[int]:
    """Student step counts of the progressive rounds: ``teacher_steps / 2, ..., steps``.

    Raises :class:`OptionError` when halving ``teacher_steps`` never reaches ``steps``."""
    for name, v in (("steps", steps), ("teacher steps", teacher_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise OptionError(f"{name} must be a positive integer, got {v!r}")
    rounds, n = [], teacher_steps
    while n > steps and n % 2 == 0:
        n //= 2
        rounds.append(n)
    if n != steps:
        reach = [teacher_steps >> i for i in range(1, teacher_steps.bit_length()) if teacher_steps % (1 << i) == 0]
        raise OptionError(f"progressive distillation halves the step count each round: from {teacher_steps} teacher "
                          f"steps it reaches {reach or 'nothing'}, not {steps}; pick --steps among those or "
                          f"--teacher-steps = {steps} x a power of 2")
    return rounds


def make_record(method: str, steps: int, prediction: str, unet_output: str, num_train_steps: int,
                boundary: dict | None, teacher_hash: str, config: dict, extra: dict | None = None) -> dict:
    """The ``"distillation"`` record of a student (validated)."""
    from .. import __version__

    rec = {"method": method, "prediction": prediction, "unet_output": unet_output, "steps": int(steps),
           "timesteps": trailing_timesteps(int(steps), num_train_steps),
           "sampler": "consistency" if method == "consistency" else "ddim",
           "teacher_weights_hash": teacher_hash, "config": config, "toolkit_version": __version__}
    if boundary is not None:
        rec["boundary"] = dict(boundary)
    rec.update(extra or {})
    return validate_distillation(rec, num_train_steps, "student")


def student_state_dict(teacher: LDMVFI, unet_raw: dict, unet_ema: dict) -> dict:
    """The checkpoint ``state_dict`` of a student: teacher layout, student U-Net weights."""
    sd = {}
    for n, t in teacher.first_stage.state_dict().items():
        sd[AE_PREFIX + n] = t.detach().cpu()
    for n in SCHEDULE_BUFFERS:
        sd[n] = getattr(teacher, n).detach().cpu()
    params = {n for n, _ in teacher.unet.named_parameters()}
    for n, t in unet_raw.items():
        sd[UNET_PREFIX + n] = t.detach().cpu().clone()
        if n in params:
            sd[ema_key(n)] = unet_ema[n].detach().cpu().clone()
    return sd


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename onto it."""
    replace_atomically(path, lambda tmp: torch.save(obj, tmp))


def save_student(path: Path, teacher: LDMVFI, unet_raw: dict, unet_ema: dict, record: dict) -> None:
    """Write a student checkpoint (loadable by :func:`~ldmvfi_fast.checkpoint.load_model`), atomically."""
    atomic_torch_save({"state_dict": student_state_dict(teacher, unet_raw, unet_ema), DISTILLATION_KEY: record},
                      path)
