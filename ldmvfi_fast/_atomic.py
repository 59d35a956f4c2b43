"""Atomic writes: a temporary file (or folder) beside the target, synced, renamed onto it on
success only.

A failed or interrupted write leaves the target as it was (absent, or the old file) and removes
its own temporary file; the new file gets the mode a plain ``open`` would give it (0666 less the
umask; ``mkstemp`` creates 0600). Data is synced to disk before the rename and the folder after
it, as databases do: a power cut cannot leave an empty or partial file under the final name.

:func:`staged_folder` is the one writer of folders of several files (engine folders, frame
folders): files are written into a temporary folder beside the target and moved in only when all
are complete, the ones named ``last`` (a manifest) after the others.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["replace_atomically", "umask", "write_bytes_atomic", "write_text_atomic", "fsync_file", "fsync_dir",
           "staged_folder"]


def umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be synced."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder (EINVAL): nothing more to do there
        pass
    finally:
        os.close(fd)


def replace_atomically(path: str | Path, write: Callable[[Path], object], *, suffix: str = ".partial") -> Path:
    """``write(tmp)`` fills a temporary file in ``path``'s folder, which is synced and then replaces ``path``."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return replace_atomically(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return replace_atomically(path, lambda tmp: tmp.write_text(text))


@contextmanager
def staged_folder(out: str | Path, *, names: Iterable[str] | None = None, last: Iterable[str] = (),
                  check: Callable[[list[str]], None] | None = None):
    """Yield a new temporary folder beside ``out``; when the block ends without an error, move the
    files written there into ``out`` (created with the usual mode when missing; nothing else in it is
    touched), each synced first, the ones in ``last`` after all others, then sync ``out``.

    ``names``: the files to move (default: every file the block wrote, sorted); ``check(written)``
    is called before anything moves and may raise to refuse. On an error (or an interrupt) the
    temporary folder is removed and ``out`` is as it was. Only this folder is ever deleted.
    """
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~umask())
        yield tmp
        moving = sorted(p.name for p in tmp.iterdir() if p.is_file()) if names is None else list(names)
        late = [n for n in last if n in moving]
        moving = [n for n in moving if n not in late] + late
        if check is not None:
            check(moving)
        for n in moving:
            os.chmod(tmp / n, 0o666 & ~umask())
            fsync_file(tmp / n)
        out.mkdir(mode=0o777, exist_ok=True)
        for n in moving:
            os.replace(tmp / n, out / n)
        fsync_dir(out)
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # our own temporary folder only
