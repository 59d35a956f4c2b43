"""``benchmarks/quality.py``: metrics against hand-computed values, the dataset layouts, the
no-diffusion baseline, and a whole run on the tiny model and a bundled clip at a small size
(JSON fields, plot, refusal to overwrite, clear errors). Timings are never asserted."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch


# -- metrics -----------------------------------------------------------------------------------

def _ssim_by_hand(x: np.ndarray, y: np.ndarray, size=11, sigma=1.5) -> float:
    """Wang et al.'s SSIM written out window by window (one channel, valid windows)."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-r ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            a, b = x[i:i + size, j:j + size], y[i:i + size, j:j + size]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_and_psnr_known_values(quality):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 14, 13, generator=g, dtype=torch.float64)
    torch.testing.assert_close(quality.ssim(x, x), torch.ones(2, dtype=torch.float64))
    # constants a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1) (the structure term is C2 / C2)
    a, b = 0.3, 0.7
    want = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    got = quality.ssim(torch.full((1, 3, 12, 12), a), torch.full((1, 3, 12, 12), b))
    torch.testing.assert_close(got, torch.tensor([want], dtype=torch.float64))
    # a textured pair against the window-by-window formula
    y = (x + 0.5 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 0.25).clamp(0, 1)
    by_hand = np.mean([_ssim_by_hand(x[0, c].numpy(), y[0, c].numpy()) for c in range(3)])
    assert abs(float(quality.ssim(x[:1], y[:1])[0]) - by_hand) < 1e-10
    assert 0.3 < by_hand < 0.9
    # PSNR: an error of 0.1 everywhere is 20 dB
    torch.testing.assert_close(quality.psnr(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.1)),
                               torch.tensor([20.0], dtype=torch.float64))
    with pytest.raises(quality.InputError, match="11x11"):
        quality.ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# -- method specs and dataset layouts ----------------------------------------------------------

def test_method_specs(quality):
    ms = quality.parse_methods("none, ddim:10, dpmpp_2m:4:karras, ddim:10:trailing:eta=0, consistency:2", 1.0)
    assert [m.label for m in ms] == ["none", "ddim:10:eta=1", "dpmpp_2m:4:karras", "ddim:10:trailing:eta=0",
                                     "consistency:2"]
    assert (ms[2].sampler, ms[2].steps, ms[2].spacing) == ("dpmpp_2m", 4, "karras")
    # the eta a method runs with is the pipeline's: --eta (or the default) only where the sampler takes one
    assert [m.eta for m in ms[1:]] == [1.0, None, 0.0, None]
    assert [m.label for m in quality.parse_methods("ddim:10,ddpm,dpmpp_2m_sde:4")] == [
        "ddim:10:eta=1", "ddpm", "dpmpp_2m_sde:4:eta=1"]  # no --eta: the pipeline's default (1)
    for bad, match in [("euler:4", "not a sampler"), ("ddim", "step count"), ("ddim:4:linear", "not a step count"),
                       ("ddim:3", "divid"), ("none:4", "takes no options"), ("ddim:4:eta=x", "eta=NUMBER"),
                       ("ddim:4,ddim:4", "twice"), ("", "empty"),
                       ("dpmpp_2m:4:eta=0.5", "deterministic and takes no eta"), ("ddpm:10", "steps does not apply"),
                       ("consistency:2:eta=0", "takes no eta")]:
        with pytest.raises(quality.OptionError, match=match):
            quality.parse_methods(bad, 1.0)


def _png(path: Path, value: int = 0) -> None:
    from ldmvfi_fast.video import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.full((16, 16, 3), value, np.uint8))


def test_dataset_layouts(quality, tmp_path):
    v = tmp_path / "vimeo"
    (v / "sequences").mkdir(parents=True)
    (v / "tri_testlist.txt").write_text("00001/0001\n00001/0002\n\n")
    for s in ("0001", "0002"):
        for k in (1, 2, 3):
            _png(v / "sequences" / "00001" / s / f"im{k}.png", 10 * k)
    t = quality.dataset_triplets("vimeo90k", v)
    assert [x[0] for x in t] == ["00001/0001", "00001/0002"] and t[0][2].name == "im2.png"

    u = tmp_path / "ucf"
    for n in ("1", "2"):
        for f in ("frame_00.png", "frame_01_gt.png", "frame_02.png"):
            _png(u / n / f)
    t = quality.dataset_triplets("ucf101", u)
    assert len(t) == 2 and t[0][2].name == "frame_01_gt.png" and t[0][3].name == "frame_02.png"

    s = tmp_path / "snu"
    for i in (1, 5, 9):
        _png(s / "test" / "GOPRO" / f"{i:06d}.png")
    (s / "test-hard.txt").write_text("test/GOPRO/000001.png test/GOPRO/000005.png test/GOPRO/000009.png\n")
    t = quality.dataset_triplets("snufilm", s, "hard")
    assert t[0][0] == "hard-001" and t[0][2].name == "000005.png"
    with pytest.raises(quality.MediaError, match="test-easy.txt"):
        quality.dataset_triplets("snufilm", s, "easy")

    d = tmp_path / "davis"
    for i in range(9):
        _png(d / "bike" / f"{i:05d}.jpg".replace(".jpg", ".png"))
    t = quality.dataset_triplets("davis", d)
    assert [x[2].name for x in t] == ["00003.png", "00005.png"]  # frames t+2, t+3, t+4 for t = 0, 2

    with pytest.raises(quality.MediaError, match="folder not found"):
        quality.dataset_triplets("ucf101", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(quality.MediaError, match="no triplets"):
        quality.dataset_triplets("ucf101", tmp_path / "empty")


class _FakeBackbone:
    """Encode: z = the frame's 32x32 block means (no features); decode: z upsampled; no U-Net."""
    name, device, dtype, pad_unit, latent_factor, latent_channels, prediction = (
        "fake", torch.device("cpu"), torch.float32, 32, 32, 3, "eps")
    alphas_cumprod = torch.linspace(0.999, 0.01, 1000)

    def check_size(self, h, w, b):
        return None

    def encode(self, frames):
        return torch.nn.functional.avg_pool2d(frames, 32), []

    def denoise(self, *a):
        raise AssertionError("the baseline called the U-Net")

    def decode(self, z, phi0, phi1, frame0, frame1):
        return torch.nn.functional.interpolate(z, scale_factor=32)


def test_baseline_decodes_the_mean_latent_with_no_unet(quality):
    from ldmvfi_fast.pipeline import Interpolator

    it = Interpolator(_FakeBackbone(), steps=1, padding="minimal")
    f0, f1 = torch.full((1, 3, 32, 64), -0.6), torch.full((1, 3, 32, 64), 0.2)
    torch.testing.assert_close(quality._run_baseline(it, f0, f1), torch.full((1, 3, 32, 64), -0.2))


# -- a whole run -------------------------------------------------------------------------------

def test_whole_run_on_a_bundled_clip(quality, tiny_ckpt, tmp_path, capsys):
    from ldmvfi_fast.video import MediaError, bundled_clip

    try:
        bundled_clip("carphone_pristine.mp4")
    except MediaError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "q.json"
    argv = ["--ckpt", str(tiny_ckpt), "--clips", "carphone_pristine.mp4", "--max-triplets", "2", "--crop", "48x64",
            "--padding", "minimal", "--samplers", "none,dpmpp_2m:2,ddim:1:trailing:eta=0", "--reference", "dpmpp_2m:2",
            "--warmup", "0", "--device", "cpu", "--out", str(out)]
    assert quality.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["data"]["triplets"] == 2 and r["data"]["names"] == ["carphone_pristine:1", "carphone_pristine:4"]
    assert list(r["methods"]) == ["none", "dpmpp_2m:2", "ddim:1:trailing:eta=0"]
    assert r["methods"]["none"]["unet_calls"] == 0 and r["methods"]["dpmpp_2m:2"]["unet_calls"] == 2
    assert r["methods"]["dpmpp_2m:2"]["timesteps"] == [999, 499]
    for m in r["methods"].values():
        assert len(m["per_triplet"]) == 2 and m["seconds_per_frame"] > 0
        assert np.isfinite(m["psnr_gt"]) and 0 < m["ssim_gt"] <= 1
    assert r["metrics"]["lpips"].startswith("skipped") or r["metrics"]["lpips"] == "alex"
    # the reference is one of the methods: its own output (identical: PSNR None, SSIM 1)
    assert r["reference"] == "dpmpp_2m:2"
    assert r["methods"]["dpmpp_2m:2"]["psnr_ref"] is None and r["methods"]["dpmpp_2m:2"]["ssim_ref"] == 1.0
    assert np.isfinite(r["methods"]["none"]["psnr_ref"]) and r["methods"]["none"]["ssim_ref"] < 1
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "dpmpp_2m:2" in capsys.readouterr().out
    # never overwritten without --overwrite; bad specs and folders are one-line errors, nothing written
    before = out.read_bytes()
    assert quality.main(argv) == 2 and out.read_bytes() == before
    assert "exists" in capsys.readouterr().err
    assert quality.main(argv[:-1] + [str(tmp_path / "b.json"), "--samplers", "ddim:x1"]) == 2
    assert "bad method" in capsys.readouterr().err
    assert quality.main(argv[:-1] + [str(tmp_path / "d.json"), "--samplers", "dpmpp_2m:2", "--eta", "0.5"]) == 2
    assert "--eta 0.5 applies to none of the methods" in capsys.readouterr().err
    assert quality.main(argv[:-1] + [str(tmp_path / "c.json"), "--dataset", "vimeo90k", "--root",
                                     str(tmp_path / "nope")]) == 2
    assert "folder not found" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.json", "q.png"]


def test_rife_beside_ldmvfi(quality, tiny_ckpt, tmp_path, capsys, monkeypatch):
    """``rife`` in --samplers: RIFE (random weights here) on the same triplets, in the same JSON and
    plot; here also the reference, so the LDMVFI method is compared with RIFE's output."""
    from ldmvfi_fast.video import MediaError, bundled_clip

    try:
        bundled_clip("carphone_pristine.mp4")
    except MediaError as exc:
        pytest.skip(str(exc))
    torch.manual_seed(0)
    weights = tmp_path / "rife.pkl"
    torch.save(quality.rife_peer.IFNet().state_dict(), weights)
    out = tmp_path / "q.json"
    argv = ["--ckpt", str(tiny_ckpt), "--clips", "carphone_pristine.mp4", "--max-triplets", "1", "--crop", "48x64",
            "--padding", "minimal", "--samplers", "none,rife", "--reference", "rife",
            "--rife-weights", str(weights), "--device", "cpu", "--no-lpips", "--out", str(out)]
    assert quality.main(argv) == 0
    r = json.loads(out.read_text())
    assert list(r["methods"]) == ["none", "rife"] and r["reference"] == "rife" and r["data"]["warmup"] == 1
    rf, base = r["methods"]["rife"], r["methods"]["none"]
    assert rf["model"] == "RIFE" and rf["unet_calls"] == 0 and base["model"] == "LDMVFI"
    assert rf["peer"]["weights"] == str(weights) and len(rf["peer"]["weights_sha256"]) == 64
    assert r["peers"]["rife"] == rf["peer"]
    assert len(rf["per_triplet"]) == 1 and rf["seconds_per_frame"] > 0
    assert np.isfinite(rf["psnr_gt"]) and 0 < rf["ssim_gt"] <= 1
    assert rf["ssim_ref"] == 1.0 and rf["psnr_ref"] is None  # the reference: its own output
    assert np.isfinite(base["psnr_ref"]) and base["ssim_ref"] < 1
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "\nrife " in table and "\nnone " in table
    # one-line errors, nothing written: options on rife, weights without rife, no weights, foreign weights
    monkeypatch.setenv("LDMVFI_FAST_CACHE", str(tmp_path / "empty-cache"))
    i = argv.index("--rife-weights")
    no_weights = argv[:i] + argv[i + 2:]
    for extra, words in [(["--samplers", "rife:2"], "takes no options"), (["--warmup", "-1"], "--warmup"),
                         (["--samplers", "none", "--reference", "none"], "--rife-weights applies to none"),
                         (["--rife-weights", str(tmp_path / "nope.pkl")], "file not found")]:
        assert quality.main(argv[:-1] + [str(tmp_path / "x.json"), *extra]) == 2
        assert words in capsys.readouterr().err
    assert quality.main(no_weights[:-1] + [str(tmp_path / "x.json")]) == 2
    assert "no RIFE weights" in capsys.readouterr().err
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "foreign.pkl")
    assert quality.main(argv[:-1] + [str(tmp_path / "x.json"), "--rife-weights", str(tmp_path / "foreign.pkl")]) == 2
    err = capsys.readouterr().err
    assert "not Practical-RIFE 4.25-style IFNet weights" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.pkl", "q.json", "q.png", "rife.pkl"]
