"""Parity with the original LDMVFI implementation on ../shared/fixtures (tiny config).

Tolerances (fixtures README): single-pass outputs ~1e-4 absolute, DDIM latents ~1e-5
relative, codebook indices exactly. Each test prints its measured error (``-s`` shows it).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ldmvfi_fast.checkpoint import load_model
from ldmvfi_fast.pipeline import Interpolator, pad_amounts

CASES = ["reference_tiny_256x256.npz", "reference_tiny_200x320.npz"]
ATOL = 1e-4
RTOL_DDIM = 1e-5


@pytest.fixture(scope="module")
def model_raw(tiny_ckpt):
    """The tiny checkpoint with its raw (non-EMA) U-Net weights (``tiny_model`` has the EMA ones)."""
    return load_model(tiny_ckpt, use_ema=False)


@pytest.fixture(scope="module", params=CASES)
def case(request, fixtures_dir):
    return {k: torch.from_numpy(v) for k, v in np.load(fixtures_dir / "ldmvfi-tiny" / request.param).items()}


def _err(a, b):
    return (a.float() - b.float()).abs().max().item()


def _report(name, err, tol):
    print(f"{name}: max abs err {err:.3g} (tol {tol:.1g})")
    assert err <= tol, f"{name}: error {err} > {tol}"


@pytest.fixture(scope="module")
def encoded(tiny_model, case):
    it = Interpolator(tiny_model, steps=10, eta=0.0)
    return it, it.encode(case["frame0"]), it.encode(case["frame1"])


def test_padding_matches_original(case):
    H, W = case["frame0"].shape[-2:]
    assert pad_amounts(H, W, "reference") == tuple(case["pad_hw"].tolist())


def test_encoder(encoded, case):
    _, e0, e1 = encoded
    _report("c_prev", _err(e0.z, case["c_prev"]), ATOL)
    _report("c_next", _err(e1.z, case["c_next"]), ATOL)
    for i in range(5):
        _report(f"phi_prev_{i}", _err(e0.phi[i], case[f"phi_prev_{i}"]), ATOL)
        _report(f"phi_next_{i}", _err(e1.phi[i], case[f"phi_next_{i}"]), ATOL)


def test_eps_ema_and_raw(tiny_model, model_raw, case):
    with torch.no_grad():
        eps = tiny_model.eps(case["xt"], case["t"], case["c"])
        eps_raw = model_raw.eps(case["xt"], case["t"], case["c"])
    assert tiny_model.unet_weights == "ema" and model_raw.unet_weights == "raw"
    _report("eps", _err(eps, case["eps"]), ATOL)
    _report("eps_no_ema", _err(eps_raw, case["eps_no_ema"]), ATOL)
    assert _err(eps, case["eps_no_ema"]) > 1e-2  # the two weight sets really differ


def test_quantizer_indices_exact(tiny_model, case):
    zq, idx = tiny_model.first_stage.quantize(case["decode_z"])
    assert torch.equal(idx, case["decode_indices"])
    _report("decode_zq", _err(zq, case["decode_zq"]), 1e-6)


@pytest.mark.parametrize("backend", [None, "reference"])
def test_decoder(encoded, case, backend):
    """The decoder with the dispatching ops (None: the automatic choice, the compiled CPU
    kernels when built) and with the pure-PyTorch reference forced for the scope."""
    from ldmvfi_fast.ops import use_backend

    it, e0, e1 = encoded
    # decoder alone, on the original's features (codebook ties cannot interfere)
    P0 = [case[f"phi_prev_{i}"] for i in range(5)]
    P1 = [case[f"phi_next_{i}"] for i in range(5)]
    H, W = case["frame0"].shape[-2:]
    with torch.no_grad(), use_backend(backend):
        unq = it.model.decode(case["decode_z"], P0, P1, e0.frame, e1.frame, quantize=False)[..., :H, :W]
        full = it.decode(case["decode_z"], e0, e1)
        unq_pipeline = it.decode(case["decode_z"], e0, e1, quantize=False)
    _report("decode_image_unquantized", _err(unq, case["decode_image_unquantized"]), ATOL)
    _report("decode_image", _err(full, case["decode_image"]), ATOL)
    torch.testing.assert_close(unq_pipeline, it.model.decode(case["decode_z"], e0.phi, e1.phi, e0.frame, e1.frame,
                                                             quantize=False)[..., :H, :W], rtol=0, atol=0)


def test_ddim_trajectory_and_image(encoded, case):
    it, e0, e1 = encoded
    s = it.ddim
    assert np.array_equal(s.timesteps_np, case["ddim_timesteps"].numpy())
    np.testing.assert_array_equal(s.alphas_np, case["ddim_alphas"].numpy())
    np.testing.assert_allclose(s.alphas_prev_np, case["ddim_alphas_prev"].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.sigmas_np, case["ddim_sigmas"].numpy(), rtol=0, atol=1e-12)
    z, inter = it.sample_latent(e0, e1, x_T=case["ddim_xT"], return_intermediates=True)
    xi, px = torch.stack(inter["x_inter"]), torch.stack(inter["pred_x0"])
    scale = case["ddim_x_inter"].abs().max().item()
    _report("ddim_x_inter (relative)", _err(xi, case["ddim_x_inter"]) / scale, RTOL_DDIM)
    _report("ddim_pred_x0 (relative)", _err(px, case["ddim_pred_x0"]) / case["ddim_pred_x0"].abs().max().item(),
            RTOL_DDIM)
    _report("ddim_sample (relative)", _err(z, case["ddim_sample"]) / scale, RTOL_DDIM)
    img = it.decode(z, e0, e1)
    _report("ddim_image", _err(img, case["ddim_image"]), ATOL)
    # the public one-call API gives the official final output
    out = it.interpolate(case["frame0"], case["frame1"], x_T=case["ddim_xT"])
    _report("ddim_image_clamped", _err(out, case["ddim_image_clamped"]), ATOL)
