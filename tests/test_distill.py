"""Distillation (ldmvfi_fast.distill): the student beats the teacher's own K-step DDIM, resume,
torchrun (gloo), the student checkpoint contract, bad input.

The teacher is the random-weight tiny checkpoint; triplets come from the bundled clip
``bikes.mp4`` (640x272, centre-cropped to 256x512: latents 8x16). Tests run on one CPU thread
(on 2 shared cores, more threads were up to 30x slower: OpenMP threads spin while other processes
hold the cores), except the two acceptance runs, which take both cores (CI's acceptance stage
runs one test at a time).

The acceptance criterion (student's K-step latent MSE to the teacher's 64-step trailing DDIM
<= 0.5 x the better of the teacher's own K-step DDIM at the student's (trailing) and at the
original's uniform timesteps, K = 2 and 1; 4 held-out triplets, frames 100..105, same x_T):
met by both methods. Teacher baselines: trailing DDIM 1/2/4/8 steps 591 / 523 / 349 / 132
(uniform is far worse: 7778 / 7392 / 5994); reference variance 7795. Measured (quiet 2-core
machine, torch 2.13 CPU), student / teacher best:
* consistency (CONSISTENCY_2X: 8-point DDIM chain, target EMA 0.5, L2, 1000 iterations of 16,
  343 s, 0.34 s/iteration): K=1 0.437, K=2 0.450; loss per 100 iterations 30.4 30.1 27.6 25.2 22.3
  19.7 16.9 14.7 13.2 12.6;
* progressive (PROGRESSIVE_2X: 8 -> 4 -> 2 -> 1, 500 iterations/round of 16, 449 s, 0.29
  s/iteration): K=1 0.444, K=2 0.485; loss per 100 iterations 45.5 45.9 36.7 26.6 21.0 | 18.9 22.2
  15.8 10.0 6.7 | 11.2 14.8 10.3 5.2 2.8; with 400 iterations/round 0.447 / 0.487; batch 32 x 300:
  0.451 / 0.494; lr 3e-4: 0.464 / 0.505.
The tests print these (``-rP``); benchmarks/results/distill-tiny-bikes-cpu.txt holds a run's output.
What moved it, from ratios of 0.53-0.96: the student's inputs from the teacher's own DDIM
trajectories from pure noise (``inputs="trajectory"``: the random teacher's samples, |x0| ~ 45,
are nowhere near the data), drawn 64 at a time by one batched teacher pass (``pool``: ~6.6x less
teacher time per trajectory); crops of the held-out size (256x512: MaxViT's grid attention spans
the whole 8x16 latent, so 8x8 crops trained a different pattern); batch 16 and lr 2e-4 with
warm-up + cosine decay; EMA 0.99 of the student.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _shared import snapshot

from ldmvfi_fast.errors import CheckpointError, LdmvfiError, MediaError, OptionError

TRAIN_FRAMES = 14  # frames 0..13 of bikes.mp4: 12 training triplets
HELD_OUT = (100, 6)  # frames 100..105: 4 held-out triplets


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def clip():
    from ldmvfi_fast.video import bundled_clip

    try:
        return bundled_clip("bikes.mp4")
    except MediaError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("latents")


@pytest.fixture(scope="module")
def held_out_cond(tiny_model, clip, cache):
    """(4, 6, 8, 16) conditioning latents of held-out triplets."""
    from ldmvfi_fast.distill.data import load_triplets
    from ldmvfi_fast.manifest import weights_hash

    torch.set_num_threads(1)
    held = load_triplets(tiny_model, data=clip, encoder_hash=weights_hash(tiny_model), cache_dir=cache,
                         start_frame=HELD_OUT[0], max_frames=HELD_OUT[1], progress=False)
    conds = []
    for i in range(len(held)):
        a, _, b = (held.latents[j] for j in held.triplets[i].tolist())
        conds.append(torch.cat([a, b]))
    return torch.stack(conds)


def _cfg(**kw):
    from ldmvfi_fast.distill import DistillConfig

    base = dict(batch=4, lr=3e-4, ema_decay=0.0, save_every=1000, teacher_x0=1.0)
    base.update(kw)
    return DistillConfig(**base)


def _train(tiny_ckpt, out, cfg, clip, cache, **kw):
    from ldmvfi_fast.distill import distill

    return distill(tiny_ckpt, out, cfg, data=clip, max_frames=TRAIN_FRAMES, cache_dir=cache, progress=False, **kw)


def _report(teacher, students, cond):
    from ldmvfi_fast.distill.evaluate import latent_mse_report

    return latent_mse_report(teacher, students, cond, ref_steps=64)


# ---------------------------------------------------------------------------------------------
# acceptance: K-step student at least 2x closer to the teacher's 64-step DDIM than the teacher's K-step DDIM


def _curve(run: Path, every: int = 100) -> str:
    """The run's loss curve from losses.jsonl: mean loss per ``every`` iterations, rounds apart,
    and the mean seconds per iteration."""
    rows = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    rounds: dict[int, list] = {}
    for r in rows:
        rounds.setdefault(r.get("round", 0), []).append(r["loss"])
    parts = [" ".join(f"{sum(v[i:i + every]) / len(v[i:i + every]):.1f}" for i in range(0, len(v), every))
             for v in rounds.values()]
    sec = sum(r["seconds"] for r in rows) / len(rows)
    return f"loss per {every} iterations: {' | '.join(parts)}; mean {sec:.3f} s/iteration (teacher passes included)"


def _check_2x(report, tmp_path, name):
    ratios = {K: round(r["student"] / r["teacher_ddim_best"], 3) for K, r in report.items()}
    print(f"{name}: student / teacher-best latent MSE {ratios}; {_curve(tmp_path / 'run')}\n"
          f"{json.dumps(report, indent=1)}")
    for K, r in report.items():
        assert r["student"] <= 0.5 * r["teacher_ddim_best"], (name, K, r)


#: the acceptance runs: the student's inputs are the teacher's own DDIM trajectories from pure noise
#: (the points the K-step sampler visits; the random teacher's samples are nowhere near the data),
#: drawn 64 at a time in one batched teacher pass; crops of 256x512 frames (latent 8x16, the held-out
#: size: MaxViT's grid attention spans the whole latent, so 8x8 crops trained another pattern);
#: batch 16, lr 2e-4 with warm-up + cosine decay, EMA of the student
PROGRESSIVE_2X = dict(method="progressive", steps=1, teacher_steps=8, iters=500, batch=16, crop=(256, 512),
                      inputs="trajectory", lr=2e-4, lr_schedule="cosine", ema_decay=0.99)
CONSISTENCY_2X = dict(method="consistency", steps=2, teacher_steps=8, iters=1000, batch=16, crop=(256, 512),
                      inputs="trajectory", lr=2e-4, lr_schedule="cosine", ema_decay=0.99, loss="l2",
                      target_decay=0.5)


@pytest.fixture
def _two_threads():
    """The acceptance runs use both cores (CI's acceptance stage runs one test at a time)."""
    torch.set_num_threads(2)
    yield


@pytest.mark.manual  # ~7.5 min on 2 cores: out of CI since the CUDA build stage (issue 15), see README
def test_progressive_student_2x_closer(_two_threads, tiny_ckpt, clip, cache, tiny_model, held_out_cond, tmp_path):
    from ldmvfi_fast.checkpoint import load_model

    path, _ = _train(tiny_ckpt, tmp_path / "run", _cfg(**PROGRESSIVE_2X), clip, cache)
    students = {2: load_model(tmp_path / "run" / "student_k2.ckpt"), 1: load_model(path)}
    assert students[1].distillation["timesteps"] == [999] and students[2].distillation["timesteps"] == [999, 499]
    _check_2x(_report(tiny_model, students, held_out_cond), tmp_path, "progressive")


@pytest.mark.manual  # ~6 min on 2 cores: out of CI since the CUDA build stage (issue 15), see README
def test_consistency_student_2x_closer(_two_threads, tiny_ckpt, clip, cache, tiny_model, held_out_cond, tmp_path):
    from ldmvfi_fast.checkpoint import load_model

    path, _ = _train(tiny_ckpt, tmp_path / "run", _cfg(**CONSISTENCY_2X), clip, cache)
    student = load_model(path)
    assert student.distillation["sampler"] == "consistency" and student.distillation["prediction"] == "x0"
    _check_2x(_report(tiny_model, {2: student, 1: student}, held_out_cond), tmp_path, "consistency")


# ---------------------------------------------------------------------------------------------
# the student checkpoint contract


def test_student_checkpoint_contract(tiny_ckpt, clip, cache, tiny_model, tmp_path):
    """load_model reads the record; the backbone exposes it; a consistency student's denoise
    is c_skip x_t + c_out x0 (identity at t = 0); the teacher's numerics are untouched."""
    from ldmvfi_fast.checkpoint import load_model
    from ldmvfi_fast.manifest import weights_hash
    from ldmvfi_fast.models.ldmvfi import boundary_scalings
    from ldmvfi_fast.runtime.torch import TorchBackbone

    cfg = _cfg(method="consistency", steps=2, teacher_steps=4, iters=2)
    path, _ = _train(tiny_ckpt, tmp_path / "run", cfg, clip, cache)
    s = load_model(path)
    rec = s.distillation
    assert rec["method"] == "consistency" and rec["steps"] == 2 and rec["timesteps"] == [999, 499]
    assert rec["sampler"] == "consistency" and rec["prediction"] == "x0" and rec["unet_output"] == "eps"
    assert rec["teacher_weights_hash"] == weights_hash(tiny_model) and rec["config"]["name"] == "tiny"
    bb, tb = TorchBackbone(s), TorchBackbone(tiny_model)
    assert bb.distillation == rec and bb.prediction == "x0"
    assert tb.distillation is None and tb.prediction == "eps" and tiny_model.distillation is None
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 6, 8, 8, generator=g)
    t = torch.tensor([0, 700])
    with torch.no_grad():
        out, raw = bb.denoise(x, t, c), s.eps(x, t, c)
        teacher_out = tb.denoise(x, t, c)
    a = s.alphas_cumprod[t].view(-1, 1, 1, 1)
    x0 = (x - (1 - a).sqrt() * raw) / a.sqrt()
    cs, co = boundary_scalings(t, 0.5, 10.0)
    torch.testing.assert_close(out, cs.view(-1, 1, 1, 1) * x + co.view(-1, 1, 1, 1) * x0)
    torch.testing.assert_close(out[0], x[0])  # boundary condition f(x, 0) = x
    assert torch.equal(teacher_out, tiny_model.eps(x, t, c))
    # student = normal checkpoint: EMA U-Net in model_ema.* (default), raw in model.diffusion_model.*
    raw_model = load_model(path, use_ema=False)
    assert raw_model.unet_weights == "raw" and raw_model.distillation == rec


# ---------------------------------------------------------------------------------------------
# resume


class _Killed(Exception):
    pass


def _unet_tensors(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith(("model.diffusion_model.", "model_ema."))}


@pytest.mark.parametrize("method", [pytest.param("progressive", marks=pytest.mark.slow), "consistency",
                                    "consistency-trajectory"])
def test_resume_gives_the_same_student(method, tiny_ckpt, clip, cache, tmp_path):
    """Killed mid-run (an exception after iteration 5; state saved at 4), resumed: the same student
    (raw and EMA weights, torch.equal) and the same loss log as an uninterrupted run.
    ``consistency-trajectory``: inputs from trajectory pools of 3 (one trajectory an iteration), so
    the resume at iteration 4 lands inside a pool, which must be drawn again identically."""
    method, _, inputs = method.partition("-")
    kw = dict(method=method, steps=1, teacher_steps=4 if method == "progressive" else 8,
              iters=3 if method == "progressive" else 6, save_every=2, ema_decay=0.9, batch=2)
    if inputs:
        kw.update(inputs=inputs, pool=3, batch=8)
    cfg = _cfg(**kw)
    full, _ = _train(tiny_ckpt, tmp_path / "full", cfg, clip, cache)

    def kill(i):
        if i == 5:
            raise _Killed

    with pytest.raises(_Killed):
        _train(tiny_ckpt, tmp_path / "cut", cfg, clip, cache, on_iteration=kill)
    assert not (tmp_path / "cut" / "student.ckpt").exists()
    assert torch.load(tmp_path / "cut" / "state.pt", weights_only=True)["iteration"] == 4
    resumed, _ = _train(tiny_ckpt, tmp_path / "cut", cfg, clip, cache, resume=True)
    a, b = _unet_tensors(full), _unet_tensors(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x) for x in (tmp_path / "full" / "losses.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "cut" / "losses.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb] and len(la) == cfg.iters * (2 if method == "progressive"
                                                                                           else 1)


def test_trajectory_pool_batches_the_teacher(tiny_ckpt, clip, cache, tmp_path, monkeypatch):
    """--inputs trajectory draws ``pool`` trajectories per teacher pass: 6 iterations taking one
    trajectory each from pools of 3 make two passes of 3, not six of 1; each iteration gets the
    next trajectory of its pool; a pool's trajectories are the teacher's DDIM from its noise (the
    chain's last point is its 8-step DDIM sample)."""
    from ldmvfi_fast.distill import train
    from ldmvfi_fast.distill.evaluate import teacher_sample

    calls, pools, served = [], [], []
    real, real_from_pool = train._Trainer._trajectory, train._Trainer._from_pool

    def counting(self, g, grid, traj):
        calls.append(traj)
        out = real(self, g, grid, traj)
        pools.append((self.model, grid, out))
        return out

    def serving(self, grid, traj):
        out = real_from_pool(self, grid, traj)
        served.append(out)
        return out

    monkeypatch.setattr(train._Trainer, "_trajectory", counting)
    monkeypatch.setattr(train._Trainer, "_from_pool", serving)
    cfg = _cfg(method="consistency", steps=1, teacher_steps=8, iters=6, batch=8, inputs="trajectory", pool=3)
    _train(tiny_ckpt, tmp_path / "run", cfg, clip, cache)
    assert calls == [3, 3]
    model, grid, (cond, xs) = pools[0]
    assert len(xs) == len(grid) + 1 and xs[0].shape[0] == 3
    torch.testing.assert_close(xs[-1], teacher_sample(model, cond, xs[0], grid), rtol=1e-5, atol=1e-4)
    # iteration i trains on trajectory i % 3 of pool i // 3: each trajectory once, none twice
    assert len(served) == 6
    for i, (c, x) in enumerate(served):
        pc, pxs = pools[i // 3][2]
        assert torch.equal(c, pc[i % 3:i % 3 + 1]) and all(torch.equal(a, b[i % 3:i % 3 + 1]) for a, b in zip(x, pxs))
    assert not torch.equal(pools[0][2][1][0], pools[1][2][1][0])  # a new pool has new noise


# ---------------------------------------------------------------------------------------------
# torchrun (gloo on CPU)

_DDP_SCRIPT = textwrap.dedent('''
    import hashlib, os, sys, torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    from ldmvfi_fast.distill import DistillConfig, distill
    ckpt, clip, out, cache = sys.argv[1:5]
    cfg = DistillConfig(method="consistency", steps=1, teacher_steps=8, iters=3, batch=2, lr=3e-5,
                        ema_decay=0.5, teacher_x0=1.0)
    _, unet = distill(ckpt, out, cfg, data=clip, max_frames=6, cache_dir=cache, progress=False)
    h = hashlib.sha256()
    for k, v in sorted(unet.state_dict().items()):
        h.update(k.encode()); h.update(v.numpy().tobytes())
    open(os.path.join(os.path.dirname(out), f"rank{dist.get_rank()}.txt"), "w").write(h.hexdigest())
    dist.destroy_process_group()
''')


@pytest.mark.slow
def test_torchrun_two_processes_keep_replicas_identical(tiny_ckpt, clip, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", "29571", str(script), str(tiny_ckpt), str(clip), str(tmp_path / "run"),
                        str(tmp_path / "cache")], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    h0, h1 = (tmp_path / "rank0.txt").read_text(), (tmp_path / "rank1.txt").read_text()
    assert h0 == h1
    from ldmvfi_fast.checkpoint import load_model

    s = load_model(tmp_path / "run" / "student.ckpt")
    h = hashlib.sha256()
    for k, v in sorted(s.unet.state_dict().items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    assert h.hexdigest() == h0  # rank 0 wrote the replicas' (EMA) weights
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["world_size"] == 2


# ---------------------------------------------------------------------------------------------
# bad input: clear errors, nothing overwritten


def test_bad_teacher(clip, cache, tmp_path):
    from ldmvfi_fast.distill import distill

    cfg = _cfg(method="consistency", steps=1, iters=1)
    with pytest.raises(CheckpointError, match="not found"):
        distill(tmp_path / "missing.ckpt", tmp_path / "a", cfg, data=clip)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not an LDMVFI checkpoint"):
        distill(foreign, tmp_path / "b", cfg, data=clip)
    png = tmp_path / "image.ckpt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    with pytest.raises(CheckpointError, match="PNG"):
        distill(png, tmp_path / "c", cfg, data=clip)
    assert not any((tmp_path / n).exists() for n in "abc")


def test_student_as_teacher_is_refused(tiny_ckpt, clip, cache, tmp_path):
    from ldmvfi_fast.distill import distill

    cfg = _cfg(method="consistency", steps=1, teacher_steps=4, iters=1, batch=1)
    path, _ = _train(tiny_ckpt, tmp_path / "run", cfg, clip, cache)
    with pytest.raises(CheckpointError, match="distilled student"):
        distill(path, tmp_path / "again", cfg, data=clip)


def test_bad_data(tiny_ckpt, tmp_path):
    from ldmvfi_fast.distill import distill

    cfg = _cfg(method="consistency", steps=1, iters=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MediaError, match="no videos found"):
        distill(tiny_ckpt, tmp_path / "o1", cfg, data=empty)
    (empty / "frame.png").write_bytes(b"")
    with pytest.raises(MediaError, match="Vimeo"):
        distill(tiny_ckpt, tmp_path / "o2", cfg, data=empty)
    with pytest.raises(MediaError, match="tri_trainlist"):
        distill(tiny_ckpt, tmp_path / "o3", cfg, vimeo=empty)
    (empty / "tri_trainlist.txt").write_text("00001/0001\n")
    with pytest.raises(MediaError, match="no triplets"):
        distill(tiny_ckpt, tmp_path / "o4", cfg, vimeo=empty)
    assert not any((tmp_path / f"o{i}" / "state.pt").exists() for i in range(1, 5))


@pytest.mark.parametrize("kw, match", [
    (dict(method="progressive", steps=3, teacher_steps=8), "halves the step count"),
    (dict(method="progressive", steps=2, teacher_steps=2), "nothing to distill"),
    (dict(method="progressive", steps=1, prediction="eps"), "predict v or x0"),
    (dict(method="consistency", steps=0), "steps must be"),
    (dict(method="consistency", steps=1, crop=(200, 256)), "multiples of 256"),
    (dict(method="distill", steps=1), "method must be"),
    (dict(method="consistency", steps=1, loss="l1"), "huber or l2"),
])
def test_bad_options(kw, match, tiny_ckpt, tmp_path):
    from ldmvfi_fast.distill import distill

    with pytest.raises(OptionError, match=match):
        distill(tiny_ckpt, tmp_path / "out", _cfg(**kw), data=tmp_path)
    assert not (tmp_path / "out").exists()


def test_run_dir_rules(tiny_ckpt, clip, cache, tmp_path):
    """An existing run needs --resume or --overwrite; a resume must match the run and its state;
    nothing is overwritten by a refused call; --overwrite keeps files the run did not write."""
    from ldmvfi_fast.distill import distill

    cfg = _cfg(method="consistency", steps=1, teacher_steps=4, iters=2, batch=1)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    _train(tiny_ckpt, run_a, cfg, clip, cache)
    _train(tiny_ckpt, run_b, _cfg(method="consistency", steps=1, teacher_steps=4, iters=2, batch=1, seed=1), clip,
           cache)
    before = snapshot(run_a, stat=False)
    with pytest.raises(MediaError, match="--resume"):
        _train(tiny_ckpt, run_a, cfg, clip, cache)
    with pytest.raises(OptionError, match="differs in options"):
        _train(tiny_ckpt, run_a, _cfg(method="consistency", steps=1, teacher_steps=4, iters=2, batch=1, lr=1e-3),
               clip, cache, resume=True)
    # another run's state.pt copied in: refused
    (run_a / "state.pt").write_bytes((run_b / "state.pt").read_bytes())
    before["state.pt"] = (run_a / "state.pt").read_bytes()
    with pytest.raises(OptionError, match="another run"):
        _train(tiny_ckpt, run_a, cfg, clip, cache, resume=True)
    assert snapshot(run_a, stat=False) == before
    with pytest.raises(MediaError, match="nothing to resume"):
        _train(tiny_ckpt, tmp_path / "new", cfg, clip, cache, resume=True)
    mine = run_b / "notes.txt"
    mine.write_text("keep me")
    _train(tiny_ckpt, run_b, cfg, clip, cache, overwrite=True)
    assert mine.read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# command line


def _parser():
    import argparse

    from ldmvfi_fast.distill.cli import add_parser

    p = argparse.ArgumentParser(prog="ldmvfi-fast")
    add_parser(p.add_subparsers(dest="command"), [])
    return p


def test_cli_trains_and_refuses(tiny_ckpt, clip, cache, tmp_path, capsys):
    from ldmvfi_fast.checkpoint import load_model
    from ldmvfi_fast.distill.cli import run

    out = tmp_path / "run"
    argv = ["distill", "--teacher", str(tiny_ckpt), "--data", str(clip), "--max-frames", str(TRAIN_FRAMES),
            "--method", "progressive", "--steps", "1", "--teacher-steps", "2", "--iters", "1", "--batch", "1",
            "--out", str(out), "--cache-latents", str(cache), "--device", "cpu", "--prediction", "x0"]
    assert run(_parser().parse_args(argv)) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["student"] == str(out / "student.ckpt")
    s = load_model(out / "student.ckpt")
    assert s.distillation["method"] == "progressive" and s.distillation["prediction"] == "x0"
    assert s.distillation["sampler"] == "ddim" and s.distillation["timesteps"] == [999]
    assert {"student.ckpt", "student_k1.ckpt", "state.pt", "losses.jsonl", "run.json"} <= {p.name for p in
                                                                                            out.iterdir()}
    before = snapshot(out, stat=False)
    with pytest.raises(MediaError):
        run(_parser().parse_args(argv))
    with pytest.raises(OptionError, match="halves"):
        run(_parser().parse_args(argv[:-2] + ["--steps", "3", "--overwrite"]))
    assert snapshot(out, stat=False) == before
    with pytest.raises(SystemExit):
        _parser().parse_args(argv + ["--resume", "--overwrite"])
    assert run(_parser().parse_args(argv + ["--resume"])) == 0  # already complete: rewrites the same student


# ---------------------------------------------------------------------------------------------
# one place for each decision: distillation's timesteps and samples are the sampler registry's


def test_trailing_timesteps_are_the_registry_spacing():
    """A student's timesteps (``trailing_timesteps``, its record's) are the registry's trailing
    spacing for every step count (the copies differed at 48 of 1000 steps: 937 vs 936)."""
    from ldmvfi_fast.distill import trailing_timesteps
    from ldmvfi_fast.sampling import make_timesteps

    for T in (1000, 999):
        ac = torch.linspace(0.999, 0.01, T)
        for n in range(1, T + 1):
            assert trailing_timesteps(n, T) == make_timesteps(ac, n, "trailing").tolist(), (T, n)


def test_progressive_grids_nest_at_the_default_step_counts():
    """Progressive rounds from the default 64 teacher steps (and any power of 2 up to 512 on
    T = 1000): the student's grid of N/2 steps is every second point of the teacher's grid of N."""
    from ldmvfi_fast.distill import trailing_timesteps

    for n in (512, 256, 128, 64, 32, 16, 8, 4, 2):
        assert trailing_timesteps(n // 2) == trailing_timesteps(n)[::2], n


def test_progressive_grids_nest_at_every_step_count():
    """Failed before the registry's trailing spacing computed T - k T / S exactly (np.arange drifted:
    937.4999... for T=1000, S=48, so 48 steps did not nest in 96)."""
    from ldmvfi_fast.distill import trailing_timesteps

    bad = [n for n in range(1, 501) if trailing_timesteps(2 * n)[::2] != trailing_timesteps(n)]
    assert not bad, bad


def _posing_student(tiny_ckpt, method: str):
    """The tiny teacher posing as a 2-step student of ``method`` (its record is the contract)."""
    from ldmvfi_fast.checkpoint import load_model

    s = load_model(tiny_ckpt)
    s.distillation = {"method": method, "prediction": "v" if method == "progressive" else "x0",
                      "unet_output": "eps", "steps": 2, "timesteps": [999, 499],
                      "sampler": "ddim" if method == "progressive" else "consistency"}
    if method == "consistency":
        s.distillation["boundary"] = {"sigma_data": 0.5, "timestep_scaling": 10.0}
    return s


@pytest.mark.parametrize("method", ["progressive", "consistency"])
def test_evaluation_samples_through_the_registry(method, tiny_ckpt, tiny_model):
    """latent_mse_report's numbers are MSEs between samples of the pipeline's Interpolator (the
    registry's samplers): the reference and the teacher's K-step baselines by DDIM eta 0 at trailing
    / uniform timesteps, the student by DDIM eta 0 at its timesteps (and, for consistency students,
    by its own ``consistency`` sampler with fresh noise)."""
    from ldmvfi_fast.distill.evaluate import latent_mse_report
    from ldmvfi_fast.pipeline import Encoded, Interpolator
    from ldmvfi_fast.sampling import make_timesteps

    student = _posing_student(tiny_ckpt, method)
    g = torch.Generator().manual_seed(5)
    cond = torch.randn(2, 6, 8, 8, generator=g)
    seed, ref_steps = 77, 4
    report = latent_mse_report(tiny_model, {2: student, 1: student}, cond, ref_steps=ref_steps, seed=seed)
    x_T = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(seed))
    e0, e1 = (Encoded(frame=torch.zeros(2, 3, 256, 256), z=z, phi=[], size=(256, 256)) for z in cond.split(3, 1))
    ac = tiny_model.alphas_cumprod

    def sample(model, sampler, ts, gen=None):
        eta = 0.0 if sampler == "ddim" else None  # the consistency sampler takes no eta
        return Interpolator(model, sampler=sampler, eta=eta, timesteps=ts).sample_latent(e0, e1, gen, x_T=x_T)

    def mse(a):
        return float((a - ref).pow(2).mean())

    ref = sample(tiny_model, "ddim", make_timesteps(ac, ref_steps, "trailing").tolist())
    for K in (2, 1):
        r = report[K]
        assert r["teacher_ddim_trailing"] == mse(sample(tiny_model, "ddim", make_timesteps(ac, K, "trailing").tolist()))
        assert r["teacher_ddim_uniform"] == mse(sample(tiny_model, "ddim", make_timesteps(ac, K, "uniform").tolist()))
        ts = [999, 499] if K == 2 else make_timesteps(ac, 1, "trailing").tolist()
        assert r["student"] == mse(sample(student, "ddim", ts)), K
        if method == "consistency" and K > 1:
            fresh = sample(student, "consistency", ts, torch.Generator().manual_seed(seed + 1))
            assert r["student_fresh_noise"] == mse(fresh)
        else:
            assert "student_fresh_noise" not in r


# ---------------------------------------------------------------------------------------------
# the student's EMA


@pytest.mark.parametrize("decay", [0.999, 0.3])
def test_student_ema_warmup_by_hand(decay):
    """The student's EMA: shadow <- d shadow + (1 - d) w with d = min(decay, (1 + n) / (10 + n))
    after the n-th update (warm-up: 2/11, 3/12, 4/13 ...; with decay 0.3 the cap takes over at
    n = 3); the target network's (no warm-up) uses ``decay`` from the first update; integer
    tensors are copied."""
    from ldmvfi_fast.distill.train import _EMA

    m = torch.nn.Linear(2, 2)
    m.register_buffer("count", torch.tensor(0, dtype=torch.long))
    ema, target = _EMA(m, decay, warmup=True), _EMA(m, decay, warmup=False)
    want = {n: p.detach().double().clone() for n, p in m.state_dict().items() if p.dtype.is_floating_point}
    want_t = {n: v.clone() for n, v in want.items()}
    seen = []
    for n in range(1, 6):
        with torch.no_grad():
            for k, p in enumerate(m.parameters()):
                p.copy_(torch.full_like(p, 10.0 * n + k))
            m.count.fill_(n)
        ema.update(m)
        target.update(m)
        d = min(decay, (1 + n) / (10 + n))
        seen.append(d)
        for name, w in m.state_dict().items():
            if name in want:
                want[name] = d * want[name] + (1 - d) * w.double()
                want_t[name] = decay * want_t[name] + (1 - decay) * w.double()
                torch.testing.assert_close(ema.shadow[name].double(), want[name], rtol=1e-6, atol=1e-6)
                torch.testing.assert_close(target.shadow[name].double(), want_t[name], rtol=1e-6, atol=1e-6)
        assert int(ema.shadow["count"]) == n == int(target.shadow["count"])
    if decay == 0.3:
        assert seen[:2] == [2 / 11, 3 / 12] and seen[2:] == [0.3] * 3  # both branches of the min


# ---------------------------------------------------------------------------------------------
# the command line: unreadable resume files, device check


@pytest.fixture(scope="module")
def finished_run(tiny_ckpt, clip, cache, tmp_path_factory):
    """A finished one-iteration run folder (run.json, state.pt, student.ckpt, losses.jsonl)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    torch.set_num_threads(1)
    _train(tiny_ckpt, out, _cfg(method="consistency", steps=1, teacher_steps=2, iters=1, batch=1), clip, cache)
    return out


def _distill_argv(tiny_ckpt, clip, cache, out, *extra):
    return ["distill", "--teacher", str(tiny_ckpt), "--data", str(clip), "--max-frames", str(TRAIN_FRAMES),
            "--method", "consistency", "--steps", "1", "--teacher-steps", "2", "--iters", "1", "--batch", "1",
            "--out", str(out), "--cache-latents", str(cache), "--lr", "0.0003", "--ema-decay", "0",
            "--save-every", "1000", "--teacher-x0", "1", *extra]


def _one_line_error(capsys, rc) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not-a-state", "state-without-iteration",
                                    "run.json-truncated", "run.json-not-a-dict"])
def test_resume_with_an_unreadable_file_is_one_line(damage, finished_run, tiny_ckpt, clip, cache, tmp_path, capsys):
    """``distill --resume`` with a truncated / corrupt / foreign state.pt or run.json: one line
    ``error: ...`` naming the file and what to do, exit status 2, no traceback, nothing deleted
    or rewritten."""
    import shutil

    from ldmvfi_fast.cli import main

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    state, run_json = out / "state.pt", out / "run.json"
    if damage == "truncated":
        _truncate(state)
    elif damage == "garbage":
        state.write_bytes(os.urandom(4096))
    elif damage == "empty":
        state.write_bytes(b"")
    elif damage == "not-a-state":
        torch.save([1, 2, 3], state)
    elif damage == "state-without-iteration":
        st = torch.load(state, weights_only=True)
        del st["iteration"]
        torch.save(st, state)
    elif damage == "run.json-truncated":
        _truncate(run_json)
    else:
        run_json.write_text("[1, 2]")
    before = snapshot(out, stat=False)
    err = _one_line_error(capsys, main(_distill_argv(tiny_ckpt, clip, cache, out, "--resume")))
    name = "run.json" if damage.startswith("run.json") else "state.pt"
    assert str(out / name) in err and "--overwrite" in err, err
    assert snapshot(out, stat=False) == before


@pytest.mark.parametrize("device, words", [("meta", "not supported"), ("tpu0", "unknown device"),
                                           ("cuda:99", None)])
def test_cli_device_is_checked_by_the_one_rule(device, words, tmp_path, capsys):
    """``distill --device`` is checked by checkpoint.check_device_dtype (the rule every command
    uses), before anything loads: one line naming what works."""
    from ldmvfi_fast.cli import main

    rc = main(["distill", "--teacher", str(tmp_path / "none.ckpt"), "--data", str(tmp_path), "--method",
               "consistency", "--steps", "1", "--out", str(tmp_path / "run"), "--device", device])
    err = _one_line_error(capsys, rc)
    if words is None:  # no CUDA here, or no 100th GPU
        words = "does not exist" if torch.cuda.is_available() else "use --device cpu"
    assert words in err and "none.ckpt" not in err, err
    assert not (tmp_path / "run").exists()
