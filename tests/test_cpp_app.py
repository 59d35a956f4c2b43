"""The C++ application ``export/cpp`` (``ldmvfi_interpolate``) on the tiny model's AOTInductor packages.

The app is built with CMake in a temporary folder (libtorch of the installed torch, libpng, the op
library from csrc/); the packages are the session's torch.export programs (``tiny_engines``)
compiled by ``export/build_aoti.py`` (the session's ``tiny_aoti``, shared with test_aoti). Parity: the app's raw float32 frame equals
the PyTorch pipeline's (eager model) within 1e-4 for the same x_T (``--noise``) and per-step noise
(``--seed``: the CPU generator's stream), and the Python pipeline on the same packages within 1e-6 (measured: bitwise equal);
its PNG equals the pipeline's 8-bit frame within 1 level. Bad input: a message and exit status 2.

Without packages (default suite): the "probe app" is the app's own objects (main.cpp, image_io.cpp,
the library's interpolator.cpp) linked with a stand-in engine of three tensor formulas instead of the
AOTInductor backend; ``--seed`` must reproduce the Python pipeline's frame bitwise on the same
formulas (x_T and per-step noise from torch's CPU generator), and so be repeatable and seed-dependent.

A missing cmake, C++ compiler or libpng skips on a developer machine and fails under ``CI=true``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _requirements import missing_tool
from ldmvfi_fast.export.aoti import AOTI_FILES, ddim_tables
from ldmvfi_fast.sampling import ddim_schedule

REPO = Path(__file__).resolve().parents[1]
HW = (300, 450)  # reference padding -> 512 x 512: non-square, padded on both sides
STEPS = 2


def _png(path: Path, img: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 as PNG with PyAV (no extra dependency)."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "rgb24"
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def _read_png(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    """ldmvfi_interpolate built with CMake (Release, -j2)."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            missing_tool(f"{tool} not found: the C++ application cannot be built")
    if not Path("/usr/include/png.h").is_file() and shutil.which("libpng-config") is None:
        missing_tool("libpng (libpng-dev) not found: the C++ application cannot be built")
    build = tmp_path_factory.mktemp("cpp") / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    t0 = time.perf_counter()
    cfg = subprocess.run(["cmake", "-S", str(REPO / "export" / "cpp"), "-B", str(build), *gen,
                          "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                          "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"],  # the flags the probe app compiles with
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    if cfg.returncode != 0 and "PNG" in cfg.stdout and "Could NOT find" in cfg.stdout:
        missing_tool(f"CMake found no libpng: {cfg.stdout[-500:]}")
    assert cfg.returncode == 0, cfg.stdout[-6000:]
    b = subprocess.run(["cmake", "--build", str(build), "-j", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=1200)
    assert b.returncode == 0, b.stdout[-6000:]
    print(f"\nC++ app built in {time.perf_counter() - t0:.0f} s")
    exe = build / "ldmvfi_interpolate"
    assert exe.is_file()
    return exe


@pytest.fixture(scope="module")
def aoti_dir(tiny_aoti) -> Path:
    """The session's torch.export programs compiled with AOTInductor (CPU; shared with test_aoti)."""
    return tiny_aoti


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Two random 300x450 PNG frames (smooth enough to look like images) and their tensors."""
    d = tmp_path_factory.mktemp("frames")
    g = np.random.default_rng(11)
    base = g.integers(0, 256, (HW[0] // 6 + 1, HW[1] // 6 + 1, 3)).astype(np.uint8)
    img0 = np.repeat(np.repeat(base, 6, 0), 6, 1)[: HW[0], : HW[1]]
    img1 = np.roll(img0, 4, axis=1)
    img1 = np.clip(img1.astype(int) + g.integers(-20, 21, img1.shape), 0, 255).astype(np.uint8)
    from ldmvfi_fast.video import to_tensor

    return _png(d / "f0.png", img0), _png(d / "f1.png", img1), to_tensor(img0), to_tensor(img1)


def _run(app: Path, *args, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("LDMVFI_FAST_OPS_LIBRARY", None)
    p = subprocess.run([str(app), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=600, env=env)
    if check_rc is not None:
        assert p.returncode == check_rc, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


@pytest.fixture(scope="module")
def reference(tiny_model, aoti_dir, frames):
    """The Python pipeline's frames (eager model and AOTI packages) for x_T from seed 21 and the
    per-step noise from a generator seeded 5."""
    from ldmvfi_fast.pipeline import Interpolator
    from ldmvfi_fast.runtime.aoti import AotiBackbone

    _, _, f0, f1 = frames
    eager = Interpolator(tiny_model, steps=STEPS)
    x_T = torch.randn(1, 3, 512 // 32, 512 // 32, generator=torch.Generator().manual_seed(21))
    out = {"x_T": x_T}
    out["eager"] = eager.interpolate(f0, f1, x_T=x_T, generator=torch.Generator().manual_seed(5))
    out["eager_seed"] = eager.interpolate(f0, f1, seed=9)
    aoti = Interpolator(AotiBackbone.from_dir(aoti_dir), steps=STEPS)
    out["aoti"] = aoti.interpolate(f0, f1, x_T=x_T, generator=torch.Generator().manual_seed(5))
    return out


def _from_tensor(x: torch.Tensor) -> np.ndarray:
    from ldmvfi_fast.video import to_image

    return to_image(x)


# The AOTI build of the tiny model takes ~6 min on 2 cores (inductor's code generation is
# single-threaded Python; two sub-models at a time), too long for the default suite: the parity
# tests run in CI's acceptance stage (`pytest -m slow`), on the session's build shared with test_aoti.
@pytest.mark.slow
def test_app_equals_the_pytorch_pipeline_for_the_same_noise(app, aoti_dir, frames, reference, tmp_path):
    p0, p1, _, _ = frames
    np.save(tmp_path / "x_T.npy", reference["x_T"].numpy())
    out, raw = tmp_path / "mid.png", tmp_path / "mid.npy"
    _run(app, p0, p1, "-o", out, "--engines", aoti_dir, "--steps", STEPS, "--seed", 5, "--noise",
         tmp_path / "x_T.npy", "--raw-out", raw)
    got = torch.from_numpy(np.load(raw))
    assert got.shape == (1, 3, *HW)
    ref = reference["eager"]
    print(f"\nmax |C++ - eager| {(got - ref).abs().max():.2e}, |C++ - Python AOTI| "
          f"{(got - reference['aoti']).abs().max():.2e}")
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    # the same packages through Python: the same ATen ops in the same order (measured: bitwise equal)
    torch.testing.assert_close(got, reference["aoti"], rtol=0, atol=1e-6)
    assert (got - frames[2]).abs().mean() > 0.01  # a real interpolation, not a pass-through
    png = _read_png(out)
    assert png.shape == (*HW, 3)
    assert np.abs(png.astype(int) - _from_tensor(ref[0]).astype(int)).max() <= 1
    # the same x_T as a raw little-endian float32 file gives the same frame
    reference["x_T"].numpy().astype("<f4").tofile(tmp_path / "x_T.bin")
    _run(app, p0, p1, "-o", tmp_path / "mid2.png", "--engines", aoti_dir, "--steps", STEPS, "--seed", 5,
         "--noise", tmp_path / "x_T.bin", "--raw-out", tmp_path / "mid2.bin", "--quiet")
    raw2 = np.fromfile(tmp_path / "mid2.bin", dtype="<f4").reshape(1, 3, *HW)
    assert np.array_equal(raw2, got.numpy())


# The AOTI build of the tiny model takes ~6 min on 2 cores (inductor's code generation is
# single-threaded Python; two sub-models at a time), too long for the default suite: the parity
# tests run in CI's acceptance stage (`pytest -m slow`), on the session's build shared with test_aoti.
@pytest.mark.slow
def test_app_seed_is_the_pytorch_cpu_generator_stream(app, aoti_dir, frames, reference, tmp_path):
    """``--seed S`` alone reproduces ``Interpolator.interpolate(seed=S)`` (x_T and per-step noise)."""
    p0, p1, _, _ = frames
    _run(app, p0, p1, "-o", tmp_path / "m.png", "--engines", aoti_dir, "--steps", STEPS, "--seed", 9,
         "--raw-out", tmp_path / "m.npy", "--quiet")
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "m.npy")), reference["eager_seed"],
                               rtol=1e-4, atol=1e-4)


# --- manifest tables -------------------------------------------------------------------------

def test_ddim_tables_are_the_pipeline_coefficients():
    from ldmvfi_fast.sampling import DiffusionSchedule, make_beta_schedule

    # the original's training schedule (linear betas 0.0015..0.0195 over 1000 steps)
    ac = DiffusionSchedule.from_betas(make_beta_schedule("linear", 1000, 0.0015, 0.0195)).buffers["alphas_cumprod"]
    tab = ddim_tables(ac.tolist(), steps=(2, 7, 200))
    assert set(tab["schedules"]) == {"2", "200"}  # 7 steps: the original's rule gives 8, no table
    assert tab["etas"] == [0.0, 1.0] and tab["num_train_steps"] == 1000
    for S in (2, 200):
        t = tab["schedules"][str(S)]
        for k, eta in enumerate(tab["etas"]):
            d = ddim_schedule(ac, S, eta)
            assert t["timesteps"] == d.timesteps.tolist()
            for name in ("sqrt_alphas", "sqrt_one_minus_alphas", "sqrt_alphas_prev"):
                assert torch.equal(torch.tensor(t[name], dtype=torch.float32), getattr(d, name)), name
            for name in ("dir_coef", "sigmas"):
                assert torch.equal(torch.tensor(t[name][k], dtype=torch.float32), getattr(d, name)), name
    # JSON round trip keeps the float32 values exactly
    back = json.loads(json.dumps(tab))["schedules"]["200"]["sigmas"][1]
    assert torch.equal(torch.tensor(back, dtype=torch.float32), ddim_schedule(ac, 200, 1.0).sigmas)


# --- bad input: exit 2 and a message (no compiled packages needed; ``fake_aoti``: conftest) ----

def _fails(app, *args, match: str) -> str:
    p = _run(app, *args, check_rc=2)
    assert match in p.stderr, p.stderr
    assert p.stderr.startswith("error: "), p.stderr
    return p.stderr


def test_missing_engine_file_and_newer_manifest_are_refused(app, frames, fake_aoti, tmp_path):
    p0, p1, _, _ = frames
    out = tmp_path / "o.png"
    (fake_aoti / "decoder.pt2").unlink()
    _fails(app, p0, p1, "-o", out, "--engines", fake_aoti, match="engine file missing")
    _fails(app, p0, p1, "-o", out, "--engines", tmp_path / "nowhere", match="engine folder not found")
    m = json.loads((fake_aoti / "manifest.json").read_text())
    m["format_version"] = 3
    (fake_aoti / "manifest.json").write_text(json.dumps(m))
    _fails(app, p0, p1, "-o", out, "--engines", fake_aoti, match="format version 3 is newer")
    (fake_aoti / "manifest.json").write_text("{not json")
    _fails(app, p0, p1, "-o", out, "--engines", fake_aoti, match="cannot be read")
    assert not out.exists()


def test_unreadable_package_ops_and_options_are_refused(app, frames, fake_aoti, tmp_path):
    p0, p1, _, _ = frames
    out = tmp_path / "o.png"
    _fails(app, p0, p1, "-o", out, "--engines", fake_aoti, match="cannot load")
    _fails(app, p0, p1, "-o", out, "--engines", fake_aoti, "--ops-library", tmp_path / "none.so",
           match="ldmvfi_fast::decoder_output")
    _fails(app, p0, p1, "-o", out, "--engines", fake_aoti, "--device", "cuda", match="compiled for cpu")
    _fails(app, p0, p1, "-o", out, "--engines", fake_aoti, "--steps", "x", match="--steps must be an integer")
    _fails(app, p0, p1, "-o", out, "--engines", fake_aoti, "--eta", "2", match="--eta must be")
    _fails(app, p0, p1, "-o", out, match="--engines DIR is required")
    assert not out.exists()


def test_bad_frames_and_existing_output_are_refused(app, frames, fake_aoti, tmp_path):
    p0, p1, _, _ = frames
    out = tmp_path / "o.png"
    small = _png(tmp_path / "small.png", np.zeros((300, 440, 3), np.uint8))
    _fails(app, p0, small, "-o", out, "--engines", fake_aoti, match="frame sizes differ")
    (tmp_path / "text.png").write_text("not an image")
    _fails(app, p0, tmp_path / "text.png", "-o", out, "--engines", fake_aoti, match="is not a PNG file")
    _fails(app, tmp_path / "missing.png", p1, "-o", out, "--engines", fake_aoti, match="cannot open")
    out.write_bytes(b"mine")
    _fails(app, p0, p1, "-o", out, "--engines", fake_aoti, match="exists; pass --overwrite")
    assert out.read_bytes() == b"mine"
    _fails(app, p0, p1, "-o", tmp_path / "no" / "o.png", "--engines", fake_aoti, match="does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["fake_aoti", "o.png", "small.png", "text.png"])


# --- the seed without packages: the app's objects with a stand-in engine (default suite) --------

#: the stand-in for the AOTInductor backend (src/aoti_engine.cpp): make_aoti_engine returns three
#: tensor formulas, mirrored by _ProbeBackbone below (the same ATen ops)
PROBE_ENGINE_CPP = r"""
#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "engine.h"

namespace ldmvfi_fast {
namespace {
class ProbeEngine final : public Engine {
 public:
  std::vector<at::Tensor> encode(const at::Tensor& frame) override {
    return {at::avg_pool2d(frame, {32, 32}), at::avg_pool2d(frame, {2, 2})};
  }
  at::Tensor denoise(const at::Tensor& x_t, const at::Tensor&, const at::Tensor&) override { return x_t.mul(0.5); }
  at::Tensor decode(const std::vector<at::Tensor>& in) override {
    const at::Tensor& f0 = in.at(3);
    const at::Tensor& f1 = in.at(4);
    at::Tensor up = at::upsample_nearest2d(in.at(0), {f0.size(2), f0.size(3)});
    return f0.add(f1).mul(0.5).add(up.mul(0.25));
  }
};
}  // namespace
std::unique_ptr<Engine> make_aoti_engine(const EngineSpec&) { return std::make_unique<ProbeEngine>(); }
}  // namespace ldmvfi_fast
"""


class _ProbeBackbone:
    """The stand-in engine's formulas as a Python Backbone (same ATen ops as PROBE_ENGINE_CPP)."""

    name, prediction, pad_unit, latent_factor, latent_channels = "probe", "eps", 256, 32, 3
    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self, alphas_cumprod):
        self.alphas_cumprod = alphas_cumprod

    def check_size(self, height, width, batch):
        pass

    def encode(self, frames):
        return torch.nn.functional.avg_pool2d(frames, 32), [torch.nn.functional.avg_pool2d(frames, 2)]

    def denoise(self, x_t, t, cond):
        return x_t.mul(0.5)

    def decode(self, z, phi0, phi1, frame0, frame1):
        up = torch.nn.functional.interpolate(z, size=tuple(frame0.shape[-2:]), mode="nearest")
        return frame0.add(frame1).mul(0.5).add(up.mul(0.25))


def _compile_entry(build: Path, source: str) -> tuple[list[str], Path]:
    """(compiler arguments, object file) of ``source`` in the app build's compile_commands.json."""
    import shlex

    for e in json.loads((build / "compile_commands.json").read_text()):
        if Path(e["file"]).as_posix().endswith(source):
            args = e["arguments"] if "arguments" in e else shlex.split(e["command"])
            obj = Path(args[args.index("-o") + 1])
            return args, obj if obj.is_absolute() else Path(e["directory"]) / obj
    raise AssertionError(f"{source} is not in {build / 'compile_commands.json'}")


@pytest.fixture(scope="module")
def probe_app(app) -> Path:
    """The app's objects (main, image_io, libldmvfi_fast_cpp's interpolator) linked with the stand-in
    engine instead of the AOTInductor backend: compiled with main.cpp's flags, ~10 s."""
    build = app.parent
    t0 = time.perf_counter()
    args, main_o = _compile_entry(build, "app/main.cpp")
    _, io_o = _compile_entry(build, "app/image_io.cpp")
    src, obj = build / "probe_engine.cpp", build / "probe_engine.o"
    src.write_text(PROBE_ENGINE_CPP)
    i_o, i_c = args.index("-o"), args.index("-c")
    cc = [a for k, a in enumerate(args) if k not in (i_o, i_o + 1, i_c, i_c + 1)]
    cc += [f"-I{REPO / 'export' / 'cpp' / 'src'}", "-o", str(obj), "-c", str(src)]
    p = subprocess.run(cc, cwd=build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-6000:]
    tlib = Path(torch.__file__).parent / "lib"
    cache = (build / "CMakeCache.txt").read_text()
    png = next((ln.split("=", 1)[1] for ln in cache.splitlines()
                if ln.startswith(("PNG_LIBRARY_RELEASE:", "PNG_LIBRARY:")) and ln.split("=", 1)[1]), "-lpng")
    exe = build / "ldmvfi_interpolate_probe"
    # the stand-in object comes before the library: the archive's aoti_engine.o is then never pulled in
    link = [args[0], str(main_o), str(io_o), str(obj), str(build / "libldmvfi_fast_cpp.a"),
            "-Wl,--no-as-needed", *(str(tlib / f"lib{n}.so") for n in ("torch_cpu", "torch", "c10")),
            "-Wl,--as-needed", png, "-ldl", f"-Wl,-rpath,{tlib}", "-o", str(exe)]
    p = subprocess.run(link, cwd=build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-6000:]
    print(f"\nprobe app compiled and linked in {time.perf_counter() - t0:.1f} s")
    return exe


@pytest.fixture
def probe_engines(tmp_path):
    """An engine folder for the stand-in engine: manifest (one feature level, DDIM tables for 2
    steps) and placeholder files."""
    from ldmvfi_fast.manifest import FORMAT, FORMAT_VERSION, MANIFEST_NAME
    from ldmvfi_fast.sampling import DiffusionSchedule, make_beta_schedule

    ac = DiffusionSchedule.from_betas(make_beta_schedule("linear", 1000, 0.0015, 0.0195)).buffers["alphas_cumprod"]
    ac = ac.float()

    def t(name):
        return {"name": name, "dtype": "float32", "shape": []}

    graphs = {"encoder": {"inputs": [t("frame")], "outputs": [t("z"), t("phi0")]},
              "unet_step": {"inputs": [t("x_t"), t("t"), t("cond")], "outputs": [t("eps")]},
              "decoder": {"inputs": [t(n) for n in ("z", "phi0_0", "phi1_0", "frame0", "frame1")],
                          "outputs": [t("frame")]}}
    folder = tmp_path / "probe_engines"
    folder.mkdir()
    for name, g in graphs.items():
        g["file"] = AOTI_FILES[name]
        (folder / g["file"]).write_bytes(b"stand-in engine: not read")
    m = {"format": FORMAT, "format_version": FORMAT_VERSION, "runtime": "aoti", "prediction": "eps",
         "dtype": "float32", "device": "cpu", "pad_unit": 256, "latent_factor": 32, "latent_channels": 3,
         "custom_ops": [], "alphas_cumprod": ac.tolist(), "graphs": graphs,
         "sizes": {"min_height": 256, "min_width": 256, "max_height": 1024, "max_width": 1024, "multiple": 256,
                   "max_batch": 1},
         "ddim": ddim_tables(ac.tolist(), steps=(STEPS,))}
    (folder / MANIFEST_NAME).write_text(json.dumps(m))
    return folder, ac


def test_app_seed_gives_the_pipeline_frame_and_repeats(probe_app, probe_engines, frames, tmp_path):
    """``--seed S`` draws x_T and the per-step noise from torch's CPU generator seeded S: the frame is
    the Python pipeline's ``interpolate(seed=S)`` on the same formulas (bitwise), the same every run,
    and another with another seed; ``--noise`` replaces x_T only."""
    from ldmvfi_fast.pipeline import Interpolator

    p0, p1, f0, f1 = frames
    folder, ac = probe_engines

    def run(tag, *extra):
        out, raw = tmp_path / f"{tag}.png", tmp_path / f"{tag}.npy"
        _run(probe_app, p0, p1, "-o", out, "--engines", folder, "--steps", STEPS, "--raw-out", raw, "--quiet", *extra)
        return torch.from_numpy(np.load(raw)), out.read_bytes()

    a, a_png = run("a", "--seed", 5)
    b, b_png = run("b", "--seed", 5)
    c, _ = run("c", "--seed", 6)
    assert a.shape == (1, 3, *HW)
    same = torch.equal(a, b) and a_png == b_png
    assert same, "the same --seed gave different frames: an unseeded generator?"
    differ = bool((a - c).abs().max() > 0.1)
    assert differ, "another --seed gave the same frame: the seed is not used"
    py = Interpolator(_ProbeBackbone(ac), steps=STEPS)
    torch.testing.assert_close(a, py.interpolate(f0, f1, seed=5), rtol=0, atol=1e-6)
    torch.testing.assert_close(c, py.interpolate(f0, f1, seed=6), rtol=0, atol=1e-6)
    assert (a - (f0 + f1) / 2).abs().mean() > 0.05  # the sampled latent shows in the frame
    # x_T from a file, the per-step noise from the seed
    x_T = torch.randn(1, 3, 512 // 32, 512 // 32, generator=torch.Generator().manual_seed(21))
    np.save(tmp_path / "x_T.npy", x_T.numpy())
    d, _ = run("d", "--seed", 5, "--noise", tmp_path / "x_T.npy")
    want = py.interpolate(f0, f1, x_T=x_T, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(d, want, rtol=0, atol=1e-6)
