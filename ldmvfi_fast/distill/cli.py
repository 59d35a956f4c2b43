"""``ldmvfi-fast distill``: train a few-step student from a teacher checkpoint.

The lead's :mod:`ldmvfi_fast.cli` calls :func:`add_parser` to add the subcommand and
:func:`run` to execute it. Options are checked before the model loads; user errors raise
:class:`~ldmvfi_fast.errors.LdmvfiError` subclasses (the main CLI prints one line, exit 2).

Single process::

    ldmvfi-fast distill --teacher T.ckpt --data videos/ --method progressive --steps 2 --out runs/p2

Several processes (DistributedDataParallel; gloo on CPU, nccl on CUDA)::

    torchrun --nproc_per_node 4 -m ldmvfi_fast distill --teacher T.ckpt --vimeo vimeo_triplet ...
"""
from __future__ import annotations

import argparse
import json
import logging
import os

from ..errors import EXIT_OK, OptionError

log = logging.getLogger(__name__)

__all__ = ["add_parser", "run"]

EPILOG = ("Writes RUN_DIR/student.ckpt (a checkpoint that `ldmvfi-fast interpolate --ckpt` loads with its own "
          "sampler, steps and timesteps), RUN_DIR/state.pt (resume state), RUN_DIR/losses.jsonl, RUN_DIR/run.json; "
          "progressive runs also RUN_DIR/student_k{N}.ckpt per round. Exit status: 0 success; 2 user error "
          "(one line, nothing overwritten); 130 interrupted (resume with --resume).")


def add_parser(subparsers, parents=()) -> argparse.ArgumentParser:
    """Add the ``distill`` subcommand to ``subparsers`` (``parents``: shared option parsers)."""
    d = subparsers.add_parser(
        "distill", parents=list(parents), epilog=EPILOG, help="distill the U-Net into a few-step student",
        description="Train a student U-Net (initialised from the teacher's; the autoencoder stays frozen) to "
                    "sample in K steps: progressive distillation (rounds halving the steps, Salimans and Ho 2022) "
                    "or consistency distillation (latent consistency models).")
    d.add_argument("--teacher", required=True, help="teacher checkpoint (.ckpt, the original LDMVFI format)")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a video or a folder of videos: triplets of consecutive frames")
    src.add_argument("--vimeo", help="a Vimeo-90K triplet folder (tri_trainlist.txt, sequences/)")
    d.add_argument("--method", choices=("progressive", "consistency"), required=True)
    d.add_argument("--steps", type=int, required=True, help="K, the student's sampling steps (1, 2, 4, 8 ...)")
    d.add_argument("--out", required=True, help="run folder (RUN_DIR)")
    d.add_argument("--teacher-steps", type=int, default=None,
                   help="progressive: the teacher's DDIM steps of the first round, K x a power of 2 (default 64); "
                        "consistency: points of the teacher solver's grid (default 40)")
    d.add_argument("--iters", type=int, default=1000, help="training iterations (per round for progressive)")
    d.add_argument("--batch", type=int, default=8, help="triplets per iteration and process (default 8)")
    d.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    d.add_argument("--crop", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="training crop in frame pixels, multiples of 256 (default 256 256)")
    d.add_argument("--cache-latents", metavar="DIR", default=None,
                   help="keep the encoded triplets in DIR (keyed by the teacher and the data) for later runs")
    d.add_argument("--max-frames", type=int, default=None, help="--data: at most this many frames per video")
    d.add_argument("--limit", type=int, default=None, help="at most this many triplets")
    run_mode = d.add_mutually_exclusive_group()
    run_mode.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR where it stopped")
    run_mode.add_argument("--overwrite", action="store_true",
                          help="start again in an existing RUN_DIR (its run files are replaced, nothing else)")
    d.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    d.add_argument("--ema-decay", type=float, default=0.999, help="EMA of the student, saved as model_ema.* "
                                                                  "(what load_model loads; default 0.999)")
    d.add_argument("--target-decay", type=float, default=0.95,
                   help="consistency: EMA decay of the target network (default 0.95)")
    d.add_argument("--grad-checkpoint", action="store_true", help="recompute U-Net blocks in backward (less memory)")
    d.add_argument("--prediction", choices=("v", "x0"), default="v",
                   help="progressive: what the student predicts (default v); consistency students give x0")
    d.add_argument("--unet-output", choices=("eps", "direct"), default="eps",
                   help="eps: the raw U-Net output stays noise as the teacher's and the prediction is computed "
                        "from it (the student starts as the teacher; default); direct: the output is the "
                        "prediction itself")
    d.add_argument("--teacher-x0", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of training samples noised from the teacher's own one-step x0 instead of the "
                        "middle frame's latent (default 0, the papers'; 1 for a teacher whose samples are far "
                        "from the data, e.g. random weights)")
    d.add_argument("--inputs", choices=("data", "trajectory"), default="data",
                   help="where the student's noisy inputs come from: data (the middle frames noised; default, "
                        "the papers') or trajectory (the teacher's own DDIM trajectories from pure noise: the "
                        "points the few-step sampler visits; for a teacher whose samples are far from the data)")
    d.add_argument("--pool", type=int, default=64, metavar="N",
                   help="--inputs trajectory: trajectories drawn per batched teacher pass (default 64)")
    d.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate per round: constant (default) or 5%% warm-up + cosine decay to 5%%")
    d.add_argument("--loss", choices=("l2", "huber"), default="huber", help="consistency loss (default huber)")
    d.add_argument("--save-every", type=int, default=100, help="write state.pt every N iterations (default 100)")
    d.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available; "
                                                  "under torchrun: cuda:LOCAL_RANK)")
    d.add_argument("--backend", default=None,
                   help="op backend of the frozen teacher's forwards (native, triton, reference; default "
                        "automatic); the student's training forward always uses reference (no compiled backward)")
    d.add_argument("--no-amp", action="store_true", help="CUDA: train in float32 instead of bf16 autocast")
    return d


def _device(arg: str | None):
    """The training device: ``--device`` checked by :func:`ldmvfi_fast.checkpoint.check_device_dtype`
    (the rule every command uses; float32 weights, bf16 autocast on CUDA), one-line
    :class:`OptionError` otherwise; by default cuda when visible (``cuda:LOCAL_RANK`` under
    torchrun), else cpu."""
    import torch

    from ..checkpoint import check_device_dtype

    dev, _ = check_device_dtype(arg, None, cli=True)
    if arg is None and dev.type == "cuda":
        dev, _ = check_device_dtype(torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))), None, cli=True)
    return dev


def run(args: argparse.Namespace) -> int:
    """Run ``ldmvfi-fast distill``; returns the exit status (errors are raised)."""
    import torch
    import torch.distributed as dist

    from .train import DistillConfig, distill

    cfg = DistillConfig(method=args.method, steps=args.steps, teacher_steps=args.teacher_steps,
                        prediction=args.prediction, loss=args.loss, unet_output=args.unet_output, teacher_x0=args.teacher_x0,
                        inputs=args.inputs, pool=args.pool, lr_schedule=args.lr_schedule, iters=args.iters,
                        batch=args.batch, lr=args.lr, crop=tuple(args.crop), ema_decay=args.ema_decay,
                        target_decay=args.target_decay, seed=args.seed, grad_checkpoint=args.grad_checkpoint,
                        save_every=args.save_every, amp=not args.no_amp).resolved()
    for name in ("max_frames", "limit"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise OptionError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    device = _device(args.device)
    started = False
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
        started = True
    try:
        path, _ = distill(args.teacher, args.out, cfg, data=args.data, vimeo=args.vimeo,
                          cache_dir=args.cache_latents, max_frames=args.max_frames, limit=args.limit,
                          resume=args.resume, overwrite=args.overwrite, device=device, backend=args.backend)
        if not dist.is_initialized() or dist.get_rank() == 0:
            print(json.dumps({"student": str(path), "method": cfg.method, "steps": cfg.steps}))
    finally:
        if started:
            dist.destroy_process_group()
    return EXIT_OK
