"""Checkpoint layout, strict loading and bad-checkpoint errors."""
from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import zipfile

import pytest
import torch

from ldmvfi_fast import checkpoint as ckpt_mod
from ldmvfi_fast.checkpoint import (EMA_META, CheckpointError, checkpoint_info, ema_key, expected_checkpoint_keys,
                                    infer_config, is_ignored, load_model, map_state_dict, read_checkpoint)
from ldmvfi_fast.config import ConfigError, load_yaml_config, official_config, tiny_config
from ldmvfi_fast.models.ldmvfi import LDMVFI


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


def test_checkpoint_that_does_not_fit_config_names_the_shape(tiny_ckpt):
    with pytest.raises(CheckpointError, match=r"shapes that differ.*checkpoint \(32, 3, 3, 3\) vs model \(64, 3, 3, 3\)"):
        load_model(tiny_ckpt, "official")


def test_info(tiny_ckpt):
    info = checkpoint_info(tiny_ckpt)
    assert info["config"] == "tiny" and info["ema_present"] and info["keys"] == 2374


@pytest.fixture(scope="module")
def tiny_sd(tiny_ckpt):
    return read_checkpoint(tiny_ckpt)


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
    ignored = [k for k in tiny_sd if k.startswith("cond_stage_model.") or ".out_conv." in k or k in EMA_META]
    assert len(ignored) > 100 and all(is_ignored(k) for k in ignored)
    sd = {k: v for k, v in tiny_sd.items() if k not in ignored}
    sd["first_stage_model.loss.discriminator.main.0.weight"] = torch.zeros(2)
    assert is_ignored("first_stage_model.loss.discriminator.main.0.weight")
    # neither the absence of the ignored keys nor the loss weights matter ...
    with torch.device("meta"):
        meta = LDMVFI(tiny_config())
    mapped, weights, missing, unexpected, mismatched = map_state_dict(sd, meta)
    assert (weights, missing, unexpected, mismatched) == ("ema", [], [], [])
    assert len(mapped) == len(meta.state_dict())
    # ... and the model is the one loaded from the complete checkpoint
    full, stripped = load_model(tiny_sd, "tiny").state_dict(), load_model(sd, "tiny").state_dict()
    assert full.keys() == stripped.keys()
    assert all(torch.equal(full[k], stripped[k]) for k in full)
    # an unknown key beside them is still refused
    sd["first_stage_model.decoder.something_new"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys \\(1\\): first_stage_model.decoder.something_new"):
        load_model(sd, "tiny")


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
def test_corrupt_checkpoints(tmp_path, tiny_ckpt, kind):
    p = tmp_path / "bad.ckpt"
    src = tiny_ckpt
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


def test_loading_executes_no_code(tmp_path, fixtures_dir, tiny_ckpt):
    """A checkpoint with pickled objects beside the weights loads without running them."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (shutil.copy, (str(fixtures_dir / "ldmvfi-tiny" / "tiny.yaml"), str(marker)))

    sd = read_checkpoint(tiny_ckpt)
    torch.save({"state_dict": sd, "hyper_parameters": Evil(), "epoch": 3}, tmp_path / "meta.ckpt")
    m = load_model(tmp_path / "meta.ckpt")
    assert not marker.exists()
    assert m.cfg.name == "tiny"


@pytest.mark.parametrize("device, dtype, words", [
    ("cpu", torch.float16, r"float16 on cpu is not supported .* use dtype='float32' or dtype='bfloat16' \(~1.9x faster"),
    ("cpu", "half", "float16 on cpu is not supported"),
    ("cpu", torch.float64, "unsupported dtype torch.float64: use float32, bfloat16 or float16"),
    ("cpu", "int8", "unsupported dtype int8"),
    ("cuda", torch.float32, r"no CUDA device here \(torch .* is a CPU build\): use device='cpu'"),
    ("cuda:1", torch.bfloat16, "no CUDA device here"),
    ("gpu", torch.float32, "unknown device 'gpu'"),
    ("meta", torch.float32, "device 'meta' is not supported"),
])
def test_unsupported_dtype_and_device_refused_before_reading(tmp_path, monkeypatch, device, dtype, words):
    """An OptionError (an LdmvfiError: exit 2 on the command line) naming what works, raised
    before the file is opened: the checkpoint path here does not exist."""
    from ldmvfi_fast.errors import LdmvfiError, OptionError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(OptionError, match=words) as info:
        load_model(tmp_path / "missing.ckpt", device=device, dtype=dtype)
    assert isinstance(info.value, LdmvfiError)


def test_cpu_dtypes_that_load(tiny_ckpt):
    m = load_model(tiny_ckpt, device="cpu", dtype="bf16")
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
    m = load_model(tiny_ckpt, device=torch.device("cpu"))
    assert {p.dtype for p in m.parameters()} == {torch.float32}


def test_cuda_index_past_the_last_device(tmp_path, monkeypatch):
    from ldmvfi_fast.checkpoint import check_device_dtype
    from ldmvfi_fast.errors import OptionError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device_dtype("cuda:1", "float16") == (torch.device("cuda", 1), torch.float16)
    with pytest.raises(OptionError, match=r"'cuda:2' does not exist: this machine has 2 CUDA devices \(cuda:0 .. cuda:1\)"):
        load_model(tmp_path / "missing.ckpt", device="cuda:2")


def test_engine_folder_dtype_from_manifest(tmp_path, monkeypatch):
    """load_backbone reads an engine folder's dtype from its manifest; another dtype is refused
    before anything loads (the folder has no graph files)."""
    from ldmvfi_fast.errors import OptionError
    from ldmvfi_fast.manifest import FORMAT, FORMAT_VERSION, write_manifest
    from ldmvfi_fast.runtime import check_runtime_options, load_backbone

    spec = {"file": "g.pt2", "inputs": [], "outputs": []}
    write_manifest(tmp_path, {"format": FORMAT, "format_version": FORMAT_VERSION, "toolkit_version": "0",
                              "runtime": "exported", "config": {}, "pad_unit": 256, "latent_factor": 32,
                              "latent_channels": 3, "prediction": "eps", "alphas_cumprod": [0.5],
                              "weights_hash": "sha256:" + "0" * 64, "dtype": "bfloat16", "op_backend": "reference",
                              "graphs": {g: dict(spec) for g in ("encoder", "unet_step", "decoder")},
                              "sizes": {"min_height": 256, "min_width": 256, "max_height": 512, "max_width": 512,
                                        "multiple": 256, "max_batch": 1}})
    assert check_runtime_options("exported", engines=tmp_path) == (torch.device("cpu"), torch.bfloat16)
    assert check_runtime_options("exported", engines=tmp_path, dtype="bf16")[1] == torch.bfloat16
    with pytest.raises(OptionError, match=f"the engines in {tmp_path} are bfloat16 .*not float32: leave out dtype"):
        load_backbone("exported", engines=tmp_path, dtype=torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(OptionError, match="no CUDA device here"):
        load_backbone("exported", engines=tmp_path, device="cuda")


class _RunsACommand:
    """Pickles as a call of os.system (``posix.system`` on Linux) that would create ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _HParams(dict):
    """A dict subclass, like Lightning's AttributeDict (filled by SETITEMS when unpickled)."""


def test_foreign_globals_are_named_in_a_warning(tmp_path, caplog):
    marker = tmp_path / "executed"
    hparams = _HParams(lr=1e-4, callback=_RunsACommand(marker))
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "hyper_parameters": hparams, "epoch": 2}, path)
    with caplog.at_level(logging.WARNING):
        sd = read_checkpoint(path)
    assert not marker.exists(), "the pickled os.system call was executed"
    assert torch.equal(sd["w"], torch.arange(3.0))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    system = f"{os.system.__module__}.system"  # posix.system
    assert any(system in m and "_HParams" in m for m in warnings), warnings
    assert any("placeholder" in m and str(path) in m for m in warnings), warnings


@pytest.mark.parametrize("kind, looks_like", [
    ("png", "PNG image"), ("text", "text file"), ("jpeg", "JPEG image"), ("html", "HTML"),
])
def test_not_a_checkpoint_says_what_it_looks_like(tmp_path, kind, looks_like):
    content = {"png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200),
               "text": b"model:\n  base_learning_rate: 1.0e-06\n" * 5,
               "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(100),
               "html": b"<!DOCTYPE html><html><body>Sign in</body></html>"}[kind]
    path = tmp_path / f"model.{kind}"
    path.write_bytes(content)
    for fn in (checkpoint_info, read_checkpoint, load_model):
        with pytest.raises(CheckpointError, match=f"is not a PyTorch checkpoint \\(it looks like an? {looks_like}"):
            fn(path)


def _member_span(path, member):
    """(offset, size) of the stored (uncompressed) bytes of a zip member."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    assert info.compress_type == zipfile.ZIP_STORED
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _flip_byte(path, member, at=0):
    off, size = _member_span(path, member)
    assert size > at
    with open(path, "r+b") as fh:
        fh.seek(off + at)
        b = fh.read(1)
        fh.seek(off + at)
        fh.write(bytes([b[0] ^ 0x5A]))


@pytest.fixture(scope="module")
def lightning_ckpt(tmp_path_factory, tiny_sd):
    """The tiny checkpoint saved like a Lightning file: every tensor in its own storage (the
    cond_stage_model duplicate too) and an optimizer state outside the state dict."""
    path = tmp_path_factory.mktemp("ckpt") / "lightning.ckpt"
    sd = {k: v.clone() for k, v in tiny_sd.items()}
    torch.save({"state_dict": sd, "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(1000)}}}],
                "epoch": 7}, path)
    return path


def _copy_with_flipped(src, dst, keys=(), members=()):
    shutil.copyfile(src, dst)
    sd = read_checkpoint(src, verify=False)
    for m in [sd.members[k] for k in keys] + list(members):
        _flip_byte(dst, m)
    return sd


def test_corrupt_used_tensor_is_detected(tmp_path, lightning_ckpt):
    key = "first_stage_model.decoder.conv_out.weight"
    sd = _copy_with_flipped(lightning_ckpt, tmp_path / "bad.ckpt", keys=[key])
    with pytest.raises(CheckpointError, match=f"corrupt: member {sd.members[key]} fails its CRC"):
        load_model(tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="CRC"):
        read_checkpoint(tmp_path / "bad.ckpt")  # verify=True checks the whole state dict


def test_unused_members_are_not_read(tmp_path, lightning_ckpt, monkeypatch):
    """Corruption in what inference does not use (cond_stage_model duplicate, raw U-Net
    beside the EMA one, optimizer state) costs no read and no error; only the storages of
    the loaded tensors are CRC-checked."""
    unused = ["cond_stage_model.decoder.conv_out.weight", "model.diffusion_model.out.2.weight"]
    with zipfile.ZipFile(lightning_ckpt) as zf:
        sd0 = read_checkpoint(lightning_ckpt, verify=False)
        optimizer = sorted(set(n for n in zf.namelist() if "/data/" in n) - set(sd0.members.values()))
    assert len(optimizer) == 1  # the exp_avg tensor
    _copy_with_flipped(lightning_ckpt, tmp_path / "c.ckpt", keys=unused, members=optimizer)
    checked = []
    real = ckpt_mod._crc_check
    monkeypatch.setattr(ckpt_mod, "_crc_check", lambda zf, m, p: (checked.append(m), real(zf, m, p)))
    model = load_model(tmp_path / "c.ckpt")
    assert model.unet_weights == "ema"
    skipped = {sd0.members[k] for k in unused} | set(optimizer)
    assert not skipped & set(checked)
    loaded = {sd0.members[k] for k in sd0 if k.startswith(("first_stage_model.", "model_ema.")) and not is_ignored(k)}
    assert loaded <= set(checked) and len(checked) == len(set(checked))
    assert len(checked) < len(sd0.members) * 0.6  # neither the raw U-Net nor the duplicate
    checked.clear()
    checkpoint_info(tmp_path / "c.ckpt")  # reads only the schedule values
    assert 0 < len(checked) <= 12

