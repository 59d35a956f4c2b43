"""One trainer for progressive and consistency distillation of the U-Net (the autoencoder is frozen).

:func:`distill` loads the teacher, encodes the triplets (or reads their cache), trains the
student (initialised from the teacher's U-Net) and writes, in ``out_dir``:

* ``student.ckpt``: the student (a normal checkpoint + its ``"distillation"`` record, see
  :mod:`.student`); progressive runs also keep each round's student as ``student_k{N}.ckpt``;
* ``state.pt``: everything a resume needs (student, EMA, target network, round teacher,
  optimizer, iteration, RNG states, the loss history), rewritten every ``save_every`` iterations;
* ``losses.jsonl``: one JSON object per iteration (iteration, round, loss, seconds);
* ``run.json``: what the run is (teacher hash, method, options): a resume must match it.

Every file is written to a temporary name and renamed. Every random choice of iteration ``i``
comes from a generator seeded with ``(seed, rank, i)``, so a run resumed from its last
``state.pt`` continues exactly as the uninterrupted run would (same student, deterministic CPU).

Distribution: when ``torch.distributed`` is initialised (``torchrun --nproc_per_node N``; gloo on
CPU, nccl on CUDA) the student is wrapped in ``DistributedDataParallel``; each rank draws its own
batches, gradients are averaged, rank 0 writes the files. bf16 autocast on CUDA (``amp=True``).

Op backends: the student's forward runs with gradients, which the compiled MaxViT attention
kernels (C++ and Triton) do not support, so the training step runs inside
``use_backend("reference")`` (pure PyTorch attention, differentiable); the frozen teacher's
forwards (no gradient) use ``backend`` (default: the automatic choice, the compiled kernels).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .._atomic import write_text_atomic
from ..errors import CheckpointError, MediaError, OptionError
from .data import TripletLatents, encode_triplets, open_source, sample_batch
from .objectives import consistency_loss, ddim_step, ddim_x0, model_output, progressive_loss, progressive_target
from ..models.ldmvfi import student_output
from ..parameterization import END, alpha_sigma
from ..samplers import check_steps
from ..sampling import get_sampler
from .student import atomic_torch_save, make_record, progressive_rounds, save_student, trailing_timesteps

log = logging.getLogger(__name__)

__all__ = ["DistillConfig", "distill", "METHODS", "RUN_FILES"]

METHODS = ("progressive", "consistency")
RUN_FILES = ("student.ckpt", "state.pt", "losses.jsonl", "run.json")
#: option fields that a resume may change (they do not change the result)
_RESUMABLE = ("save_every",)


@dataclass
class DistillConfig:
    """Options of a distillation run.

    Attributes:
        method: ``progressive`` or ``consistency``.
        steps: K, the student's sampling steps.
        teacher_steps: progressive: the teacher's DDIM steps of the first round (K x a power of 2;
            default 64 or K if larger); consistency: the points of the teacher solver's grid
            (DDIM over the skipped steps between them; default 40, LCM's skipping of ~25 steps).
        prediction: progressive students: ``v`` (default) or ``x0``; consistency students give
            ``x0`` (boundary-scaled, from an eps U-Net output).
        loss: consistency: ``huber`` (default) or ``l2``; progressive: the method's weighted MSE.
        unet_output: what the student's raw U-Net output means: ``eps`` (default: as the teacher's,
            so the student starts as exactly the teacher and the prediction is computed from it)
            or ``direct`` (the output is the prediction itself, v or x0: the paper's choice for
            teachers trained that way; from an eps teacher it starts far from it).
        teacher_x0: the fraction of samples noised from the teacher's own x0 (its one-step
            prediction from pure noise at t = T - 1, conditioned on the triplet's frames) instead of
            the middle frame's latent. The papers noise data (0, default); a teacher whose samples
            are far from the data (a random or under-trained one) puts its sampling trajectories
            elsewhere, and the student must learn there (1).
        inputs: where the student's noisy inputs x_t come from: ``data`` (default, the papers'
            choice: the middle frame's latent noised, or the teacher's x0 with ``teacher_x0``) or
            ``trajectory``: the (round) teacher's own deterministic DDIM trajectories from fresh pure
            noise x_T ~ N(0, I) at t = T - 1, on its grid (progressive: 2N steps, the target of the
            student's step i is the trajectory two teacher steps later, no extra teacher call;
            consistency: the solver's chain, the pair (x_{t_{n+1}}, x_{t_n}) two consecutive points).
            These are exactly the points the K-step sampler visits, so a teacher whose samples are
            far from the data (a random or under-trained one) is distilled where it is used.
        pool: ``inputs="trajectory"``: trajectories drawn per batched pass of the (round)
            teacher; an iteration takes its ``max(1, batch / grid points)`` from the current pool,
            and a new pool (fresh noise and crops) is drawn when it is used up. One pass of 64 costs
            about as much as 10 passes of 1 on a CPU (measured: tiny config, 8x16 latents, 8 DDIM
            steps, 2 threads: 1.15 s vs 0.12 s; the per-call overhead dominates small batches).
        lr_schedule: ``constant`` or ``cosine`` (per round: linear warm-up over the first 5% of
            the iterations, then cosine decay to 5% of ``lr``).
        iters: iterations (per round for progressive).
        batch, lr, crop (frame pixels, multiples of 256), ema_decay (student EMA, warm-up
        min(decay, (1+n)/(10+n))), target_decay (consistency target network), seed,
        grad_checkpoint, grad_clip, save_every, amp (bf16 autocast on CUDA),
        sigma_data / timestep_scaling (boundary scalings).
    """
    method: str = "progressive"
    steps: int = 1
    teacher_steps: int | None = None
    prediction: str = "v"
    loss: str = "huber"
    unet_output: str = "eps"
    teacher_x0: float = 0.0
    inputs: str = "data"
    lr_schedule: str = "constant"
    pool: int = 64
    iters: int = 1000
    batch: int = 8
    lr: float = 1e-4
    crop: tuple[int, int] = (256, 256)
    ema_decay: float = 0.999
    target_decay: float = 0.95
    seed: int = 0
    grad_checkpoint: bool = False
    grad_clip: float = 1.0
    save_every: int = 100
    amp: bool = True
    sigma_data: float = 0.5
    timestep_scaling: float = 10.0

    def resolved(self, pad_unit: int = 256, num_train_steps: int = 1000) -> "DistillConfig":
        """Check every option (OptionError) and fill the defaults; before anything heavy runs."""
        c = dataclasses.replace(self, crop=tuple(int(x) for x in self.crop))
        if c.method not in METHODS:
            raise OptionError(f"method must be one of {METHODS}, got {c.method!r}")
        c.steps = check_steps(c.steps, num_train_steps)  # the one step-range rule (ldmvfi_fast.samplers)
        if c.method == "progressive":
            if c.teacher_steps is None:
                c.teacher_steps = max(64, c.steps)
            if c.prediction not in ("v", "x0"):
                raise OptionError(f"progressive students predict v or x0, got --prediction {c.prediction!r}")
            progressive_rounds(c.teacher_steps, c.steps)  # raises when unreachable
            if c.teacher_steps == c.steps:
                raise OptionError(f"--teacher-steps {c.teacher_steps} equals --steps: nothing to distill")
        else:
            if c.teacher_steps is None:
                c.teacher_steps = 40
            c.prediction = "x0"
            if c.loss not in ("huber", "l2"):
                raise OptionError(f"loss must be huber or l2, got {c.loss!r}")
        if not (isinstance(c.teacher_x0, (int, float)) and 0.0 <= c.teacher_x0 <= 1.0):
            raise OptionError(f"teacher_x0 must be a fraction in [0, 1], got {c.teacher_x0!r}")
        if c.inputs not in ("data", "trajectory"):
            raise OptionError(f"inputs must be data or trajectory, got {c.inputs!r}")
        if c.lr_schedule not in ("constant", "cosine"):
            raise OptionError(f"lr_schedule must be constant or cosine, got {c.lr_schedule!r}")
        if c.unet_output not in ("eps", "direct"):
            raise OptionError(f"unet_output must be eps or direct, got {c.unet_output!r}")
        c.teacher_steps = check_steps(c.teacher_steps, num_train_steps, name="teacher_steps")
        for name in ("iters", "batch", "save_every", "pool"):
            v = getattr(c, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise OptionError(f"{name} must be a positive integer, got {v!r}")
        if len(c.crop) != 2 or any(x < pad_unit or x % pad_unit for x in c.crop):
            raise OptionError(f"crop must be two multiples of {pad_unit} (frame pixels), got {c.crop}")
        for name in ("ema_decay", "target_decay"):
            v = getattr(c, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
                raise OptionError(f"{name} must be in [0, 1), got {v!r}")
        if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
            raise OptionError(f"lr must be a positive number, got {c.lr!r}")
        if isinstance(c.seed, bool) or not isinstance(c.seed, int) or not 0 <= c.seed < 2 ** 63:
            raise OptionError(f"seed must be an integer in [0, 2**63), got {c.seed!r}")
        return c

    def identity(self) -> dict:
        """The fields a resume must match."""
        d = dataclasses.asdict(self)
        d["crop"] = list(d["crop"])
        for k in _RESUMABLE:
            d.pop(k)
        return d


# ---------------------------------------------------------------------------------------------
# helpers


def _seeded_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from ``key`` alone: (seed, rank, iteration) for an iteration's random
    choices, (seed, rank, round, pool, 1) for a trajectory pool; a resumed run gets the same ones."""
    s = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0]) & (2 ** 63 - 1)
    return torch.Generator().manual_seed(s)


class _EMA:
    """Exponential moving average of a module's parameters (float32 copies)."""

    def __init__(self, module: torch.nn.Module, decay: float, warmup: bool):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        sd = module.state_dict()
        self.shadow = {n: p.detach().clone().float() for n, p in sd.items()}
        self._float = [n for n, p in sd.items() if p.dtype.is_floating_point]
        self._other = [n for n, p in sd.items() if not p.dtype.is_floating_point]

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """shadow = d * shadow + (1 - d) * weights (one fused pass over all tensors)."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        sd = module.state_dict()
        dst = [self.shadow[n] for n in self._float]
        torch._foreach_mul_(dst, d)
        torch._foreach_add_(dst, [sd[n].detach().float() for n in self._float], alpha=1 - d)
        for n in self._other:
            self.shadow[n].copy_(sd[n])

    def state(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load(self, st: dict) -> None:
        self.updates = int(st["updates"])
        for n, t in st["shadow"].items():
            self.shadow[n].copy_(t)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        """Write the averages into ``module``'s own tensors (in place: same names as the shadow)."""
        sd = module.state_dict()
        if sd.keys() != self.shadow.keys():
            raise RuntimeError("EMA shadow and module have different tensors")
        for n, t in self.shadow.items():
            sd[n].copy_(t)


def _adamw(module: torch.nn.Module, lr: float) -> torch.optim.AdamW:
    """AdamW (no weight decay), its fused kernel (one pass over all parameters; CPU and CUDA):
    the per-tensor loop of the default CPU implementation cost ~30 ms an iteration on the tiny U-Net."""
    return torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0, fused=True)


def _enable_grad_checkpointing(unet: torch.nn.Module) -> None:
    """Recompute each U-Net block in the backward pass (less memory, ~30% more compute)."""
    from torch.utils.checkpoint import checkpoint

    for blk in [*unet.input_blocks, unet.middle_block, *unet.output_blocks]:
        fwd = blk.forward
        blk.forward = lambda h, emb, _f=fwd: checkpoint(_f, h, emb, use_reentrant=False)


def _plain_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy without the gradient-checkpointing forwards (which would call the original)."""
    c = copy.deepcopy(module)
    for m in c.modules():
        m.__dict__.pop("forward", None)
    return c


def _unet_fn(unet: torch.nn.Module) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    return lambda x, t, c: unet(torch.cat([x, c], dim=1), t)


#: what a ``state.pt`` holds (:meth:`_Trainer.state`; ``target`` and ``round_teacher`` when the run has them)
_STATE_KEYS = ("run_id", "iteration", "round", "student", "ema", "optimizer", "losses", "rng_torch", "options")


def _unreadable(path: Path, why, error=CheckpointError):
    """The one-line error for a resume file that cannot be used: names it and what to do."""
    if isinstance(why, BaseException) and path.is_file() and path.stat().st_size == 0:
        why = "an empty file"
    elif isinstance(why, BaseException):
        text = str(why).strip()
        text = text.splitlines()[0].split(". ")[0].rstrip(".") if text else ""
        why = type(why).__name__ + (f": {text[:160]}" if text else "")
    return error(f"cannot resume from {path}: it is truncated, corrupt or not this tool's ({why}); restore it "
                 f"from a copy, or start the run again with --overwrite (the run folder is unchanged)")


def _read_resume(out: Path) -> tuple[dict, dict]:
    """``(run.json, state.pt)`` of the run in ``out``, read and checked for shape before anything
    loads: an unreadable or foreign file raises :class:`~ldmvfi_fast.errors.MediaError`
    (run.json) or :class:`~ldmvfi_fast.errors.CheckpointError` (state.pt), one line naming it."""
    path = out / "run.json"
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _unreadable(path, exc, MediaError) from None
    if not isinstance(old, dict):
        raise _unreadable(path, f"a JSON {type(old).__name__}, not an object", MediaError)
    path = out / "state.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read it (zip, pickle, EOF, OS) is the file's
        raise _unreadable(path, exc) from None
    if not isinstance(state, dict):
        raise _unreadable(path, f"a {type(state).__name__}, not a distill state")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise _unreadable(path, f"no {', '.join(missing)}")
    return old, state


def _check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MediaError(f"{out} exists and is not a folder")
    if resume and overwrite:
        raise OptionError("--resume and --overwrite exclude each other")
    if resume:
        if not (out / "state.pt").is_file() or not (out / "run.json").is_file():
            raise MediaError(f"nothing to resume in {out}: no state.pt and run.json (start a new run without --resume)")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise MediaError(f"{out} exists and is not empty: pass --resume to continue its run or --overwrite to "
                         "start again (only the run's own files are replaced)")


# ---------------------------------------------------------------------------------------------
# the trainer


def distill(teacher: str | Path, out_dir: str | Path, cfg: DistillConfig, *, data=None, vimeo=None,
            cache_dir=None, max_frames: int | None = None, start_frame: int = 0, limit: int | None = None,
            resume: bool = False, overwrite: bool = False, device: str | torch.device = "cpu",
            backend: str | None = None, progress: bool = True,
            on_iteration: Callable[[int], None] | None = None):
    """Train a student; returns ``(student_path, student_unet)`` (the EMA U-Net module).

    ``on_iteration(i)`` is called after iteration ``i`` (1-based) and its checkpoint; tests use it
    to stop a run. Raises :class:`~ldmvfi_fast.errors.LdmvfiError` subclasses on bad input,
    before anything is written (on ``resume``: an unreadable or foreign ``run.json`` or
    ``state.pt`` too, before the teacher loads).
    """
    import torch.distributed as dist

    from ..checkpoint import load_model
    from ..manifest import weights_hash
    from ..ops import use_backend

    out = Path(out_dir)
    device = torch.device(device)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    cfg = cfg.resolved()
    _check_out_dir(out, resume, overwrite)
    old, state = _read_resume(out) if resume else (None, None)
    source = open_source(data=data, vimeo=vimeo, max_frames=max_frames, start_frame=start_frame, limit=limit)

    model = load_model(teacher, device=device)
    if model.distillation is not None:
        raise CheckpointError(f"{teacher} is a distilled student ({model.distillation['method']}, "
                              f"{model.distillation['steps']} steps): distill from the original teacher checkpoint")
    cfg = cfg.resolved(model.cfg.min_pad_unit(), int(model.cfg.diffusion.timesteps))
    T = int(model.cfg.diffusion.timesteps)
    teacher_hash = weights_hash(model)
    ac = model.alphas_cumprod.float()
    run_info = {"format": "ldmvfi_fast.distill_run", "version": 1, "teacher": str(teacher),
                "teacher_weights_hash": teacher_hash, "options": cfg.identity(), "world_size": world,
                "data": str(data) if data is not None else None, "vimeo": str(vimeo) if vimeo is not None else None,
                "max_frames": max_frames, "start_frame": start_frame, "limit": limit}
    if resume:
        diffs = [k for k in ("teacher_weights_hash", "options", "world_size", "data", "vimeo", "max_frames",
                             "start_frame", "limit") if old.get(k) != run_info[k]]
        if old.get("format") != run_info["format"]:
            diffs = ["format"]
        if diffs:
            raise OptionError(f"cannot resume {out}: its run differs in {', '.join(diffs)} "
                              f"(e.g. {diffs[0]}: {old.get(diffs[0])!r} there, {run_info.get(diffs[0])!r} now)")
        if state.get("run_id") != old.get("run_id"):
            raise OptionError(f"cannot resume {out}: state.pt belongs to another run "
                              f"({state.get('run_id')} vs run.json's {old.get('run_id')})")
        run_info["run_id"] = old["run_id"]
    else:
        run_info["run_id"] = uuid.uuid4().hex

    # data: rank 0 encodes (and fills the cache) first
    if distributed and rank != 0:
        dist.barrier()
    with use_backend(backend):
        triplets = encode_triplets(model, source, encoder_hash=teacher_hash, cache_dir=cache_dir, device=device,
                                   progress=progress and rank == 0)
    if distributed and rank == 0:
        dist.barrier()
    log.info("%d triplets", len(triplets))

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_text_atomic(out / "run.json", json.dumps(run_info, indent=1))
    trainer = _Trainer(model, cfg, triplets, ac, T, device, backend, rank, world, distributed, out,
                       run_info["run_id"], teacher_hash)
    if state is not None:
        try:
            trainer.load(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:  # tensors that do not fit
            raise _unreadable(out / "state.pt", exc) from None
    path = trainer.run(progress=progress and rank == 0, on_iteration=on_iteration)
    return path, trainer.final_unet


class _Trainer:
    def __init__(self, model, cfg: DistillConfig, data: TripletLatents, ac: Tensor, T: int, device, backend,
                 rank: int, world: int, distributed: bool, out: Path, run_id: str, teacher_hash: str):
        self.model, self.cfg, self.data, self.T = model, cfg, data, T
        self.ac = ac.to(device)
        self.device, self.backend, self.rank, self.world, self.distributed = device, backend, rank, world, distributed
        self.out, self.run_id, self.teacher_hash = out, run_id, teacher_hash
        self.f = model.latent_factor
        self.crop = (cfg.crop[0] // self.f, cfg.crop[1] // self.f)
        if cfg.method == "progressive":
            self.rounds = progressive_rounds(cfg.teacher_steps, cfg.steps)
        else:
            self.rounds = [cfg.steps]
        self.total = cfg.iters * len(self.rounds)
        #: how the student's raw U-Net output is read (the record's prediction / unet_output / boundary)
        self.student_rec = {"prediction": cfg.prediction,
                            "unet_output": "eps" if cfg.unet_output == "eps" else cfg.prediction}
        if cfg.method == "consistency":
            self.student_rec["boundary"] = {"sigma_data": cfg.sigma_data, "timestep_scaling": cfg.timestep_scaling}
        self.it = 0
        self.losses: list[dict] = []
        self._pool_key, self._pool = None, None  # the current trajectory pool (inputs="trajectory")
        self.student = copy.deepcopy(model.unet).float().requires_grad_(True).train()
        self.round_teacher = None  # progressive rounds after the first: the previous student (frozen)
        self._new_round(0, first=True)

    # -- state ---------------------------------------------------------------------------------
    def _new_round(self, r: int, first: bool = False) -> None:
        cfg = self.cfg
        if not first:  # progressive: the last round's EMA becomes the teacher and the new student
            self.ema.copy_to(self.student)
            self.round_teacher = _plain_copy(self.student).requires_grad_(False).eval()
        self.round = r
        self.opt = _adamw(self.student, cfg.lr)
        self.ema = _EMA(self.student, cfg.ema_decay, warmup=True)
        self.target = _EMA(self.student, cfg.target_decay, warmup=False) if cfg.method == "consistency" else None

    def state(self) -> dict:
        st = {"run_id": self.run_id, "iteration": self.it, "round": self.round,
              "student": self.student.state_dict(), "ema": self.ema.state(), "optimizer": self.opt.state_dict(),
              "losses": self.losses, "rng_torch": torch.get_rng_state(),
              "options": self.cfg.identity()}
        if self.target is not None:
            st["target"] = self.target.state()
        if self.round_teacher is not None:
            st["round_teacher"] = self.round_teacher.state_dict()
        return st

    def load(self, st: dict) -> None:
        self.it, self.round, self.losses = int(st["iteration"]), int(st["round"]), list(st["losses"])
        if st.get("round_teacher") is not None:
            self.round_teacher = _plain_copy(self.student).requires_grad_(False).eval()
            self.round_teacher.load_state_dict(st["round_teacher"])
        self.student.load_state_dict(st["student"])
        self.opt = _adamw(self.student, self.cfg.lr)
        self.opt.load_state_dict(st["optimizer"])
        self.ema.load(st["ema"])
        if self.target is not None:
            self.target.load(st["target"])
        torch.set_rng_state(st["rng_torch"])
        log.info("resumed at iteration %d of %d (round %d)", self.it, self.total, self.round)

    def save(self) -> None:
        if self.rank != 0:
            return
        atomic_torch_save(self.state(), self.out / "state.pt")
        write_text_atomic(self.out / "losses.jsonl", "".join(json.dumps(r) + "\n" for r in self.losses))

    def _record(self, steps: int) -> dict:
        cfg = self.cfg
        boundary = ({"sigma_data": cfg.sigma_data, "timestep_scaling": cfg.timestep_scaling}
                    if cfg.method == "consistency" else None)
        return make_record(cfg.method, steps, cfg.prediction, self.student_rec["unet_output"],
                           self.T, boundary, self.teacher_hash, self.model.cfg.to_dict(),
                           {"teacher_steps": cfg.teacher_steps, "iterations": self.it, "options": cfg.identity()})

    def save_student(self, path: Path, steps: int) -> None:
        if self.rank != 0:
            return
        save_student(path, self.model, self.student.state_dict(), self.ema.shadow, self._record(steps))

    # -- one iteration ---------------------------------------------------------------------------
    def _teacher(self, cond: Tensor, kind: str = "x0"):
        """``fn(x, t)``: the (round) teacher's ``kind`` (x0, or eps for the samplers) at (x, t), float32,
        no gradient, on the op backend ``backend``."""
        from ..ops import use_backend

        if self.round_teacher is None:
            fn, rec = _unet_fn(self.model.unet), None
        else:
            fn, rec = _unet_fn(self.round_teacher), self.student_rec

        def pred(x, t):
            with torch.no_grad(), use_backend(self.backend), self._autocast():
                return model_output(fn, x, t, cond, self.ac, rec, kind)
        return pred

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda" and self.cfg.amp)

    def _lr(self) -> float:
        cfg = self.cfg
        if cfg.lr_schedule == "constant":
            return cfg.lr
        i = self._round_iter()
        warm = max(1, cfg.iters // 20)
        if i < warm:
            return cfg.lr * (i + 1) / warm
        p = (i - warm) / max(1, cfg.iters - warm)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))

    def _round_iter(self) -> int:
        """The iteration within the current round (consistency has one round)."""
        return self.it % self.cfg.iters

    def _from_pool(self, grid: list[int], traj: int) -> tuple[Tensor, list[Tensor]]:
        """This iteration's ``traj`` trajectories on ``grid``: a slice of the current pool of
        ``traj * (cfg.pool // traj)`` drawn by one batched pass of the (round) teacher. The pool an
        iteration uses depends only on (seed, rank, round, iteration within the round), so a
        resumed run draws the same pools (regenerated, not saved)."""
        per = max(1, self.cfg.pool // traj)  # iterations served by one pool
        block, slot = divmod(self._round_iter(), per)
        key = (self.round, block)
        if self._pool_key != key:
            g = _seeded_generator(self.cfg.seed, self.rank, self.round, block, 1)
            self._pool, self._pool_key = self._trajectory(g, grid, per * traj), key
        cond, xs = self._pool
        j = slot * traj
        return cond[j:j + traj], [x[j:j + traj] for x in xs]

    @torch.no_grad()
    def _trajectory(self, g: torch.Generator, grid: list[int], traj: int) -> tuple[Tensor, list[Tensor]]:
        """``traj`` fresh trajectories of the (round) teacher from pure noise: the registry's DDIM
        (eta 0) on ``grid``, landing at END: (cond, [x at each grid point and at END])."""
        cond, x0 = sample_batch(self.data, traj, self.crop, g)
        cond = cond.to(self.device)
        x = torch.randn(x0.shape, generator=g).to(self.device)
        ddim = get_sampler("ddim")
        sched = ddim.make_schedule(self.ac, None, 0.0, self.device, timesteps=list(grid))
        # DDIM draws its (here zero-weighted) noise every step: from a generator of its own, so that
        # neither ``g`` nor the global RNG depends on how many pools were drawn (resume)
        _, inter = ddim.sample(self._teacher(cond, "eps"), x, sched, return_intermediates=True,
                               generator=torch.Generator(device=self.device))
        return cond, inter["x_inter"]

    def _pick(self, g: torch.Generator, n: int) -> Tensor:
        """Which of the ``n`` (trajectory, step) pairs of an iteration train (``batch`` of them)."""
        return torch.randperm(n, generator=g)[:self.cfg.batch] if n > self.cfg.batch else torch.arange(n)

    def _trajectory_loss(self, net, g: torch.Generator) -> Tensor:
        from ..ops import use_backend

        cfg, ac, dev = self.cfg, self.ac, self.device
        if cfg.method == "progressive":
            n = self.rounds[self.round]
            traj = max(1, cfg.batch // n)
            grid2 = trailing_timesteps(2 * n, self.T)
            cond, xs = self._from_pool(grid2, traj)
            pts = grid2 + [END]
            # pair i of each trajectory: student step grid_s[i] -> grid_s[i+1] = two teacher steps
            x_t = torch.cat(xs[0:2 * n:2])
            x_next = torch.cat(xs[2:2 * n + 1:2])
            t = torch.tensor([pts[2 * i] for i in range(n) for _ in range(traj)], dtype=torch.long, device=dev)
            t_next = torch.tensor([pts[2 * i + 2] for i in range(n) for _ in range(traj)], dtype=torch.long,
                                  device=dev)
            cond = cond.repeat(n, 1, 1, 1)
            k = self._pick(g, x_t.shape[0]).to(dev)
            x_t, x_next, t, t_next, cond = x_t[k], x_next[k], t[k], t_next[k], cond[k]
            target = ddim_x0(x_t, x_next, t, t_next, ac)
            with use_backend("reference"), self._autocast():
                raw = net(torch.cat([x_t, cond], dim=1), t)
            pred = student_output(raw.float(), x_t, t, ac, self.student_rec)
            return progressive_loss(pred, x_t, t, target, ac, cfg.prediction).mean()
        N = cfg.teacher_steps
        traj = max(1, cfg.batch // N)
        chain = trailing_timesteps(N, self.T)
        cond, xs = self._from_pool(chain, traj)
        pts = chain + [END]
        x_hi, x_lo = torch.cat(xs[:N]), torch.cat(xs[1:])
        t_hi = torch.tensor([pts[i] for i in range(N) for _ in range(traj)], dtype=torch.long, device=dev)
        t_lo = torch.tensor([pts[i + 1] for i in range(N) for _ in range(traj)], dtype=torch.long, device=dev)
        cond = cond.repeat(N, 1, 1, 1)
        k = self._pick(g, x_hi.shape[0]).to(dev)
        x_hi, x_lo, t_hi, t_lo, cond = x_hi[k], x_lo[k], t_hi[k], t_lo[k], cond[k]
        rec = self.student_rec
        with torch.no_grad():
            tgt_net = self._target_net
            self.target.copy_to(tgt_net)
            with self._autocast():
                tgt = model_output(_unet_fn(tgt_net), x_lo, t_lo.clamp(min=0), cond, ac, rec).float()
            target = torch.where((t_lo == END).view(-1, 1, 1, 1), x_lo, tgt)
        with use_backend("reference"), self._autocast():
            pred = model_output(lambda x, t, c: net(torch.cat([x, c], dim=1), t), x_hi, t_hi, cond, ac, rec)
        return consistency_loss(pred, target, cfg.loss).mean()

    def step(self, net) -> float:
        from ..ops import use_backend

        cfg, ac, dev = self.cfg, self.ac, self.device
        g = _seeded_generator(cfg.seed, self.rank, self.it)
        for group in self.opt.param_groups:
            group["lr"] = self._lr()
        if cfg.inputs == "trajectory":
            loss = self._trajectory_loss(net, g)
            return self._update(loss)
        cond, x0 = sample_batch(self.data, cfg.batch, self.crop, g)
        cond, x0 = cond.to(dev), x0.to(dev)
        B = x0.shape[0]
        eps = torch.randn(x0.shape, generator=g).to(dev)
        teacher_x0 = self._teacher(cond)
        if cfg.teacher_x0 > 0:
            use = torch.rand(B, generator=g) < cfg.teacher_x0
            x_T = torch.randn(x0.shape, generator=g).to(dev)
            if bool(use.any()):
                syn = teacher_x0(x_T, torch.full((B,), self.T - 1, dtype=torch.long, device=dev))
                x0 = torch.where(use.to(dev).view(-1, 1, 1, 1), syn, x0)
        if cfg.method == "progressive":
            n = self.rounds[self.round]
            grid_s = trailing_timesteps(n, self.T) + [END]
            grid_t = trailing_timesteps(2 * n, self.T) + [END]
            i = torch.randint(n, (B,), generator=g)
            t = torch.tensor(grid_s, dtype=torch.long)[i].to(dev)
            t_mid = torch.tensor(grid_t, dtype=torch.long)[2 * i + 1].to(dev)
            t_next = torch.tensor(grid_s, dtype=torch.long)[i + 1].to(dev)
            al, si = alpha_sigma(ac, t)
            x_t = al * x0 + si * eps
            target = progressive_target(teacher_x0, x_t, t, t_mid, t_next, ac)
            with use_backend("reference"), self._autocast():
                raw = net(torch.cat([x_t, cond], dim=1), t)
            pred = student_output(raw.float(), x_t, t, ac, self.student_rec)
            loss = progressive_loss(pred, x_t, t, target, ac, cfg.prediction).mean()
        else:
            chain = trailing_timesteps(cfg.teacher_steps, self.T) + [END]
            n = torch.randint(cfg.teacher_steps, (B,), generator=g)
            t_hi = torch.tensor(chain, dtype=torch.long)[n].to(dev)
            t_lo = torch.tensor(chain, dtype=torch.long)[n + 1].to(dev)
            al, si = alpha_sigma(ac, t_hi)
            x_hi = al * x0 + si * eps
            rec = self.student_rec
            with torch.no_grad():
                x_lo = ddim_step(x_hi, teacher_x0(x_hi, t_hi), t_hi, t_lo, ac)
                tgt_net = self._target_net
                self.target.copy_to(tgt_net)
                with self._autocast():
                    tgt = model_output(_unet_fn(tgt_net), x_lo, t_lo.clamp(min=0), cond, ac, rec).float()
                end = (t_lo == END).view(-1, 1, 1, 1)
                target = torch.where(end, x_lo, tgt)
            with use_backend("reference"), self._autocast():
                pred = model_output(lambda x, t, c: net(torch.cat([x, c], dim=1), t), x_hi, t_hi, cond, ac, rec)
            loss = consistency_loss(pred, target, cfg.loss).mean()
        return self._update(loss)

    def _update(self, loss: Tensor) -> float:
        cfg = self.cfg
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.grad_clip, foreach=True)
        self.opt.step()
        self.ema.update(self.student)
        if self.target is not None:
            self.target.update(self.student)
        return float(loss.detach())

    def run(self, progress: bool, on_iteration=None) -> Path:
        from tqdm.auto import tqdm

        cfg = self.cfg
        if cfg.method == "consistency":
            self._target_net = _plain_copy(self.student).requires_grad_(False)
        net = self.student
        if cfg.grad_checkpoint:
            _enable_grad_checkpointing(self.student)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(self.student, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        log.info("distilling (%s, %d steps%s): %d iterations, batch %d x %d process(es); student forward on the "
                 "reference MaxViT attention (the compiled kernels have no backward)", cfg.method, cfg.steps,
                 f", rounds {self.rounds}" if cfg.method == "progressive" else "", self.total, cfg.batch, self.world)
        bar = tqdm(total=self.total, initial=self.it, desc=f"distill {cfg.method}", unit="it", disable=not progress)
        try:
            while self.it < self.total:
                r = self.it // cfg.iters
                if r != self.round:
                    self._new_round(r)
                t0 = time.perf_counter()
                loss = self.step(net)
                self.it += 1
                dt = time.perf_counter() - t0
                self.losses.append({"iter": self.it, "round": self.round, "steps": self.rounds[self.round],
                                    "loss": loss, "seconds": round(dt, 4)})
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", round=self.round)
                round_end = self.it % cfg.iters == 0
                if round_end and cfg.method == "progressive" and self.rank == 0:
                    k = self.rounds[self.round]
                    self.save_student(self.out / f"student_k{k}.ckpt", k)
                if self.it % cfg.save_every == 0 or round_end:
                    self.save()
                if on_iteration is not None:
                    on_iteration(self.it)
        finally:
            bar.close()
        path = self.out / "student.ckpt"
        self.save_student(path, cfg.steps)
        self.save()
        self.final_unet = _plain_copy(self.student).requires_grad_(False).eval()
        self.ema.copy_to(self.final_unet)
        if self.rank == 0:
            log.info("student written to %s", path)
        return path
