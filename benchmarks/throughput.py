"""Throughput of a whole interpolation job: one process, a segmented job (local executor) and Ray actors.

Frames per second of wall time of the same video job (a bundled clip or a video file, its first
``--frames`` frames, optionally downscaled to ``--width``), x2, in these configurations, all in one
run (``--configs``, comma-separated):

* ``single``: one process, no segments: :func:`ldmvfi_fast.jobs.interpolate_video` (what
  ``ldmvfi-fast interpolate SRC -o OUT`` runs without ``--segment-frames``), at ``--threads``
  torch threads (default: torch's, the number of cores); ``single-1t``: the same at 1 thread;
* ``local``: a segmented job (:func:`ldmvfi_fast.segments.plan_job` + ``run_job(executor="local")``,
  segments of ``--segment-frames`` input frames overlapping by one, the job folder's lossless PNGs
  assembled and encoded at the end), at ``--threads``; ``local-1t``: at 1 thread;
* ``ray1``, ``ray2`` (``rayN``): the same job on N Ray actors (``run_job(executor="ray",
  actors=N)``), one model each. A local Ray instance (``ray.init(num_cpus=--ray-cpus)``) is started
  once, after the local configurations, and timed separately (Ray start-up); each job then starts
  its own actors (worker process, imports, model load: the actor start-up) and kills them at the
  end, as ``run_job`` does. Ray runs a CPU actor with ``OMP_NUM_THREADS`` = its ``num_cpus`` (1),
  so each actor's torch uses 1 thread (measured inside the actor; ``--actor-threads`` sets it).

Per run: ``total`` (from nothing loaded to the output written: plan, model load / actors, frames,
assembly), ``start-up`` (model load in this process; for Ray: from ``run_job`` until every actor has
its model), ``steady`` (the rest: interpolating, writing, assembling), ``plan`` (``plan_job``: input
hashed and counted), ``assemble`` (from the last segment to the output written). frames/s = output
frames / seconds; new frames/s = new (interpolated) frames / seconds. Figures are medians over
``--repeats``; the configurations take turns run by run (the local ones first, then the Ray ones
with Ray up). Weights are random (the tiny config, seeded, as the tests' tiny checkpoint) unless
``--checkpoint`` is given: speed does not depend on their values.

Frames: every configuration runs the same job (same ``--seed``); the segmented ones' frames (their
lossless PNGs) and every output video (decoded) are compared: sha256 and the max abs difference
(uint8 levels) from a reference configuration (``local-1t`` when run). The library gives identical
frames however a job is cut or scheduled at one thread count; CPU convolutions differ in the last
bits between thread counts, so ``local`` (2 threads) may differ from the 1-thread ones by a level
or so. ``single`` draws its noise from one generator seeded by ``--seed`` (``interpolate_video``
has no per-pair seeds), so its new frames differ from the segmented job's by design.

Prints a table and writes JSON (device, date, commit, command, torch version, thread counts, raw
times) to ``benchmarks/results/throughput-....json`` (``--out``).

    python benchmarks/throughput.py                                   # the default run (~3-5 min on 2 cores)
    python benchmarks/throughput.py --configs single,local --repeats 3
    python benchmarks/throughput.py --clip bikes.mp4 --width 320 --frames 17 --segment-frames 5
    python benchmarks/throughput.py --checkpoint tiny.ckpt --device cuda --configs single,local,ray1,ray2 \\
        --ray-address auto
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, run_info, write_json

log = logging.getLogger("throughput")

DEFAULT_CONFIGS = "single,single-1t,local,local-1t,ray1,ray2"
MULTI = 2


# ---------------------------------------------------------------------------------------------
# configurations


def parse_configs(text: str) -> list[dict]:
    """``[{"name", "kind": single|segmented, "executor", "threads": "main"|1|None, "actors"}]``."""
    out = []
    for name in [c.strip() for c in text.split(",") if c.strip()]:
        if any(c["name"] == name for c in out):
            raise ValueError(f"configuration {name!r} listed twice")
        if name in ("single", "single-1t"):
            out.append({"name": name, "kind": "single", "executor": None,
                        "threads": 1 if name.endswith("-1t") else "main", "actors": None})
        elif name in ("local", "local-1t"):
            out.append({"name": name, "kind": "segmented", "executor": "local",
                        "threads": 1 if name.endswith("-1t") else "main", "actors": None})
        elif re.fullmatch(r"ray[1-9][0-9]*", name):
            out.append({"name": name, "kind": "segmented", "executor": "ray", "threads": None,
                        "actors": int(name[3:])})
        else:
            raise ValueError(f"unknown configuration {name!r}: use single, single-1t, local, local-1t, rayN "
                             "(N actors)")
    if not out:
        raise ValueError("no configuration given")
    return out


# ---------------------------------------------------------------------------------------------
# inputs: the clip (optionally downscaled), the checkpoint


def random_checkpoint(path: Path, config: str = "tiny", seed: int = 0) -> Path:
    """A checkpoint in the official layout with random weights, made as the tests make their tiny
    model (``tests/_shared.random_model``: default initialisation after ``torch.manual_seed(seed)``,
    the zero-initialised layers ~ N(0, 0.02^2)); the EMA U-Net equals the raw one."""
    import torch

    from ldmvfi_fast.checkpoint import AE_PREFIX, UNET_PREFIX, ema_key
    from ldmvfi_fast.config import resolve_config
    from ldmvfi_fast.models.ldmvfi import LDMVFI
    from ldmvfi_fast.sampling import SCHEDULE_BUFFERS

    torch.manual_seed(seed)
    model = LDMVFI(resolve_config(config)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.02)
    sd = {AE_PREFIX + n: t.detach().clone() for n, t in model.first_stage.state_dict().items()}
    params = {n for n, _ in model.unet.named_parameters()}
    for n, t in model.unet.state_dict().items():
        sd[UNET_PREFIX + n] = t.detach().clone()
        if n in params:
            sd[ema_key(n)] = t.detach().clone()
    for n in SCHEDULE_BUFFERS:
        sd[n] = getattr(model, n).detach().clone()
    torch.save({"state_dict": sd}, path)
    return path


def prepare_source(args, tmp: Path) -> tuple[Path, int | None]:
    """``(video, max_frames)`` the jobs read: the clip itself with ``max_frames = --frames``, or
    (``--width``) its first ``--frames`` frames downscaled (area-averaged, even sizes) into a
    near-lossless H.264 file (crf 0) in ``tmp``."""
    from ldmvfi_fast.clips import bundled_clip
    from ldmvfi_fast.video import VideoWriter, probe, read_video

    clip = Path(args.clip) if Path(args.clip).is_file() else bundled_clip(args.clip)
    if not args.width:
        return clip, args.frames
    import numpy as np
    import torch

    info = probe(clip)
    w = args.width - args.width % 2
    h = max(2, round(info.height * w / info.width / 2) * 2)
    out = tmp / f"{clip.stem}-{args.frames}f-{w}x{h}.mp4"
    with VideoWriter(out, w, h, info.fps, crf=0) as writer:
        for img in read_video(clip, args.frames):
            x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
            y = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
            writer.write(y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
    return out, None


# ---------------------------------------------------------------------------------------------
# a timed model load (also inside Ray actors)


class TimedLoad:
    """A picklable wrapper of a :class:`ldmvfi_fast.segments.Loader`: its call (in this process
    for the local executor, in each Ray actor's ``__init__`` for Ray) records, in a JSON file in
    ``stamps``, the wall-clock time (``time.time``) it started and when the model was loaded, the
    process id and the torch threads it runs with (``threads``: set them first). Self-contained:
    Ray actors unpickle it by value."""

    def __init__(self, inner, stamps: str, threads: int | None = None):
        self.inner, self.stamps, self.threads = inner, str(stamps), threads

    def __call__(self):
        import json as _json
        import os as _os
        import time as _time
        import uuid

        import torch

        t0 = _time.time()
        if self.threads:
            torch.set_num_threads(self.threads)
        interp = self.inner()
        t1 = _time.time()
        rec = {"pid": _os.getpid(), "load_start": t0, "load_end": t1, "threads": torch.get_num_threads(),
               "omp_num_threads": _os.environ.get("OMP_NUM_THREADS")}
        path = _os.path.join(self.stamps, f"load-{_os.getpid()}-{uuid.uuid4().hex[:8]}.json")
        with open(path, "w") as f:
            f.write(_json.dumps(rec))
        return interp


def _stamps(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("load-*.json"))]


# ---------------------------------------------------------------------------------------------
# one run of each kind


def run_single(ctx: dict, cfg: dict, work: Path) -> dict:
    """``single``: model loaded in this process, then ``jobs.interpolate_video`` (overlap as the
    command line chooses it: off on the CPU)."""
    import torch

    from ldmvfi_fast import jobs

    threads = ctx["threads"] if cfg["threads"] == "main" else cfg["threads"]
    torch.set_num_threads(threads)
    stamps = work / "stamps"
    stamps.mkdir()
    out = work / "out.mp4"
    t0 = time.time()
    interp = TimedLoad(ctx["loader"], stamps)()
    t1 = time.time()
    overlap = jobs.default_overlap(interp, None)
    r = jobs.interpolate_video(interp, ctx["src"], out, multi=MULTI, seed=ctx["seed"], crf=ctx["crf"],
                               max_frames=ctx["max_frames"], overlap=overlap, progress=False)
    t2 = time.time()
    return {"total_s": t2 - t0, "plan_s": 0.0, "startup_s": t1 - t0, "steady_s": t2 - t1, "assemble_s": None,
            "frames": r.frames, "threads": torch.get_num_threads(), "actors": None, "overlap": overlap,
            "output": str(out), "loads": _stamps(stamps)}


def run_segmented(ctx: dict, cfg: dict, work: Path) -> dict:
    """``local``/``rayN``: ``plan_job`` + ``run_job``; phases from the load stamps and the
    ``on_segment`` times."""
    import torch

    from ldmvfi_fast import segments

    stamps = work / "stamps"
    stamps.mkdir()
    out = work / "out.mp4"
    if cfg["executor"] == "local":
        torch.set_num_threads(ctx["threads"] if cfg["threads"] == "main" else cfg["threads"])
        load = TimedLoad(ctx["loader"], stamps)
    else:
        load = TimedLoad(ctx["loader"], stamps, ctx["actor_threads"])
    done: list[tuple[str, float]] = []
    t0 = time.time()
    job = segments.plan_job(ctx["src"], out, work / "job", identity=ctx["identity"], multi=MULTI,
                            segment_frames=ctx["segment_frames"], seed=ctx["seed"], max_frames=ctx["max_frames"],
                            crf=ctx["crf"])
    t1 = time.time()
    r = segments.run_job(job, load, executor=cfg["executor"], actors=cfg["actors"],
                         on_segment=lambda m: done.append((m["name"], time.time())))
    t2 = time.time()
    loads = _stamps(stamps)
    if not loads or not done:
        raise RuntimeError(f"{cfg['name']}: no model load or no segment recorded")
    ready = max(s["load_end"] for s in loads)
    last = max(t for _, t in done)
    return {"total_s": t2 - t0, "plan_s": t1 - t0, "startup_s": ready - t1, "steady_s": t2 - ready,
            "segments_s": last - ready, "assemble_s": t2 - last,
            "first_model_ready_s": min(s["load_end"] for s in loads) - t1,
            "actor_init_start_s": [round(s["load_start"] - t1, 3) for s in loads],
            "model_load_s": [round(s["load_end"] - s["load_start"], 3) for s in loads],
            "segment_done_s": {n: round(t - t1, 3) for n, t in done},
            "segments_done_before_all_ready": sum(t < ready for _, t in done),
            "segments": len(job.segments), "frames": r.frames,
            "threads": sorted({s["threads"] for s in loads}) if cfg["executor"] == "ray" else torch.get_num_threads(),
            "actors": len({s["pid"] for s in loads}) if cfg["executor"] == "ray" else None,
            "omp_num_threads": sorted({str(s["omp_num_threads"]) for s in loads}),
            "output": str(out), "job_dir": str(work / "job"), "loads": loads}


# ---------------------------------------------------------------------------------------------
# frames: digests and differences


def _video_frames(path: Path):
    import numpy as np

    from ldmvfi_fast.video import read_video

    return [np.asarray(f) for f in read_video(path)]


def _segment_pngs(job_dir: Path):
    """The job's frames in output order from its segment PNGs (the shared first frame of later
    segments left out)."""
    import numpy as np

    from ldmvfi_fast.video import read_image

    frames = []
    for k, seg in enumerate(sorted((job_dir / "segments").iterdir())):
        pngs = sorted(seg.glob("frame_*.png"))
        frames += [np.asarray(read_image(p)) for p in (pngs if k == 0 else pngs[1:])]
    return frames


def _digest(frames) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(f.tobytes())
    return "sha256:" + h.hexdigest()[:16]


def _max_diff(a, b) -> int | None:
    import numpy as np

    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return None
    return int(max(np.abs(x.astype(np.int16) - y.astype(np.int16)).max() for x, y in zip(a, b)))


def compare_frames(first_runs: dict[str, dict], configs: list[dict]) -> dict:
    """Digests of each configuration's frames and the max abs difference from a reference."""
    seg_names = [c["name"] for c in configs if c["kind"] == "segmented"]
    ones = [n for n in seg_names if n == "local-1t" or n.startswith("ray")]
    ref = "local-1t" if "local-1t" in seg_names else (ones[0] if ones else (seg_names[0] if seg_names else None))
    pngs = {n: _segment_pngs(Path(first_runs[n]["job_dir"])) for n in seg_names}
    videos = {c["name"]: _video_frames(Path(first_runs[c["name"]]["output"])) for c in configs}
    out = {"reference": ref,
           "segment_frames_sha256": {n: _digest(f) for n, f in pngs.items()},
           "output_video_sha256": {n: _digest(f) for n, f in videos.items()}}
    if ref is not None:
        out["segment_frames_max_abs_diff_vs_reference"] = {n: _max_diff(f, pngs[ref]) for n, f in pngs.items()}
        out["output_video_max_abs_diff_vs_reference"] = {n: _max_diff(f, videos[ref]) for n, f in videos.items()}
    groups: dict[str, list[str]] = {}
    for n, d in out["segment_frames_sha256"].items():
        groups.setdefault(d, []).append(n)
    out["identical_segment_frames"] = list(groups.values())
    single = [c["name"] for c in configs if c["kind"] == "single"]
    if len(single) == 2:
        out["single_max_abs_diff_between_thread_counts"] = _max_diff(videos[single[0]], videos[single[1]])
    out["notes"] = ("the segmented jobs' frames are the library's guarantee (the same however cut or scheduled, "
                    "at one thread count); single seeds one generator with --seed (interpolate_video has no "
                    "per-pair seeds): its new frames differ from the segmented jobs' by design")
    return out


# ---------------------------------------------------------------------------------------------
# summary, table


def _median(runs: list[dict], key: str):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(runs: list[dict], n_out: int, n_new: int) -> dict:
    s = {k: _median(runs, k) for k in ("total_s", "plan_s", "startup_s", "steady_s", "segments_s", "assemble_s")}
    s.update(repeats=len(runs), min_total_s=min(r["total_s"] for r in runs),
             max_total_s=max(r["total_s"] for r in runs),
             fps=n_out / s["total_s"], new_fps=n_new / s["total_s"],
             steady_fps=n_out / s["steady_s"], steady_new_fps=n_new / s["steady_s"],
             threads=runs[0]["threads"], actors=runs[0]["actors"])
    return s


def comparisons(res: dict) -> dict:
    """Segmenting overhead (segmented local vs one process, same threads) and Ray scaling."""
    out = {}

    def ratio(a, b, key):
        return res[a][key] / res[b][key] if a in res and b in res else None

    for seg, one in (("local", "single"), ("local-1t", "single-1t")):
        if seg in res and one in res:
            out[f"{seg}_vs_{one}"] = {"total_ratio": ratio(seg, one, "total_s"),
                                      "steady_ratio": ratio(seg, one, "steady_s"),
                                      "overhead_total_pct": 100 * (ratio(seg, one, "total_s") - 1),
                                      "overhead_steady_pct": 100 * (ratio(seg, one, "steady_s") - 1)}
    rays = sorted((n for n in res if n.startswith("ray")), key=lambda n: int(n[3:]))
    if len(rays) >= 2:
        a, b = rays[0], rays[-1]
        out[f"{b}_vs_{a}"] = {"speedup_total": ratio(a, b, "total_s"), "speedup_steady": ratio(a, b, "steady_s"),
                              "ideal": int(b[3:]) / int(a[3:]),
                              "startup_s": [res[a]["startup_s"], res[b]["startup_s"]]}
    if rays and "local-1t" in res:
        out[f"{rays[0]}_vs_local-1t"] = {"total_ratio": ratio(rays[0], "local-1t", "total_s"),
                                         "steady_ratio": ratio(rays[0], "local-1t", "steady_s")}
    return out


def table(report: dict) -> str:
    m, res = report["meta"], report["results"]
    lines = [f"LDMVFI job throughput: {m['clip']} first {m['input_frames']} frames {m['size'][0]}x{m['size'][1]} -> "
             f"{m['output_frames']} frames (x{m['multi']}, {m['new_frames']} new), config={m['config']} "
             f"({m['weights']} weights), {m['steps']} steps, {m['padding']} padding, segments of "
             f"{m['segment_frames']} frames ({m['segments']} segments), {m['device']}, commit {m['commit']}, "
             f"{m['date']}; median over {m['repeats']} repeat(s), configurations alternated; "
             f"load average before {m['load_average_1_5_15min']['before'][0]:.1f}", "",
             "| config | threads | actors | total s | frames/s | new frames/s | plan s | start-up s | steady s | "
             "steady frames/s | assemble s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def f(x, d=2):
        return "-" if x is None else f"{x:.{d}f}"

    for name, r in res.items():
        th = r["threads"]
        th = "/".join(map(str, th)) + " per actor" if isinstance(th, list) else str(th)
        lines.append(f"| {name} | {th} | {r['actors'] or '-'} | {f(r['total_s'], 1)} | {f(r['fps'])} | "
                     f"{f(r['new_fps'])} | {f(r['plan_s'])} | {f(r['startup_s'])} | {f(r['steady_s'], 1)} | "
                     f"{f(r['steady_fps'])} | {f(r['assemble_s'])} |")
    if report.get("ray_init_s") is not None:
        lines.append(f"\nRay start-up (ray.init, num_cpus={m.get('ray_cpus')}): {report['ray_init_s']:.1f} s "
                     "(once, not in the totals); actor start-up is each Ray job's start-up column")
    for k, c in report["comparisons"].items():
        if "overhead_total_pct" in c:
            lines.append(f"segmenting overhead {k}: total {c['overhead_total_pct']:+.0f}%, steady "
                         f"{c['overhead_steady_pct']:+.0f}%")
        elif "speedup_steady" in c:
            lines.append(f"Ray scaling {k}: steady {c['speedup_steady']:.2f}x, total {c['speedup_total']:.2f}x "
                         f"(ideal {c['ideal']:.0f}x)")
        else:
            lines.append(f"{k}: total {c['total_ratio']:.2f}x, steady {c['steady_ratio']:.2f}x")
    a = report.get("frames")
    if a:
        lines.append("identical segment frames: " + "; ".join(" = ".join(g) for g in a["identical_segment_frames"]))
        if a.get("segment_frames_max_abs_diff_vs_reference"):
            lines.append(f"max abs diff (uint8) vs {a['reference']}: segment PNGs "
                         f"{a['segment_frames_max_abs_diff_vs_reference']}, output videos "
                         f"{a['output_video_max_abs_diff_vs_reference']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help=f"comma-separated: single, single-1t, local, local-1t, rayN (default {DEFAULT_CONFIGS})")
    p.add_argument("--clip", default="carphone_pristine.mp4", help="a bundled clip's name or a video file")
    p.add_argument("--frames", type=int, default=9, help="input frames (the first N; default 9)")
    p.add_argument("--width", type=int, default=None, help="downscale to this width first (default: the clip's)")
    p.add_argument("--segment-frames", type=int, default=3, help="input frames per segment (default 3)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint (default: random tiny weights, seed 0)")
    p.add_argument("--config", default=None, help="the checkpoint's config (default: inferred; tiny when random)")
    p.add_argument("--steps", type=int, default=2, help="DDIM steps (default 2)")
    p.add_argument("--padding", default="minimal", choices=("reference", "minimal"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of single and local (default: torch's, the number of cores)")
    p.add_argument("--actor-threads", type=int, default=None,
                   help="torch threads in each Ray actor (default: as Ray sets them, OMP_NUM_THREADS=1)")
    p.add_argument("--ray-cpus", type=int, default=2, help="num_cpus of the local Ray instance (default 2)")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting one")
    p.add_argument("--repeats", type=int, default=1, help="runs of each configuration (median; default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crf", type=int, default=17)
    p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    p.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/throughput-....json)")
    args = p.parse_args(argv)
    args.argv = None if argv is None else list(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        configs = parse_configs(args.configs)
    except ValueError as exc:
        p.error(str(exc))
    if args.frames < 2 or args.segment_frames < 2 or args.repeats < 1 or args.steps < 1:
        p.error("--frames and --segment-frames must be >= 2, --repeats and --steps >= 1")
    from ldmvfi_fast.errors import LdmvfiError

    try:
        report = run(args, configs)
    except LdmvfiError as exc:
        print(f"throughput.py: error: {exc}", file=sys.stderr)
        return 2
    print(table(report))
    m = report["meta"]
    default = RESULTS / (f"throughput-{Path(m['clip']).stem}-{m['input_frames']}f-{m['size'][0]}x{m['size'][1]}-"
                         f"{m['config']}-{m['steps']}steps-{m['device_type']}.json")
    out = write_json(Path(args.out) if args.out else default, report)
    print(f"wrote {out}")
    return 0


def run(args, configs: list[dict]) -> dict:
    import torch
    from tqdm import tqdm

    from ldmvfi_fast import segments
    from ldmvfi_fast.samplers import SamplingRequest
    from ldmvfi_fast.video import probe

    device = torch.device(args.device)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    info = run_info(device, args.argv, "throughput.py")  # the commit measured (others may commit meanwhile)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="ldmvfi-throughput-"))
    try:
        src, max_frames = prepare_source(args, tmp)
        vinfo = probe(src)
        n_in = min(args.frames, vinfo.frames) if vinfo.frames else args.frames
        n_out, n_new = MULTI * (n_in - 1) + 1, (MULTI - 1) * (n_in - 1)
        if args.checkpoint:
            ckpt, weights = Path(args.checkpoint), "checkpoint"
        else:
            ckpt, weights = random_checkpoint(tmp / "random_tiny.ckpt"), "random"
        config = args.config or (None if args.checkpoint else "tiny")
        loader = segments.Loader(ckpt=str(ckpt), config=config, device=device,
                                 sampling=SamplingRequest(steps=args.steps), padding=args.padding)
        ctx = {"src": src, "max_frames": max_frames, "loader": loader, "identity": loader.identity(),
               "seed": args.seed, "crf": args.crf, "segment_frames": args.segment_frames, "threads": threads,
               "actor_threads": args.actor_threads}
        # warm-up (untimed): this process's first model load and interpolation at this size
        interp = loader()
        import numpy as np

        from ldmvfi_fast.video import read_video, to_tensor
        pair = [to_tensor(np.asarray(f)) for f in read_video(src, 2)]
        with torch.inference_mode():
            interp.interpolate(pair[0], pair[1], seed=0)
        model = getattr(interp.backbone, "model", None)
        cfg_name = model.cfg.name if model is not None else (config or "?")
        steps = getattr(interp, "steps", args.steps)
        del interp
        runs: dict[str, list[dict]] = {c["name"]: [] for c in configs}
        first: dict[str, dict] = {}
        local = [c for c in configs if c["executor"] != "ray"]
        ray_cfgs = [c for c in configs if c["executor"] == "ray"]
        bar = tqdm(total=len(configs) * args.repeats, unit="run", desc="throughput", disable=args.quiet)

        def one(cfg, rep):
            work = tmp / f"{cfg['name']}-{rep}"
            work.mkdir()
            bar.set_postfix_str(cfg["name"])
            r = (run_single if cfg["kind"] == "single" else run_segmented)(ctx, cfg, work)
            if r["frames"] != n_out:
                raise RuntimeError(f"{cfg['name']}: {r['frames']} frames written, {n_out} expected")
            runs[cfg["name"]].append({k: v for k, v in r.items() if k not in ("output", "job_dir")})
            if rep == 0:
                first[cfg["name"]] = r
            else:
                shutil.rmtree(work)
            bar.update()

        for rep in range(args.repeats):
            for cfg in local:
                one(cfg, rep)
        torch.set_num_threads(threads)
        ray_init_s = None
        if ray_cfgs:
            ray_init_s = _with_ray(args, ray_cfgs, lambda: [one(cfg, rep) for rep in range(args.repeats)
                                                            for cfg in ray_cfgs])
        bar.close()
        frames = compare_frames(first, configs)
        job = segments.cut_segments(n_in, args.segment_frames)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = {c["name"]: {**summarize(runs[c["name"]], n_out, n_new), "runs": runs[c["name"]]} for c in configs}
    meta = {**info, "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()},
            "clip": Path(args.clip).name, "size": [vinfo.width, vinfo.height], "downscaled": bool(args.width),
            "input_frames": n_in, "output_frames": n_out, "new_frames": n_new, "multi": MULTI,
            "segment_frames": args.segment_frames, "segments": len(job),
            "input_frames_decoded_by_segments": sum(s.stop for s in job),
            "config": cfg_name, "weights": weights, "checkpoint": str(args.checkpoint) if args.checkpoint else None,
            "steps": steps, "padding": args.padding, "seed": args.seed, "crf": args.crf, "repeats": args.repeats,
            "threads": {"single/local": threads, "-1t configurations": 1,
                        "ray actors (measured)": sorted({t for c in ray_cfgs for t in results[c["name"]]["threads"]}),
                        "actor_threads_option": args.actor_threads},
            "ray": {"cpus": None if args.ray_address else args.ray_cpus, "address": args.ray_address},
            "ray_cpus": None if args.ray_address else args.ray_cpus,
            "actors_option": ("segments.run_job(actors=N) (Python API; this benchmark passes it); the command line "
                              "(--executor ray) has no option for it: run_job then starts one actor per GPU of the "
                              "cluster, else one per cluster CPU, at most one per pending segment"),
            "definitions": {"total": "plan + start-up + steady, from nothing loaded to the output written "
                                     "(Ray start-up excluded)",
                            "start-up": "model load in this process; Ray: run_job start until every actor has "
                                        "its model (worker process, imports, load)",
                            "steady": "the rest: interpolating, writing, assembling",
                            "plan": "plan_job (input hashed, frames counted)",
                            "assemble": "last segment finished until run_job returned (output encoded; Ray: "
                                        "actors killed)"}}
    return {"meta": meta, "ray_init_s": ray_init_s, "results": results, "comparisons": comparisons(results),
            "frames": frames}


def _with_ray(args, ray_cfgs, body) -> float | None:
    """Start (or join) Ray, run ``body``, shut Ray down if started here; the seconds ``ray.init``
    took (None when Ray was already initialised)."""
    try:
        import ray
    except ImportError:
        from ldmvfi_fast.errors import OptionError

        raise OptionError("the ray configurations need Ray: pip install 'ldmvfi-fast[ray]'") from None
    import ray.cloudpickle as cp

    mod = sys.modules[__name__]
    by_value = __name__ != "__main__"  # imported (tests): the actors cannot import this script
    if by_value:
        cp.register_pickle_by_value(mod)
    started = not ray.is_initialized()
    t = None
    try:
        if started:
            t0 = time.perf_counter()
            if args.ray_address:
                ray.init(address=args.ray_address, log_to_driver=False)
            else:
                ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
            t = time.perf_counter() - t0
        cpus = int(ray.cluster_resources().get("CPU", 0))
        gpus = int(ray.cluster_resources().get("GPU", 0))
        for c in ray_cfgs:
            if c["actors"] > (gpus or cpus):
                from ldmvfi_fast.errors import OptionError

                raise OptionError(f"{c['name']}: {c['actors']} actors do not fit the cluster ({gpus} GPUs, {cpus} "
                                  "CPUs, one each): run_job would wait for them forever")
        body()
    finally:
        if started:
            ray.shutdown()
        if by_value:
            cp.unregister_pickle_by_value(mod)
    return t


if __name__ == "__main__":
    sys.exit(main())
