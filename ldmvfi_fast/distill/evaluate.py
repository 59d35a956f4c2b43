"""How close a student's K-step samples are to the teacher's many-step DDIM (latent MSE).

On held-out triplets (their conditioning), with the same initial noise for everyone, every
sample drawn by the pipeline's :class:`~ldmvfi_fast.pipeline.Interpolator` with a sampler of
the registry (:data:`ldmvfi_fast.sampling.SAMPLERS`), as ``ldmvfi-fast interpolate`` samples:

* reference: the teacher's deterministic DDIM (eta 0) with ``ref_steps`` trailing timesteps;
* ``teacher_ddim_trailing``: the teacher's K-step DDIM (eta 0) at the trailing timesteps (the
  student's when it was trained for K steps);
* ``teacher_ddim_uniform``: the teacher's K-step DDIM (eta 0) at the original's uniform timesteps
  (``ddim_timesteps``: ``range(0, T, T // K) + 1``);
* ``student``: the student's K steps at its record's timesteps (trailing ones for another K),
  deterministic DDIM (eta 0) on its prediction (a progressive student's own sampler); for
  consistency students also ``student_fresh_noise``: their own ``consistency`` sampler
  (multistep consistency sampling, new noise at each step) for K > 1.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..pipeline import Encoded, Interpolator
from ..sampling import get_sampler, make_timesteps

__all__ = ["latent_mse_report", "registry_sample", "teacher_sample"]


@torch.no_grad()
def registry_sample(model, cond: Tensor, x_T: Tensor, timesteps: list[int], sampler: str = "ddim",
                    generator: torch.Generator | None = None) -> Tensor:
    """The latent (B, C, h, w) that :class:`~ldmvfi_fast.pipeline.Interpolator` samples with the
    registry's ``sampler`` (eta 0 for a sampler that takes an eta) at the descending ``timesteps``
    from ``x_T``, conditioned on the latents ``cond`` (B, 2C, h, w) (a teacher or a distilled
    student: its record says what its U-Net predicts). ``generator``: the samplers' noise (None:
    a fixed one, not the global RNG)."""
    eta = 0.0 if get_sampler(sampler).uses_eta else None
    interp = Interpolator(model, sampler=sampler, eta=eta, timesteps=[int(t) for t in timesteps])
    z0, z1 = cond.to(interp.device).chunk(2, dim=1)
    # sampling reads only the conditioning latents of the encoded pair
    e0, e1 = (Encoded(frame=z, z=z, phi=[], size=tuple(z.shape[-2:])) for z in (z0, z1))
    if generator is None:
        generator = torch.Generator(device=interp.device).manual_seed(0)
    return interp.sample_latent(e0, e1, generator, x_T=x_T)


@torch.no_grad()
def teacher_sample(teacher, cond: Tensor, x_T: Tensor, timesteps: list[int]) -> Tensor:
    """Deterministic DDIM (eta 0) of the teacher at the given descending timesteps (lands at
    alphas_cumprod[0]): :func:`registry_sample` with the ``ddim`` sampler."""
    return registry_sample(teacher, cond, x_T, timesteps, "ddim")


@torch.no_grad()
def latent_mse_report(teacher, students: dict[int, object], cond: Tensor, *, ref_steps: int = 64,
                      seed: int = 1234, batch: int = 8) -> dict:
    """``{K: {"student", "teacher_ddim_trailing", "teacher_ddim_uniform", ...}}``: mean latent MSE
    to the teacher's ``ref_steps``-step DDIM, over ``cond`` (N, 2C, h, w)."""
    ac = teacher.alphas_cumprod
    C = cond.shape[1] // 2
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn((cond.shape[0], C) + tuple(cond.shape[2:]), generator=g)

    def draw(model, timesteps, sampler="ddim", generator=None) -> Tensor:
        return torch.cat([registry_sample(model, c, x, timesteps, sampler, generator)
                          for c, x in zip(cond.split(batch), x_T.split(batch))])

    ref = draw(teacher, make_timesteps(ac, ref_steps, "trailing"))

    def mse(a: Tensor) -> float:
        return float((a.to(ref.device) - ref).pow(2).mean())

    report = {}
    for K, student in students.items():
        r = {}
        for name, spacing in (("teacher_ddim_trailing", "trailing"), ("teacher_ddim_uniform", "uniform")):
            r[name] = mse(draw(teacher, make_timesteps(ac, K, spacing)))
        rec = student.distillation
        ts = rec["timesteps"] if rec["steps"] == K else make_timesteps(ac, K, "trailing")
        r["student"] = mse(draw(student, ts))
        if rec["method"] == "consistency" and K > 1:
            gg = torch.Generator(device=next(student.parameters()).device).manual_seed(seed + 1)
            r["student_fresh_noise"] = mse(draw(student, ts, "consistency", gg))
        r["teacher_ddim_best"] = min(r["teacher_ddim_trailing"], r["teacher_ddim_uniform"])
        r["ratio"] = r["student"] / r["teacher_ddim_best"]
        report[K] = r
    return report
