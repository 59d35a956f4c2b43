"""Reading and writing ``torch.export`` programs (``.pt2`` files) of engine folders.

:func:`load_program` and :func:`save_program` wrap ``torch.export.load`` / ``torch.export.save``
for the three reasons below: the exported runtime (:mod:`ldmvfi_fast.runtime.exported`) loads its
programs with :func:`load_program`, the pt2 exporter (:mod:`ldmvfi_fast.export.pt2`) writes them with
:func:`save_program`.

* **A damaged file is one line.** ``torch.export.load`` logs a 12-line traceback (logger
  ``torch.export``) before it fails on a truncated archive. :func:`check_archive` tests the zip
  first (central directory present, the CRC-32 of every member: ~0.1 s per 100 MB) and the load
  runs with ``torch.export``'s log records held back (replayed when it succeeds); any failure is an
  :class:`~ldmvfi_fast.errors.EngineError` with a one-line message (the CLI: ``error: ...``, exit 2).
* **A full disk is an OSError.** ``torch.export.save(ep, path)`` writes through a C++ stream:
  on ENOSPC/EFBIG it raises ``iostream error`` and then aborts the process from a destructor
  (SIGABRT, exit -6). :func:`save_program` serialises into memory and writes the bytes from
  Python into a temporary file beside the target: a full disk raises ``OSError`` (errno kept,
  the path named), the temporary file is removed and the target is untouched.
* **Loading is 2-2.5x faster.** ``torch.export.load`` spends most of its time in pure-Python
  deserialisation: for every tensor of the graph (3,143 in the tiny U-Net step) it re-parses the
  symbolic sizes from strings with ``sympy.parse_expr`` (6,669 parses of 35 distinct strings, each
  parse running ``from sympy import *``), and for each of the ~200,000 JSON objects it calls
  ``typing.get_type_hints`` on the schema class. Both are deterministic, so :func:`load_program`
  memoizes them for the duration of one load (per deserializer, per schema class; see
  :func:`_memoized_deserializer`). The program is the same object graph a plain load builds:
  same graph, same symbols and range constraints, same outputs. Where a future torch renames
  these internals the memo is skipped and the plain load runs.
"""
from __future__ import annotations

import errno
import io
import logging
import threading
import types
import typing
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch

from ._atomic import replace_atomically
from .errors import EngineError

log = logging.getLogger(__name__)

__all__ = ["load_program", "save_program", "check_archive"]

#: the loggers ``torch.export.load`` warns on (the first, with a traceback, before it fails)
_TORCH_EXPORT_LOGGERS = ("torch.export", "torch.export.pt2_archive._package", "torch._export.serde.serialize")
#: bytes read at a time by :func:`check_archive`
_CHUNK = 1 << 22
# patched loads change class attributes of torch's deserializer for their duration: one at a time
_LOAD_LOCK = threading.RLock()
#: errnos of a full disk, a file-size limit or a quota
_DISK_FULL = {e for e in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", None)) if e is not None}


def _one_line(text: object) -> str:
    """The first non-empty line of ``text``, stripped (messages of torch errors run over lines)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _describe(exc: BaseException) -> str:
    msg = _one_line(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def check_archive(path: str | Path) -> None:
    """Raise :class:`EngineError` (one line) unless ``path`` is a complete zip archive: the central
    directory is present (a truncated file has none) and every member reads back with its CRC-32."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if not members:
                raise EngineError(f"cannot load {path}: an empty archive, not a torch.export program; export the "
                                  "engines again")
            for info in members:
                with zf.open(info) as f:  # the CRC is checked when the member has been read to its end
                    while f.read(_CHUNK):
                        pass
    except EngineError:
        raise
    except zipfile.BadZipFile as exc:
        if "CRC" in str(exc):
            raise EngineError(f"cannot load {path}: damaged ({_one_line(exc)}); export the engines again") from None
        raise EngineError(f"cannot load {path}: not a complete .pt2 archive ({_one_line(exc)}: truncated, or not "
                          "written by torch.export); export the engines again") from None
    except OSError as exc:
        raise EngineError(f"cannot load {path}: {exc.strerror or _one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - zipfile raises EOFError, struct.error, ... on damaged headers
        raise EngineError(f"cannot load {path}: a damaged .pt2 archive ({_describe(exc)}); export the engines "
                          "again") from None


class _HoldRecords(logging.Filter):
    """Keeps the records of a logger instead of letting them through (see :func:`_held_torch_export_log`)."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextmanager
def _held_torch_export_log():
    """Hold back what ``torch.export.load`` logs inside the block; yields the held records. The
    caller replays them (:func:`_replay`) when the load succeeded (a warning about an old format
    stays visible) and drops them when it failed (the error message carries the cause in one line)."""
    loggers = [logging.getLogger(name) for name in _TORCH_EXPORT_LOGGERS]
    hold = _HoldRecords()
    for logger in loggers:
        logger.addFilter(hold)
    try:
        yield hold.records
    finally:
        for logger in loggers:
            logger.removeFilter(hold)


def _replay(records: list[logging.LogRecord]) -> None:
    for r in records:
        logging.getLogger(r.name).handle(r)


class _TypingWithCachedHints(types.ModuleType):
    """``typing`` with ``get_type_hints(cls, globalns=ns)`` cached per class for one ``ns`` (the
    deserializer's schema module); every other name is ``typing``'s own (copied in: no
    ``__getattr__`` on the hot path, ``get_origin`` is called ~400,000 times per load)."""

    def __init__(self, ns: dict):
        super().__init__("typing")
        self.__dict__.update(vars(typing))
        self._ns = ns
        self._hints: dict = {}
        self.get_type_hints = self._get_type_hints

    def __getattr__(self, name):  # a name typing gains lazily
        return getattr(typing, name)

    def _get_type_hints(self, obj, globalns=None, localns=None, include_extras=False):
        if globalns is not self._ns or localns is not None or include_extras:
            return typing.get_type_hints(obj, globalns, localns, include_extras)
        try:
            hints = self._hints[obj]
        except (KeyError, TypeError):
            hints = typing.get_type_hints(obj, globalns)
            try:
                self._hints[obj] = hints
            except TypeError:  # an unhashable annotation object: not cached
                pass
        return dict(hints)


@contextmanager
def _memoized_deserializer():
    """Memoize the two deterministic hot spots of ``torch.export.load`` for the block (see the
    module docstring); yields whether the memo is on (False: torch's internals are not the ones
    this was written for, and the plain load runs).

    * ``GraphModuleDeserializer._parse_sym_expr(expr_str, hint)``: per deserializer, keyed by the
      string and the hint. A second call with the same key re-parses the string into the symbols
      the first call registered and returns the same cached symbol (its other effects, hints and
      ranges, were applied by the first call and are idempotent), so the memo returns what the
      call would.
    * ``typing.get_type_hints(cls, globalns=vars(schema))`` in ``_dict_to_dataclass``: per class.
    """
    try:
        from torch._export.serde import serialize as serde

        cls = serde.GraphModuleDeserializer
        parse = cls.__dict__["_parse_sym_expr"]
        schema_ns = vars(serde.schema)
        ok = serde.typing is typing and callable(parse)
    except (ImportError, AttributeError, KeyError):
        ok = False
    if not ok:
        yield False
        return

    def memo_parse(self, expr_str, hint=None):
        if not isinstance(expr_str, str):  # the recursion over sub-expressions: sympy objects
            return parse(self, expr_str, hint)
        key = (expr_str, type(hint), hint)
        cache = self.__dict__.setdefault("_ldmvfi_sym_memo", {})
        try:
            return cache[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable hint
            return parse(self, expr_str, hint)
        out = cache[key] = parse(self, expr_str, hint)
        return out

    with _LOAD_LOCK:
        cls._parse_sym_expr = memo_parse
        serde.typing = _TypingWithCachedHints(schema_ns)
        try:
            yield True
        finally:
            cls._parse_sym_expr = parse
            serde.typing = typing


def load_program(path: str | Path, *, check: bool = True):
    """``torch.export.load(path)``, with a one-line :class:`EngineError` for any unusable file
    and nothing logged on the way (see the module docstring); ``check=False`` skips the archive
    test (:func:`check_archive`) for files just verified.

    Returns:
        the :class:`torch.export.ExportedProgram`.
    """
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"engine file missing: {path}")
    if check:
        check_archive(path)
    with _held_torch_export_log() as held, _memoized_deserializer():
        try:
            ep = torch.export.load(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
            cause = next((r.exc_info[1] for r in held if r.exc_info and r.exc_info[1] is not None), None)
            why = _describe(cause) if cause is not None else _describe(exc)
            raise EngineError(f"cannot load {path}: {why}; export the engines again") from None
    _replay(held)
    return ep


def save_program(ep, path: str | Path) -> Path:
    """Write the :class:`torch.export.ExportedProgram` ``ep`` to ``path`` as ``torch.export.save`` does.

    The archive is built in memory and written from Python into a temporary file beside
    ``path``, which replaces ``path`` only when complete: a full disk (ENOSPC) or a file-size
    limit (EFBIG) raises ``OSError`` naming ``path`` (never the abort of torch's C++ writer), and
    leaves no partial file behind. Holds the archive in memory once (about the weights' size).
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    view = buf.getbuffer()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(view)

    try:
        replace_atomically(path, write)
    except OSError as exc:
        if exc.errno in _DISK_FULL and exc.filename is None:
            raise OSError(exc.errno, f"{exc.strerror} (writing {len(view) / 1e6:.1f} MB)", str(path)) from None
        raise
    finally:
        view.release()
    return path
