"""Peak memory of a segmented job against its segment length (README "Long videos and many GPUs").

Runs one segmented job (local executor, one thread) on the first ``--frames`` frames of a bundled
clip in a fresh process per segment length and prints the process's peak RSS after the model loads
and at the end (``ru_maxrss``): a segment's memory is the model plus one frame pair's working set,
whatever its length.

    python benchmarks/segment_memory.py --ckpt ../shared/fixtures/ldmvfi-tiny/tiny_random.ckpt --lengths 5,41
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def one(ckpt: str, length: int, frames: int, clip: str, steps: int) -> dict:
    import torch

    from ldmvfi_fast import segments
    from ldmvfi_fast.clips import bundled_clip
    from ldmvfi_fast.samplers import SamplingRequest

    torch.set_num_threads(1)
    loader = segments.Loader(ckpt=ckpt, sampling=SamplingRequest(steps=steps), padding="minimal")
    interp = loader()
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as d:
        job = segments.plan_job(bundled_clip(clip), Path(d) / "o.mp4", Path(d) / "j", identity=loader.identity(),
                                segment_frames=length, seed=1, max_frames=frames)
        segments.run_job(job, interp=interp, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"segment_frames": length, "segments": len(job.segments), "rss_after_load_mib": round(loaded / 1024),
            "peak_rss_mib": round(peak / 1024), "job_mib": round((peak - loaded) / 1024)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--lengths", default="5,41", help="segment lengths (input frames), comma-separated")
    ap.add_argument("--frames", type=int, default=41)
    ap.add_argument("--clip", default="carphone_pristine.mp4")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process
    a = ap.parse_args(argv)
    if a.one is not None:
        print(json.dumps(one(a.ckpt, a.one, a.frames, a.clip, a.steps)))
        return 0
    rows = []
    for n in (int(x) for x in a.lengths.split(",")):
        cmd = [sys.executable, __file__, "--ckpt", a.ckpt, "--frames", str(a.frames), "--clip", a.clip,
               "--steps", str(a.steps), "--one", str(n)]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
        r = rows[-1]
        print(f"segments of {n:4d} frames ({r['segments']:3d} segments): RSS {r['rss_after_load_mib']} MiB after "
              f"the model loads, peak {r['peak_rss_mib']} MiB (+{r['job_mib']} MiB for the job)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
