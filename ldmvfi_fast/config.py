"""Model configuration: dataclasses, the official preset, and the original YAML format.

Only the structural choices the official LDMVFI model uses are supported (MaxViT
attention in the autoencoder, MaxViT cross-attention in the decoder, MaxViT self-attention
in the U-Net, concat conditioning on the first-stage latents). A YAML that asks for
anything else is refused with the name of the option, rather than silently built wrong.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["AutoencoderConfig", "UNetConfig", "DiffusionConfig", "LDMVFIConfig", "official_config",
           "tiny_config", "load_yaml_config", "ConfigError", "PRESETS", "resolve_config"]


@dataclass(frozen=True)
class AutoencoderConfig:
    """VQ-FIGAN (``VQFlowNetInterface``) hyper-parameters."""
    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 2, 2, 4)
    num_res_blocks: int = 1
    in_channels: int = 3
    z_channels: int = 3
    embed_dim: int = 3
    n_embed: int = 8192
    decoder_head_channels: int = 32  # MaxViT cross-attention head size
    window: int = 8  # MaxViT window in the autoencoder

    @property
    def factor(self) -> int:
        """Spatial down-sampling factor of the latent (2 ** levels)."""
        return 2 ** len(self.ch_mult)


@dataclass(frozen=True)
class UNetConfig:
    """Denoising U-Net (openaimodel ``UNetModel`` with ``use_max_self_attn``)."""
    image_size: int = 8
    in_channels: int = 9
    out_channels: int = 3
    model_channels: int = 256
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_head_channels: int = 32

    @property
    def window(self) -> int:
        """MaxViT window of the U-Net: ``min(image_size // 4, 8)`` as in the original."""
        return min(self.image_size // 4, 8)

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * 4


@dataclass(frozen=True)
class DiffusionConfig:
    timesteps: int = 1000
    linear_start: float = 0.0015
    linear_end: float = 0.0195
    beta_schedule: str = "linear"
    channels: int = 3
    scale_factor: float = 1.0


@dataclass(frozen=True)
class LDMVFIConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    name: str = "custom"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def min_pad_unit(self) -> int:
        """Smallest frame-size multiple the architecture accepts (latent factor x windows)."""
        latent_mult = self.autoencoder.window
        u = self.unet.window * 2 ** (len(self.unet.channel_mult) - 1)
        while latent_mult % u:
            latent_mult += self.autoencoder.window
        return self.autoencoder.factor * latent_mult


def official_config() -> LDMVFIConfig:
    """``configs/ldm/ldmvfi-vqflow-f32-c256-concat_max.yaml`` of the original."""
    return LDMVFIConfig(name="official")


def tiny_config() -> LDMVFIConfig:
    """The narrow config of the parity fixtures (U-Net 32 channels, autoencoder ch 32)."""
    return LDMVFIConfig(unet=UNetConfig(model_channels=32), autoencoder=AutoencoderConfig(ch=32), name="tiny")


PRESETS = {"official": official_config, "tiny": tiny_config}


def _expect(params: dict, key: str, allowed: Any, where: str) -> None:
    if key in params and params[key] != allowed and not (isinstance(allowed, tuple) and params[key] in allowed):
        raise ConfigError(f"{where}: {key}={params[key]!r} is not supported by ldmvfi_fast "
                          f"(supported: {allowed!r})")


def _from_model_params(p: dict, name: str) -> LDMVFIConfig:
    target = p.get("__target__", "")
    if target and not target.endswith("LatentDiffusionVFI"):
        raise ConfigError(f"model.target {target!r} is not LatentDiffusionVFI")
    _expect(p, "concat_mode", True, "model.params")
    _expect(p, "conditioning_key", ("concat", None), "model.params")
    _expect(p, "cond_stage_config", "__is_first_stage__", "model.params")
    _expect(p, "parameterization", "eps", "model.params")
    _expect(p, "cond_stage_trainable", False, "model.params")
    if "num_timesteps_cond" in p and p["num_timesteps_cond"] not in (None, 1):
        raise ConfigError("model.params: num_timesteps_cond > 1 is not supported")
    u = dict(p.get("unet_config", {}).get("params", {}))
    for k, v in (("use_max_self_attn", True), ("use_spatial_transformer", False), ("use_scale_shift_norm", False),
                 ("resblock_updown", False), ("conv_resample", True), ("dims", 2), ("num_classes", None),
                 ("use_fp16", False), ("context_dim", None), ("n_embed", None), ("use_max_spatial_transfomer", False),
                 ("legacy", True)):
        _expect(u, k, v, "unet_config.params")
    if u.get("num_head_channels", -1) in (-1, None):
        raise ConfigError("unet_config.params: num_head_channels must be set (num_heads-only configs unsupported)")
    unet = UNetConfig(
        image_size=int(u.get("image_size", 8)), in_channels=int(u.get("in_channels", 9)),
        out_channels=int(u.get("out_channels", 3)), model_channels=int(u["model_channels"]),
        channel_mult=tuple(int(x) for x in u.get("channel_mult", (1, 2, 4, 8))),
        num_res_blocks=int(u["num_res_blocks"]),
        attention_resolutions=tuple(int(x) for x in u.get("attention_resolutions", ())),
        num_head_channels=int(u["num_head_channels"]))
    f = dict(p.get("first_stage_config", {}).get("params", {}))
    dd = dict(f.get("ddconfig", {}))
    for k, v in (("double_z", False), ("attn_type", "max"), ("cond_type", "max_cross_attn"), ("attn_resolutions", []),
                 ("in_channels", 3), ("out_ch", 3), ("give_pre_end", False), ("tanh_out", False),
                 ("resamp_with_conv", True), ("use_linear_attn", False)):
        _expect(dd, k, v, "first_stage_config.params.ddconfig")
    if dd.get("num_head_channels", 32) == -1:
        raise ConfigError("first_stage_config.params.ddconfig: num_head_channels=-1 is not supported")
    ae = AutoencoderConfig(
        ch=int(dd["ch"]), ch_mult=tuple(int(x) for x in dd["ch_mult"]), num_res_blocks=int(dd["num_res_blocks"]),
        z_channels=int(dd["z_channels"]), embed_dim=int(f.get("embed_dim", dd["z_channels"])),
        n_embed=int(f.get("n_embed", 8192)), decoder_head_channels=int(dd.get("num_head_channels", 32)))
    diff = DiffusionConfig(
        timesteps=int(p.get("timesteps", 1000)), linear_start=float(p.get("linear_start", 1e-4)),
        linear_end=float(p.get("linear_end", 2e-2)), beta_schedule=str(p.get("beta_schedule", "linear")),
        channels=int(p.get("channels", 3)), scale_factor=float(p.get("scale_factor", 1.0)))
    if diff.beta_schedule not in ("linear", "sqrt_linear", "sqrt", "cosine"):
        raise ConfigError(f"beta_schedule {diff.beta_schedule!r} unknown")
    if unet.in_channels != diff.channels + 2 * ae.embed_dim:
        raise ConfigError(f"unet in_channels={unet.in_channels} must equal channels + 2 * embed_dim "
                          f"= {diff.channels + 2 * ae.embed_dim} (concat conditioning)")
    return LDMVFIConfig(unet=unet, autoencoder=ae, diffusion=diff, name=name)


def load_yaml_config(path: str | Path) -> LDMVFIConfig:
    """Read an original LDMVFI YAML (``model: target: ...LatentDiffusionVFI, params: ...``)."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config {str(path)!r} is neither a preset ({', '.join(PRESETS)}) nor an existing YAML "
                          "file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise ConfigError(f"{path}: expected a top-level 'model:' mapping (an LDMVFI config)")
    model = doc["model"]
    params = dict(model.get("params") or {})
    params["__target__"] = model.get("target", "")
    try:
        return _from_model_params(params, name=path.stem)
    except KeyError as exc:
        raise ConfigError(f"{path}: missing required option {exc}") from None


def resolve_config(spec: str | Path | LDMVFIConfig | None) -> LDMVFIConfig | None:
    """A preset name (``official``, ``tiny``), a YAML path, a config, or None."""
    if spec is None or isinstance(spec, LDMVFIConfig):
        return spec
    s = str(spec)
    if s in PRESETS:
        return PRESETS[s]()
    return load_yaml_config(s)
