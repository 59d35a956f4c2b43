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
