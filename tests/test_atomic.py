"""ldmvfi_fast._atomic: the one atomic-write helper behind manifests, run files, student
checkpoints, TensorRT engines and the quality benchmark's outputs."""
from __future__ import annotations

import os

import pytest

from ldmvfi_fast._atomic import replace_atomically, umask, write_bytes_atomic, write_text_atomic


def test_writes_and_replaces_with_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        assert umask() == 0o027
        p = write_text_atomic(tmp_path / "a.json", "one")
        assert p.read_text() == "one" and (p.stat().st_mode & 0o777) == 0o640
        write_bytes_atomic(p, b"two")
        assert p.read_bytes() == b"two"
    finally:
        os.umask(old)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "state.pt"
    p.write_text("old")
    seen = []

    def fail(tmp):
        tmp.write_text("half")
        seen.append(tmp)
        raise KeyboardInterrupt  # an interrupted write, not only an error

    with pytest.raises(KeyboardInterrupt):
        replace_atomically(p, fail)
    assert p.read_text() == "old"
    assert seen and seen[0].parent == tmp_path and not seen[0].exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["state.pt"]


def test_writes_are_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """A power cut after the rename must not leave an empty file under the final name: the data is
    fsync'ed before ``os.replace`` and the folder after it."""
    import os

    from ldmvfi_fast import _atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else None))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", None))
        return real_replace(a, b)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    monkeypatch.setattr(_atomic.os, "replace", replace)
    write_text_atomic(tmp_path / "a.json", "one")
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    if events[0][1] is not None:
        assert events[0][1] is False and events[2][1] is True  # the file first, then its folder
    events.clear()
    with _atomic.staged_folder(tmp_path / "out", last=["manifest.json"]) as d:
        (d / "manifest.json").write_text("{}")
        (d / "graph.bin").write_bytes(b"x")
    kinds = [e[0] for e in events]
    assert kinds[:2] == ["fsync", "fsync"] and kinds[2:4] == ["replace", "replace"] and kinds[4:] == ["fsync", "fsync"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["graph.bin", "manifest.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the staging folder is gone
