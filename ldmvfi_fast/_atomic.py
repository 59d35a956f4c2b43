"""Atomic file writes: a temporary file beside the target, renamed onto it on success only.

A failed or interrupted write leaves the target as it was (absent, or the old file) and removes
its own temporary file; the new file gets the mode a plain ``open`` would give it (0666 less the
umask; ``mkstemp`` creates 0600)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["replace_atomically", "umask", "write_bytes_atomic", "write_text_atomic"]


def umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_atomically(path: str | Path, write: Callable[[Path], object], *, suffix: str = ".partial") -> Path:
    """``write(tmp)`` fills a temporary file in ``path``'s folder, which then replaces ``path``."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return replace_atomically(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return replace_atomically(path, lambda tmp: tmp.write_text(text))
