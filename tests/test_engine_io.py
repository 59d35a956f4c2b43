"""``ldmvfi_fast.engine_io``: loading and saving ``.pt2`` programs.

* a damaged ``.pt2`` (truncated, a flipped byte, a zip that is no program) is one
  :class:`EngineError` line and nothing logged; through the CLI: one ``error:`` line, exit 2;
* the memoized load builds the same program as ``torch.export.load`` (graph, symbolic sizes,
  range constraints, outputs) and leaves torch's deserializer as it found it;
* ``save_program`` on a full disk (RLIMIT_FSIZE in a subprocess: writes past the limit fail with
  EFBIG, as ENOSPC does on a full disk) raises OSError and leaves nothing behind, where
  ``torch.export.save(ep, path)`` aborts the process; ``ldmvfi-fast export`` then exits 2 with
  one line and no partial folder.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ldmvfi_fast.engine_io import check_archive, load_program, save_program
from ldmvfi_fast.errors import EngineError

REPO = Path(__file__).resolve().parents[1]


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x):
        y = self.conv(x) * self.scale
        return y, y.mean(dim=(2, 3))


@pytest.fixture(scope="module")
def toy_ep():
    """A small program with dynamic batch, height and width (symbolic sizes in every tensor)."""
    from torch.export import Dim

    torch.manual_seed(0)
    return torch.export.export(_Toy().eval(), (torch.randn(2, 3, 32, 48),),
                               dynamic_shapes=({0: Dim("batch", min=1, max=8), 2: Dim.DYNAMIC, 3: Dim.DYNAMIC},))


@pytest.fixture
def toy_pt2(toy_ep, tmp_path) -> Path:
    return save_program(toy_ep, tmp_path / "toy.pt2")


def _signature(ep) -> tuple:
    g = ep.graph
    return (str(g), [str(n.meta.get("val")) for n in g.nodes], str(ep.range_constraints),
            str(ep.graph_signature), sorted(ep.state_dict))


def _member_data_offset(path: Path, name: str) -> int:
    """Byte offset of a stored member's data in the archive."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        n_name, n_extra = np.frombuffer(f.read(4), dtype="<u2")
    return info.header_offset + 30 + int(n_name) + int(n_extra)


def _flip_byte(path: Path, member_suffix: str) -> None:
    with zipfile.ZipFile(path) as zf:
        name = next(i.filename for i in zf.infolist() if i.filename.endswith(member_suffix))
    off = _member_data_offset(path, name) + 1
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0xFF]))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---------------------------------------------------------------------------------------------
# save / load round trip, and the memoized load against torch.export.load


def test_save_load_roundtrip(toy_ep, toy_pt2, tmp_path):
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.pt2"]  # no temporary file left
    assert toy_pt2.stat().st_mode & 0o777 == 0o666 & ~_umask()
    ep = load_program(toy_pt2)
    x = torch.randn(3, 3, 40, 24)
    with torch.no_grad():
        for a, b in zip(ep.module()(x), toy_ep.module()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the bytes are what torch.export.save writes to a path: both load the same program
    plain = tmp_path / "plain.pt2"
    torch.export.save(toy_ep, str(plain))
    assert _signature(torch.export.load(str(plain))) == _signature(ep)


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_memoized_load_is_torch_export_load(toy_pt2):
    """Same graph, node metadata (symbolic sizes), range constraints and outputs as a plain
    ``torch.export.load``; the memo is on with this torch and torch's internals are restored."""
    import typing

    from torch._export.serde import serialize as serde

    from ldmvfi_fast import engine_io

    parse = serde.GraphModuleDeserializer.__dict__["_parse_sym_expr"]
    with engine_io._memoized_deserializer() as on:
        assert on, "torch's deserializer changed: load_program runs unmemoized (2-2.5x slower)"
    assert serde.GraphModuleDeserializer.__dict__["_parse_sym_expr"] is parse and serde.typing is typing

    plain, fast = torch.export.load(str(toy_pt2)), load_program(toy_pt2)
    assert _signature(plain) == _signature(fast)
    assert serde.GraphModuleDeserializer.__dict__["_parse_sym_expr"] is parse and serde.typing is typing
    x = torch.randn(1, 3, 17, 65)
    with torch.no_grad():
        for a, b in zip(plain.module()(x), fast.module()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(Exception):  # noqa: B017 - both refuse a batch outside the range constraint
        fast.module()(torch.randn(9, 3, 16, 16))


def test_warnings_of_a_successful_load_are_kept(toy_pt2, tmp_path):
    """torch's log records are held only to drop them when the load fails: a load that works
    still shows them (here: the warning about a file name without .pt2)."""
    odd = tmp_path / "toy.bin"
    shutil.copy(toy_pt2, odd)
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("torch.export.pt2_archive._package")
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        load_program(odd)
    finally:
        logger.removeHandler(handler)
    assert any("Unable to load package" in r for r in records), records


# ---------------------------------------------------------------------------------------------
# damaged files: one line, nothing logged


def _damage(kind: str, path: Path) -> None:
    if kind == "truncated":
        _truncate(path)
    elif kind == "flipped byte":
        _flip_byte(path, "model.json")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not a program":
        path.unlink()
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("hello.txt", "hi")
    else:
        raise AssertionError(kind)


@pytest.fixture
def torch_log():
    """Every record of WARNING or above that reaches a handler of a ``torch*`` logger (torch's
    loggers have their own stderr handlers, bound to the stderr of import time: capfd misses them)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(logging.WARNING)
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "torch"]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield records
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


@pytest.mark.parametrize("kind", ["truncated", "flipped byte", "empty", "not a program"])
def test_damaged_pt2_is_one_line(toy_pt2, kind, capfd, torch_log):
    _damage(kind, toy_pt2)
    with pytest.raises(EngineError) as ei:
        load_program(toy_pt2)
    msg = str(ei.value)
    assert "\n" not in msg and str(toy_pt2) in msg, msg
    assert "export the engines again" in msg
    out, err = capfd.readouterr()
    assert out == "" and err == "", f"printed while failing:\n{err}"
    assert not torch_log, f"logged while failing: {[r.getMessage() for r in torch_log]}"


def test_check_archive(toy_pt2):
    check_archive(toy_pt2)  # a whole archive passes
    _flip_byte(toy_pt2, "weight_0")  # a weight: torch itself would load it silently
    with pytest.raises(EngineError, match="damaged.*CRC"):
        check_archive(toy_pt2)


def test_missing_pt2(tmp_path):
    with pytest.raises(EngineError, match="engine file missing"):
        load_program(tmp_path / "absent.pt2")


@pytest.fixture(scope="module")
def two_pngs(tmp_path_factory) -> tuple[Path, Path]:
    from PIL import Image

    d = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    a = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    Image.fromarray(a).save(d / "a.png")
    Image.fromarray(np.roll(a, 4, axis=1)).save(d / "b.png")
    return d / "a.png", d / "b.png"


@pytest.mark.parametrize("graph,kind", [("encoder", "truncated"), ("decoder", "truncated"),
                                        ("unet_step", "flipped byte")])
def test_cli_damaged_engine_is_one_error_line(tiny_engines, two_pngs, tmp_path, graph, kind):
    """``ldmvfi-fast interpolate --runtime exported`` with a damaged .pt2 (run as the user runs
    it, in its own process: torch's log handlers write to the real stderr): exactly one
    ``error:`` line on stderr (no torch traceback), exit 2, no output; found before any program
    loads (all archives are checked first), so a damaged decoder costs no loading either."""
    eng = tmp_path / "engines"
    eng.mkdir()
    for f in tiny_engines.iterdir():  # the session's folder stays whole: link what is not damaged
        if f.name == f"{graph}.pt2":
            shutil.copy(f, eng / f.name)
        else:
            (eng / f.name).symlink_to(f)
    _damage(kind, eng / f"{graph}.pt2")
    out = tmp_path / "mid.png"
    code = "import sys; from ldmvfi_fast.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, "interpolate", str(two_pngs[0]), str(two_pngs[1]), "-o",
                        str(out), "--runtime", "exported", "--engines", str(eng), "--steps", "1", "--seed", "0"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{graph}.pt2" in lines[0], r.stderr[-3000:]
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# a full disk: OSError and nothing left behind, never an abort

_FSIZE_PRELUDE = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
"""


def _run_limited(code: str, limit: int, timeout: int = 600) -> subprocess.CompletedProcess:
    script = textwrap.dedent(_FSIZE_PRELUDE.format(limit=limit)) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_save_program_disk_full(toy_pt2, tmp_path):
    """The file-size limit is below the archive's size: OSError EFBIG naming the file, the
    folder as it was (no partial file, no temporary file)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    r = _run_limited(f"""
        import errno, torch
        from ldmvfi_fast.engine_io import save_program
        ep = torch.export.load({str(toy_pt2)!r})
        try:
            save_program(ep, {str(out / "toy.pt2")!r})
        except OSError as exc:
            print("OSError", errno.errorcode[exc.errno], exc.filename)
            sys.exit(3)
        """, limit=toy_pt2.stat().st_size // 2, timeout=300)
    assert r.returncode == 3, r.stderr[-3000:]
    assert r.stdout.split() == ["OSError", "EFBIG", str(out / "toy.pt2")]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# the real command line; exporting with torch.export.save(ep, path) instead of save_program aborts
# there (C++ "iostream error", rc -6: the test fails)
_EXPORT_CODE = """
from ldmvfi_fast.cli import main

sys.exit(main(["export", "--ckpt", {ckpt!r}, "--out", {out!r}]))
"""


def test_cli_export_disk_full(tiny_ckpt, tmp_path):
    """``ldmvfi-fast export`` onto a full disk: exit 2, one ``error:`` line naming the file and the
    errno's text, and the output's folder as it was (no engine folder, no partial folder)."""
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "keep.txt").write_text("x")
    out = parent / "engines"
    r = _run_limited(_EXPORT_CODE.format(ckpt=str(tiny_ckpt), out=str(out)), limit=1 << 20)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, f"rc {r.returncode}:\n{r.stderr[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]  # no traceback, no abort
    assert "File too large" in lines[0] and "encoder.pt2" in lines[0], lines[0]
    assert sorted(p.name for p in parent.iterdir()) == ["keep.txt"]
