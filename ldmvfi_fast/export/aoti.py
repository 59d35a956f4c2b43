"""Compile the three sub-models ahead of time with AOTInductor (``encoder.pt2``, ``unet_step.pt2``,
``decoder.pt2`` AOTI packages + ``manifest.json``).

``build_aoti(model_or_engines, out_dir)`` takes either a loaded :class:`~ldmvfi_fast.models.ldmvfi.LDMVFI`
(exported first with :func:`~.pt2.export_pt2`, into a temporary folder) or an existing
``torch.export`` engine folder (runtime ``exported``, made by ``ldmvfi-fast export``), and compiles
each program with ``torch._inductor.aoti_compile_and_package``. The manifest is the source
folder's (same schema, same dynamic batch / height / width and accepted sizes) with
``runtime: "aoti"``, the device compiled for, and an ``aoti`` section: torch version, compile
times and the build machine. :class:`~ldmvfi_fast.runtime.aoti.AotiBackbone` runs the folder.

Custom ops (``ldmvfi_fast::*``, listed in the manifest's ``custom_ops``) are not compiled into
the packages: they stay calls into the compiled op library ``ldmvfi_fast._C`` (AOTInductor's
proxy executor), which must be importable where the packages run.

AOTInductor compiles CPU code for the build machine's processor (``-march=native``): the
manifest records the machine, the vector ISA inductor picked and the processor's instruction-set
flags, and the runtime refuses a folder whose flags this processor lacks (it would crash with an
illegal instruction). Build on (a machine like) the one that runs it.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch

from .. import formats
from .._atomic import staged_folder
from ..errors import EngineError
from ..models.ldmvfi import LDMVFI
from ..sampling import DDIM_TABLE_ETAS, DDIM_TABLE_STEPS, ddim_tables  # noqa: F401 - re-exported
from .._machine import machine_info
from ..manifest import MANIFEST_NAME, open_engine_folder, read_manifest, require_compiled_ops, write_manifest
from .pt2 import check_export_target, export_pt2

log = logging.getLogger(__name__)

__all__ = ["AOTI_FILES", "DDIM_TABLE_ETAS", "DDIM_TABLE_STEPS", "aoti_device", "build_aoti", "ddim_tables",
           "proxy_ops"]

#: graph -> package file (AOTI packages use the .pt2 suffix too; the manifest's ``runtime`` tells them apart)
FORMAT = formats.for_module(__name__)
#: the folders the packages are compiled from (``torch.export`` programs)
PROGRAMS = formats.by_format("pt2")
AOTI_FILES = FORMAT.files()


def aoti_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device AOTInductor can build for here; :class:`EngineError` otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EngineError(f"device {device!r} is not a torch device: {exc}") from None
    if dev.type not in ("cpu", "cuda"):
        raise EngineError(f"AOTInductor packages are built for cpu or cuda here, not {dev.type}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineError("device cuda asked for, but torch sees no CUDA device here (build on the GPU machine)")
    return dev


def proxy_ops(package: str | Path) -> list[str]:
    """The ``ldmvfi_fast`` ops an AOTI package calls through the proxy executor (its extern kernel nodes)."""
    import json
    import zipfile

    ops = set()
    with zipfile.ZipFile(package) as z:
        for name in z.namelist():
            if "/aotinductor/" in name and name.endswith(".json") and not name.endswith("_metadata.json"):
                try:
                    nodes = json.loads(z.read(name)).get("nodes", [])
                except (ValueError, AttributeError):
                    continue
                ops |= {n["node"]["target"].split("::", 1)[1].split(".")[0] for n in nodes
                        if str(n.get("node", {}).get("target", "")).startswith("ldmvfi_fast::")}
    return sorted(ops)


def _compile_program(program: str, package: str, device: str, move: bool) -> float:
    """Compile one saved ``torch.export`` program into an AOTI package (``move``: onto ``device``
    first); returns the seconds taken. Runs in the calling process or in a worker of
    :func:`build_aoti` (``jobs > 1``): importing ldmvfi_fast registers the custom ops it calls."""
    from ..ops import _native  # noqa: F401 - registers the ldmvfi_fast::* schemas before torch.export.load

    from ..engine_io import load_program

    ep = load_program(program)  # 2-2.5x faster than torch.export.load; a damaged file is one line
    if move:
        from torch.export.passes import move_to_device_pass

        ep = move_to_device_pass(ep, torch.device(device))
    t0 = time.perf_counter()
    torch._inductor.aoti_compile_and_package(ep, package_path=package)
    return time.perf_counter() - t0


def _compile_all(items: list[tuple[str, str, str]], device: torch.device, move: bool, jobs: int) -> dict[str, float]:
    """``{name: seconds}`` for ``[(name, program, package)]``, ``jobs`` at a time (worker
    processes when > 1, the largest program first: the U-Net step takes longest)."""
    parallel = jobs > 1 and len(items) > 1
    order = sorted(items, key=lambda j: -Path(j[1]).stat().st_size) if parallel else items
    times: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        if parallel:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            pool = stack.enter_context(ProcessPoolExecutor(max_workers=min(jobs, len(order)),
                                                           mp_context=mp.get_context("spawn")))
            futs = {name: pool.submit(_compile_program, prog, pkg, str(device), move) for name, prog, pkg in order}
            stack.callback(lambda: [f.cancel() for f in futs.values()])  # on a failure: drop the queued ones
        for name, prog, pkg in order:
            try:
                times[name] = futs[name].result() if parallel else _compile_program(prog, pkg, str(device), move)
            except Exception as exc:
                raise EngineError(f"AOTInductor could not compile {name}: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
            log.info("compiled %s in %.1f s (%.1f MB)", name, times[name], Path(pkg).stat().st_size / 1e6)
    return times


def build_aoti(model_or_engines: LDMVFI | str | Path, out_dir: str | Path, *, device: str | torch.device = "cpu",
               overwrite: bool = False, backend: str | None = None,
               ddim_steps=DDIM_TABLE_STEPS, jobs: int = 1) -> Path:
    """Compile encoder, U-Net step and decoder with AOTInductor into ``out_dir``.

    Args:
        model_or_engines: a loaded :class:`LDMVFI` (exported with :func:`~.pt2.export_pt2` first, on
            its own device and dtype, ``backend`` for its custom ops), or the path of a
            ``torch.export`` engine folder (``ldmvfi-fast export``) whose programs are compiled as they are.
        out_dir: a new or empty folder (with ``overwrite``, an existing one: only the engine files
            are replaced, nothing else in it is touched).
        device: ``cpu`` or ``cuda`` (``cuda:N``): what the packages are compiled for; programs
            exported on another device are moved with ``torch.export.passes.move_to_device_pass``.
        ddim_steps: step counts of the manifest's DDIM tables (:func:`ddim_tables`, read by the
            C++ application ``export/cpp``), for eta 0 and 1.
        jobs: sub-models compiled at once, each in a worker process (inductor's code generation is
            single-threaded Python; each worker holds one program and its compile in memory). Tiny
            config on 2 cores with ``jobs=2``: encoder 34 s, U-Net step 203 s and decoder 122 s side by
            side (one after another they took 65 s, 357 s and 209 s in an earlier run).

    Returns:
        the folder. Files are compiled into a temporary folder beside it and moved in only when
        all are complete: an error leaves the target as it was.
    """
    out = Path(out_dir)
    dev = aoti_device(device)
    if not isinstance(model_or_engines, LDMVFI):
        src = Path(model_or_engines)
        if src.resolve() == out.resolve():
            raise EngineError(f"the output folder {out} is the source engine folder; choose another --out")
        read_manifest(src)  # a clear error before anything is written
    check_export_target(out, overwrite)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise EngineError(f"jobs must be a positive integer, got {jobs!r}")
    # packages first, the manifest last: no manifest, no engine folder
    with staged_folder(out, names=[*AOTI_FILES.values(), MANIFEST_NAME], last=[MANIFEST_NAME]) as tmp:
        if isinstance(model_or_engines, LDMVFI):
            src = export_pt2(model_or_engines, tmp / "programs", backend=backend)
            source = {"kind": "model"}
        else:
            source = {"kind": "engines", "folder": str(src.resolve())}
        # every file present, the compiled ops registered before the programs load
        m, paths = open_engine_folder(src, PROGRAMS.runtime, PROGRAMS.kind)
        require_compiled_ops(m, src, "export again with backend='reference'")
        times = _compile_all([(name, str(path), str(tmp / AOTI_FILES[name])) for name, path in paths.items()],
                             dev, m.get("device", "cpu") != dev.type, jobs)
        times = {name: round(times[name], 1) for name in paths}
        called = set()
        for name in paths:
            called |= set(proxy_ops(tmp / AOTI_FILES[name]))
        if not called <= set(m.get("custom_ops", [])):  # the runtime loads the op library from this list
            raise EngineError(f"the compiled packages call ldmvfi_fast ops {sorted(called)} that the programs in {src} "
                              f"do not list ({m.get('custom_ops')}): export them again")
        manifest = dict(m)
        manifest.update({
            "runtime": FORMAT.runtime, "device": dev.type,
            "graphs": {k: dict(g, file=AOTI_FILES[k]) for k, g in m["graphs"].items()},
            "aoti": {"torch_version": torch.__version__, "compile_seconds": times, "source": source,
                     "proxy_executor_ops": sorted(called),
                     "build_machine": machine_info(dev)},
            "ddim": ddim_tables(m["alphas_cumprod"], ddim_steps),
        })
        write_manifest(tmp, manifest)
    log.info("wrote %s", out)
    return out
