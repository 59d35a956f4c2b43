"""How close a student's K-step samples are to the teacher's many-step DDIM (latent MSE).

On held-out triplets (their conditioning), with the same initial noise for everyone:

* reference: the teacher's deterministic DDIM (eta 0) with ``ref_steps`` trailing timesteps;
* ``teacher_ddim_trailing``: the teacher's K-step DDIM at the student's timesteps;
* ``teacher_ddim_uniform``: the teacher's K-step DDIM at the original's uniform timesteps
  (``ddim_timesteps``: ``range(0, T, T // K) + 1``);
* ``student``: the student's K steps at its record's timesteps, deterministic DDIM on its x0
  (for consistency students also ``student_fresh_noise``: multistep consistency sampling with new
  noise at each step, as the ``consistency`` sampler).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..sampling import ddim_timesteps
from .objectives import model_output, sample_student
from .student import trailing_timesteps

__all__ = ["latent_mse_report", "teacher_sample"]


def _x0_fn(model, cond: Tensor):
    rec = model.distillation
    fn = lambda x, t, c: model.eps(x, t, c)  # noqa: E731 - raw U-Net output
    return lambda x, t: model_output(fn, x, t, cond, model.alphas_cumprod, rec)


@torch.no_grad()
def teacher_sample(teacher, cond: Tensor, x_T: Tensor, timesteps: list[int]) -> Tensor:
    """Deterministic DDIM of the teacher at the given descending timesteps (lands at alphas_cumprod[0])."""
    return sample_student(_x0_fn(teacher, cond), x_T, timesteps, teacher.alphas_cumprod.float())


@torch.no_grad()
def latent_mse_report(teacher, students: dict[int, object], cond: Tensor, *, ref_steps: int = 64,
                      seed: int = 1234, batch: int = 8) -> dict:
    """``{K: {"student", "teacher_ddim_trailing", "teacher_ddim_uniform", ...}}``: mean latent MSE
    to the teacher's ``ref_steps``-step DDIM, over ``cond`` (N, 2C, h, w)."""
    T = int(teacher.alphas_cumprod.shape[0])
    C = cond.shape[1] // 2
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn((cond.shape[0], C) + tuple(cond.shape[2:]), generator=g)
    ac = teacher.alphas_cumprod.float()
    ref = torch.cat([teacher_sample(teacher, c, x, trailing_timesteps(ref_steps, T))
                     for c, x in zip(cond.split(batch), x_T.split(batch))])

    def mse(a: Tensor) -> float:
        return float((a - ref).pow(2).mean())

    report = {}
    for K, student in students.items():
        r = {}
        for name, ts in (("teacher_ddim_trailing", trailing_timesteps(K, T)),
                         ("teacher_ddim_uniform", [int(x) for x in ddim_timesteps(K, T)[::-1]])):
            r[name] = mse(torch.cat([teacher_sample(teacher, c, x, ts) for c, x in zip(cond.split(batch),
                                                                                        x_T.split(batch))]))
        ts = student.distillation["timesteps"] if student.distillation["steps"] == K else trailing_timesteps(K, T)
        r["student"] = mse(torch.cat([sample_student(_x0_fn(student, c), x, ts, ac)
                                      for c, x in zip(cond.split(batch), x_T.split(batch))]))
        if student.distillation["method"] == "consistency" and K > 1:
            gg = torch.Generator().manual_seed(seed + 1)
            r["student_fresh_noise"] = mse(torch.cat([
                sample_student(_x0_fn(student, c), x, ts, ac, renoise="fresh", generator=gg)
                for c, x in zip(cond.split(batch), x_T.split(batch))]))
        r["teacher_ddim_best"] = min(r["teacher_ddim_trailing"], r["teacher_ddim_uniform"])
        r["ratio"] = r["student"] / r["teacher_ddim_best"]
        report[K] = r
    return report
