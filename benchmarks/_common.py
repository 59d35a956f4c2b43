"""Helpers shared by the benchmark scripts: timing (median after warm-up, variants alternated
run by run), CUDA-event timing, run information (date, commit, machine, command) and JSON.

The scripts are run as ``python benchmarks/NAME.py``; this folder is then ``sys.path[0]``,
so they ``import _common``. Importing this module also puts the checkout root on
``sys.path``, so the scripts run from a checkout without installing the package.
Nothing CUDA is touched at import time.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------
# timing


def sync(device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU. ``device``: torch.device or None."""
    if device is not None and getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def summary(seconds: list[float]) -> dict:
    """Median/min/max in milliseconds and the raw times (ms) of one timed variant."""
    ms = [t * 1e3 for t in seconds]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "iqr_ms": iqr(ms),
            "repeats": len(ms), "raw_ms": ms}


def iqr(values: list[float]) -> float:
    """Interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[2] - q[0]


def time_interleaved(fns: dict[str, Callable[[], object]], device=None, repeats: int = 5, warmup: int = 1,
                     setup: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Time several variants of one computation, alternating them run by run so that a noisy
    machine affects all alike.

    Each variant runs ``warmup`` times untimed, then the variants take turns ``repeats`` times;
    the device is synchronised around every timed call. ``setup(name)`` runs (untimed) before
    each call of variant ``name``. Returns ``{name: summary(...)}`` (see :func:`summary`).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():
        for _ in range(warmup):
            if setup:
                setup(name)
            fn()
    sync(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            if setup:
                setup(name)
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: summary(t) for name, t in times.items()}


def time_fn(fn: Callable[[], object], device=None, repeats: int = 5, warmup: int = 1) -> dict:
    """:func:`time_interleaved` of a single function: its summary."""
    return time_interleaved({"-": fn}, device, repeats, warmup)["-"]


def time_cuda_events(fn: Callable, args: tuple, warmup: int, repeats: int, flush=None) -> list[float]:
    """Milliseconds of ``fn(*args)`` per run measured with CUDA events, after ``warmup`` runs;
    ``flush`` (a CUDA tensor larger than the L2 cache) is zeroed before each run."""
    import torch

    for _ in range(warmup):
        fn(*args)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        if flush is not None:
            flush.zero_()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


# ---------------------------------------------------------------------------------------------
# memory (Linux /proc): resident set size and its high-water mark, which can be reset


def _proc_status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mib() -> float | None:
    """This process's resident set size now (MiB; None where /proc is missing)."""
    kib = _proc_status_kib("VmRSS")
    return None if kib is None else kib / 1024


def peak_rss_mib() -> float | None:
    """The resident set's high-water mark since the start or the last :func:`reset_peak_rss` (MiB)."""
    kib = _proc_status_kib("VmHWM")
    if kib is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; not resettable
    return kib / 1024


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc ``malloc_trim``), so
    that the resident set is what is still in use."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current resident set (Linux >= 4.0: ``5`` into
    ``/proc/self/clear_refs``); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# run information


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout, no git
        return ""


def git_info() -> dict:
    """``{"commit": full hash or None, "dirty": bool}`` of the checkout (dirty: uncommitted changes
    anywhere in it, which may or may not touch what is measured)."""
    return {"commit": _git("rev-parse", "HEAD") or None, "dirty": bool(_git("status", "--porcelain"))}


def commit() -> str:
    """The short commit hash, or ``unknown``."""
    return _git("rev-parse", "--short", "HEAD") or "unknown"


def now() -> str:
    """The UTC date and time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def command(argv: list[str] | None = None, script: str | None = None) -> str:
    """The command line of this run (``argv``/``script``: when a script's ``main(argv)`` is called in-process)."""
    if argv is None:
        return " ".join([f"benchmarks/{Path(sys.argv[0]).name}"] + sys.argv[1:])
    return " ".join([f"benchmarks/{script or Path(sys.argv[0]).name}", *argv])


def run_info(device=None, argv: list[str] | None = None, script: str | None = None) -> dict:
    """What every result file records: date, commit (+dirty), command, machine, software
    (``argv``, ``script``: see :func:`command`)."""
    import torch

    info = {"date": now(), "commit": commit(), "git": git_info(), "command": command(argv, script),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpu_count": os.cpu_count()},
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device is not None:
        info["device_type"] = device.type
        info["device"] = (torch.cuda.get_device_name(device) if device.type == "cuda"
                          else platform.processor() or "cpu")
    return info


def write_json(path: str | Path, report: dict) -> Path:
    """Write ``report`` as indented JSON (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path
