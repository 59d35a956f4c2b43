"""``benchmarks/throughput.py``: configurations, JSON fields, the frames agreeing between configurations.

Timings are never asserted (speed is measured by running the benchmark, not by tests). Default
suite: the configuration parsing and its errors, and a whole run of the local configurations
(one process, segmented local at 1 thread twice over: ``--threads 1``) on a downscaled clip with
random tiny weights, its JSON checked field by field. ``slow``: the Ray configurations (Ray start-up,
actors loading the model) with the tests' tiny checkpoint: one and two actors give the local
executor's frames bitwise; more actors than the cluster holds refused.
"""
from __future__ import annotations

import json

import pytest

#: the smallest job: 3 input frames (2 segments of 2), 96 px wide, one DDIM step
SMALL = ["--frames", "3", "--segment-frames", "2", "--steps", "1", "--width", "96", "--repeats", "1", "--quiet"]


@pytest.fixture(scope="module")
def throughput(benchmarks):
    """``benchmarks/throughput.py`` as a module."""
    return benchmarks("throughput")


def _run(throughput, tmp_path, *extra) -> tuple[int, dict | None]:
    out = tmp_path / "r.json"
    rc = throughput.main([*SMALL, "--out", str(out), *extra])
    return rc, (json.loads(out.read_text()) if out.is_file() else None)


def test_configs_and_their_errors(throughput, capsys):
    cs = throughput.parse_configs("single,local-1t,ray2")
    assert [(c["name"], c["kind"], c["executor"], c["threads"], c["actors"]) for c in cs] == [
        ("single", "single", None, "main", None), ("local-1t", "segmented", "local", 1, None),
        ("ray2", "segmented", "ray", None, 2)]
    for bad, words in [("single,gpu", "unknown configuration 'gpu'"), ("local,local", "listed twice"),
                       ("ray0", "unknown configuration"), (",", "no configuration")]:
        with pytest.raises(ValueError, match=words):
            throughput.parse_configs(bad)
    with pytest.raises(SystemExit) as e:
        throughput.main(["--configs", "single,gpu"])
    assert e.value.code == 2 and "unknown configuration 'gpu'" in capsys.readouterr().err


def _check_common(report: dict, names: list[str], n_in: int = 3) -> None:
    m = report["meta"]
    for key in ("date", "commit", "git", "command", "torch", "machine", "device", "device_type", "threads",
                "load_average_1_5_15min", "actors_option", "definitions"):
        assert key in m, key
    assert m["command"].startswith("benchmarks/throughput.py --frames")
    assert (m["input_frames"], m["output_frames"], m["new_frames"]) == (n_in, 2 * n_in - 1, n_in - 1)
    assert m["size"] == [96, 78] and m["downscaled"] and m["config"] == "tiny" and m["steps"] == 1
    assert m["segments"] == n_in - 1 and m["segment_frames"] == 2
    assert list(report["results"]) == names
    for name, r in report["results"].items():
        assert r["repeats"] == 1 and len(r["runs"]) == 1
        run = r["runs"][0]
        assert run["frames"] == m["output_frames"] and len(run["loads"]) >= 1
        for key in ("total_s", "startup_s", "steady_s", "fps", "new_fps", "steady_fps", "steady_new_fps"):
            assert r[key] > 0, (name, key)
        assert r["fps"] == pytest.approx(m["output_frames"] / r["total_s"])
        assert r["new_fps"] == pytest.approx(m["new_frames"] / r["total_s"])
        # the phases add up to the total
        assert r["plan_s"] + r["startup_s"] + r["steady_s"] == pytest.approx(r["total_s"], rel=1e-6)
        if name != "single":
            assert run["segments"] == m["segments"] and len(run["segment_done_s"]) == m["segments"]
            assert r["assemble_s"] >= 0 and run["segments_s"] + r["assemble_s"] == pytest.approx(r["steady_s"])


def test_local_configs_json_and_frames(throughput, tmp_path):
    """single, local and local-1t at one thread: the JSON's fields; the two segmented runs give the
    same frames (bitwise, PNGs and output video); single's video has as many frames."""
    rc, report = _run(throughput, tmp_path, "--configs", "single,local,local-1t", "--threads", "1")
    assert rc == 0
    _check_common(report, ["single", "local", "local-1t"])
    assert report["meta"]["threads"]["single/local"] == 1 and report["meta"]["weights"] == "random"
    assert report["results"]["local"]["threads"] == report["results"]["single"]["threads"] == 1
    assert report["ray_init_s"] is None
    f = report["frames"]
    assert f["reference"] == "local-1t"
    assert f["identical_segment_frames"] == [["local", "local-1t"]]
    assert f["segment_frames_max_abs_diff_vs_reference"] == {"local": 0, "local-1t": 0}
    assert f["output_video_sha256"]["local"] == f["output_video_sha256"]["local-1t"]
    assert f["output_video_max_abs_diff_vs_reference"]["single"] is not None  # same frame count and size
    c = report["comparisons"]["local_vs_single"]
    res = report["results"]
    assert c["total_ratio"] == pytest.approx(res["local"]["total_s"] / res["single"]["total_s"])


@pytest.mark.slow  # Ray start-up and three actors loading the model: ~1 min on 2 busy cores
def test_ray_configs_give_the_local_frames(throughput, tiny_ckpt, tmp_path):
    """local-1t, ray1 and ray2 (4 segments): the same frames bitwise; the actors measured (1 and 2
    processes, 1 torch thread each); Ray's start-up recorded apart from the jobs."""
    pytest.importorskip("ray")
    rc, report = _run(throughput, tmp_path, "--configs", "local-1t,ray1,ray2", "--frames", "5",
                      "--checkpoint", str(tiny_ckpt))
    assert rc == 0
    _check_common(report, ["local-1t", "ray1", "ray2"], n_in=5)
    assert report["meta"]["weights"] == "checkpoint"
    assert report["ray_init_s"] > 0
    res = report["results"]
    assert (res["ray1"]["actors"], res["ray2"]["actors"]) == (1, 2)
    assert res["ray1"]["threads"] == res["ray2"]["threads"] == [1]
    assert report["meta"]["threads"]["ray actors (measured)"] == [1]
    f = report["frames"]
    assert f["identical_segment_frames"] == [["local-1t", "ray1", "ray2"]]
    assert set(f["output_video_max_abs_diff_vs_reference"].values()) == {0}
    assert "ray2_vs_ray1" in report["comparisons"] and "ray1_vs_local-1t" in report["comparisons"]
