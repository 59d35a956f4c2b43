"""sha256 of files, streamed: the one helper for engine files, plugin libraries, checkpoints and job inputs."""
from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_digest", "update_with_file"]


def update_with_file(h, path: str | Path) -> None:
    """Feed a file's bytes into the hash object ``h``, 1 MiB at a time."""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    h = hashlib.sha256()
    update_with_file(h, path)
    return "sha256:" + h.hexdigest()
