"""Checkpoint layout, strict loading and bad-checkpoint errors."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from ldmvfi_fast.checkpoint import (CheckpointError, checkpoint_info, ema_key, expected_checkpoint_keys, infer_config,
                                    load_model, read_checkpoint)
from ldmvfi_fast.config import ConfigError, load_yaml_config, official_config, tiny_config


def _official_listing(fixtures_dir):
    return json.loads((fixtures_dir / "official-ckpt-keys.json").read_text())["keys"]


def test_official_preset_has_exactly_the_official_keys(fixtures_dir):
    listing = _official_listing(fixtures_dir)
    ours = expected_checkpoint_keys(official_config())
    assert set(ours) == set(listing), (sorted(set(ours) - set(listing))[:5], sorted(set(listing) - set(ours))[:5])
    bad = [(k, ours[k], listing[k]) for k in listing if (list(ours[k][0]), ours[k][1]) != (listing[k][0], listing[k][1])]
    assert not bad, bad[:5]
    assert sum(torch.Size(s).numel() for s, _ in ours.values()) == sum(torch.Size(s).numel() for s, _ in listing.values())


def test_checkpoint_made_from_listing_loads_strictly(fixtures_dir):
    listing = _official_listing(fixtures_dir)
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, (shape, dt) in listing.items():
        dtype = getattr(torch, dt)
        sd[k] = (torch.randn(shape, generator=g) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype)).to(dtype)
    assert infer_config(sd).name == "official"
    model = load_model({"state_dict": sd})
    assert model.cfg.name == "official" and model.unet_weights == "ema"
    p = dict(model.unet.named_parameters())["input_blocks.1.1.attn_block.fn.to_q.weight"]
    assert torch.equal(p, sd[ema_key("input_blocks.1.1.attn_block.fn.to_q.weight")])
    raw = load_model({"state_dict": sd}, "official", use_ema=False)
    assert torch.equal(dict(raw.unet.named_parameters())["out.2.weight"], sd["model.diffusion_model.out.2.weight"])


def test_yaml_config_equals_preset(fixtures_dir):
    cfg = load_yaml_config(fixtures_dir / "ldmvfi-tiny" / "tiny.yaml")
    assert (cfg.unet, cfg.autoencoder, cfg.diffusion) == (tiny_config().unet, tiny_config().autoencoder,
                                                          tiny_config().diffusion)


def test_yaml_rejects_unsupported_option(tmp_path, fixtures_dir):
    text = (fixtures_dir / "ldmvfi-tiny" / "tiny.yaml").read_text().replace("use_max_self_attn: True",
                                                                            "use_max_self_attn: False")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match="use_max_self_attn"):
        load_yaml_config(tmp_path / "bad.yaml")


def test_checkpoint_that_does_not_fit_config_names_the_shape(fixtures_dir):
    with pytest.raises(CheckpointError, match=r"shapes that differ.*checkpoint \(32, 3, 3, 3\) vs model \(64, 3, 3, 3\)"):
        load_model(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt", "official")


def test_info(fixtures_dir):
    info = checkpoint_info(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt")
    assert info["config"] == "tiny" and info["ema_present"] and info["keys"] == 2374


@pytest.fixture(scope="module")
def tiny_sd(fixtures_dir):
    return read_checkpoint(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt")


def test_missing_and_unexpected_keys_listed(tiny_sd):
    sd = dict(tiny_sd)
    del sd["first_stage_model.encoder.conv_in.bias"]
    sd["first_stage_model.something_new.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as ei:
        load_model(sd, "tiny")
    msg = str(ei.value)
    assert "missing keys (1): first_stage_model.encoder.conv_in.bias" in msg
    assert "unexpected keys (1): first_stage_model.something_new.weight" in msg


def test_known_unused_keys_are_ignored(tiny_sd):
    sd = {k: v for k, v in tiny_sd.items() if not k.startswith("cond_stage_model.") and ".out_conv." not in k}
    sd["first_stage_model.loss.discriminator.main.0.weight"] = torch.zeros(2)
    load_model(sd, "tiny")  # neither the absence of the ignored keys nor loss weights matter


def test_missing_ema_falls_back_to_raw_with_warning(tiny_sd, caplog):
    sd = {k: v for k, v in tiny_sd.items() if not k.startswith("model_ema.")}
    m = load_model(sd, "tiny")
    assert m.unet_weights == "raw"
    assert "no EMA" in caplog.text
    with pytest.raises(CheckpointError, match="missing keys"):
        load_model(sd, "tiny", use_ema=True)


def test_other_model_rejected(tmp_path):
    torch.save({"state_dict": {"conv.weight": torch.zeros(3, 3)}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not an LDMVFI checkpoint"):
        load_model(tmp_path / "other.ckpt")


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "missing"])
def test_corrupt_checkpoints(tmp_path, fixtures_dir, kind):
    p = tmp_path / "bad.ckpt"
    src = fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt"
    if kind == "truncated":
        p.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    elif kind == "garbage":
        p.write_bytes(b"this is not a checkpoint" * 100)
    elif kind == "empty":
        p.write_bytes(b"")
    else:
        p = tmp_path / "nope.ckpt"
    with pytest.raises(CheckpointError) as ei:
        load_model(p)
    assert str(p) in str(ei.value)


def test_loading_executes_no_code(tmp_path, fixtures_dir):
    """A checkpoint with pickled objects beside the weights loads without running them."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (shutil.copy, (str(fixtures_dir / "ldmvfi-tiny" / "tiny.yaml"), str(marker)))

    sd = read_checkpoint(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt")
    torch.save({"state_dict": sd, "hyper_parameters": Evil(), "epoch": 3}, tmp_path / "meta.ckpt")
    m = load_model(tmp_path / "meta.ckpt")
    assert not marker.exists()
    assert m.cfg.name == "tiny"


def test_unsupported_dtype_and_device(fixtures_dir):
    with pytest.raises(ValueError, match="CUDA only"):
        load_model(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt", dtype=torch.float16)
    with pytest.raises(ValueError, match="unsupported dtype"):
        load_model(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt", dtype=torch.float64)
