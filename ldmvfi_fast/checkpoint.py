"""Reading the official LDMVFI checkpoint safely and strictly.

* Loading never executes code from the file: ``torch.load(weights_only=True)``. A real
  Lightning checkpoint may also pickle training metadata (hyper-parameters, callbacks)
  whose classes the weights-only loader refuses; then a restricted unpickler is used that
  resolves only tensor-rebuilding functions and plain containers from an allow-list and
  turns every other global into an inert placeholder (nothing is imported or called), and
  a WARNING names those globals.
* Files that are not checkpoints (an image, a text file, ...) are recognised by their
  first bytes and refused with what they look like.
* Integrity without reading the whole file: zip checkpoints are memory-mapped; the zip
  directory and ``data.pkl`` are checked when read, and the CRC-32 of a tensor storage
  (zip member ``<archive>/data/<id>``) is checked only for the tensors that are used
  (:meth:`CheckpointStateDict.verify`): :func:`load_model` never reads the unused raw/EMA
  twin, the ``cond_stage_model`` duplicate or optimizer state.
* Keys are mapped by the checkpoint's own names: ``model.diffusion_model.*`` (raw U-Net),
  ``model_ema.*`` (EMA U-Net, dots removed), ``first_stage_model.*`` (autoencoder) and the
  12 schedule buffers. Known-unused keys are ignored on purpose: the never-called
  ``decoder.up.*.cross_attn.out_conv.*``, the ``cond_stage_model.*`` duplicate, loss
  weights, ``model_ema.decay``/``num_updates``. Everything else must match exactly:
  missing, unexpected or mis-shaped keys give one :class:`CheckpointError` listing them.
"""
from __future__ import annotations

import io
import logging
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from . import dtypes
from .errors import CheckpointError, OptionError  # noqa: F401 - re-exported
from .config import PRESETS, AutoencoderConfig, DiffusionConfig, LDMVFIConfig, UNetConfig, resolve_config
from .models.autoencoder import unused_checkpoint_shapes
from .models.ldmvfi import LDMVFI
from .sampling import SCHEDULE_BUFFERS

log = logging.getLogger(__name__)

OFFICIAL_CKPT_NAME = "ldmvfi-vqflow-f32-c256-concat_max.ckpt"
OFFICIAL_CKPT_HELP = (
    f"The official checkpoint is {OFFICIAL_CKPT_NAME}, published by the LDMVFI authors: "
    "see the README of github.com/danier97/LDMVFI (section 'Pre-trained model') for the download link. "
    "Pass it with --ckpt PATH or set LDMVFI_FAST_CKPT=PATH.")

UNET_PREFIX = "model.diffusion_model."
EMA_PREFIX = "model_ema."
AE_PREFIX = "first_stage_model."
COND_PREFIX = "cond_stage_model."
EMA_META = ("model_ema.decay", "model_ema.num_updates")
_UNUSED_AE = re.compile(r"^decoder\.up\.\d+\.cross_attn\.out_conv\.")
_LOSS = re.compile(r"^(first_stage_model\.)?loss\.")
#: top-level key of a distilled student's record (beside ``state_dict``)
DISTILLATION_KEY = "distillation"
DISTILL_METHODS = ("progressive", "consistency")
DISTILL_SAMPLERS = ("ddim", "consistency")


# ---------------------------------------------------------------------------------------------
# reading the file


class _Placeholder:
    """Stands in for any non-allow-listed class in pickled metadata; runs no code."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    # pickled dict / list subclasses (Lightning's AttributeDict hyper-parameters) fill
    # themselves with SETITEMS / APPENDS
    def __setitem__(self, key, value):
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value):
        self.__dict__.setdefault("list", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("list", []).extend(values)

    def __call__(self, *args, **kwargs):  # a pickled function "called" by REDUCE
        return _Placeholder(*args, **kwargs)


def _placeholder_class(module: str, name: str):
    return type(name, (_Placeholder,), {"__module__": f"<placeholder {module}>"})


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
    ("builtins", "complex"): complex, ("builtins", "bytearray"): bytearray,
}


class _RestrictedUnpickler(pickle.Unpickler):
    seen: set = set()  # names turned into placeholders by the last restricted load

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and (name.endswith("Storage") or name in ("float32", "float16", "bfloat16", "int64")):
            return getattr(torch, name)
        if module == "torch" and name == "device":
            return torch.device
        _RestrictedUnpickler.seen.add(f"{module}.{name}")
        return _placeholder_class(module, name)


class _RestrictedPickleModule:
    """A ``pickle_module`` for ``torch.load`` whose unpickler imports nothing."""
    Unpickler = _RestrictedUnpickler
    load = pickle.load
    __name__ = "ldmvfi_fast_restricted_pickle"


#: leading bytes of files people pass by mistake -> what they are (for the error message)
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"), (b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"), (b"RIFF", "a RIFF file (AVI/WAV/WebP)"),
    (b"\x93NUMPY", "a NumPy .npy array"), (b"\x89HDF", "an HDF5 file"), (b"\x7fELF", "an executable (ELF)"),
    (b"<", "an HTML/XML page (a download that returned a web page?)"),
)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _sniff(head: bytes) -> str | None:
    """What a file whose first bytes are ``head`` looks like, when it is not a checkpoint.

    None for a zip archive (the current ``torch.save`` format) or a pickle (the legacy
    format, first byte 0x80 = pickle protocol >= 2).
    """
    if head.startswith(_ZIP_MAGIC) or head[:1] == b"\x80":
        return None
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp":
        return "an MP4/MOV video"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file (not supported: convert it with torch.save)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "an unknown binary format"
    return "a text file" if all(c.isprintable() or c in "\r\n\t" for c in text) else "an unknown format"


class _StorageRef:
    """What a tensor is while scanning ``data.pkl``: the key of the storage it lives in."""

    def __init__(self, key: str):
        self.key = key


def _storage_of_tensor(storage, *args, **kwargs):
    return storage


def _parameter_data(data, *args, **kwargs):
    return data


class _StorageKeyScanner(_RestrictedUnpickler):
    """Unpickles ``data.pkl`` reading no tensor data: every tensor becomes the
    :class:`_StorageRef` of its storage. Same allow-list as the restricted loader."""

    def persistent_load(self, pid):  # ('storage', storage_type, key, location, numel)
        return _StorageRef(str(pid[2]))

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _storage_of_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _parameter_data
        if (module, name) in _ALLOWED or module == "torch":
            return super().find_class(module, name)
        return _placeholder_class(module, name)  # never imported, never called


class CheckpointStateDict(dict):
    """The ``state_dict`` of a checkpoint file (key -> tensor), memory-mapped from a zip
    checkpoint, with CRC checks of only the zip members that are actually used.

    :meth:`verify` checks the CRC-32 of the storages (zip members ``<archive>/data/<id>``)
    behind the given keys, each member at most once; nothing else of the file is read.
    A legacy (non-zip) checkpoint has no per-member CRC: :meth:`verify` does nothing.
    """

    path: Path
    #: state-dict key -> zip member holding its storage (empty for a legacy file)
    members: dict[str, str]
    #: members whose CRC has been checked
    verified: set[str]

    def verify(self, keys=None) -> None:
        """CRC-check the storages of ``keys`` (default: every key). Raises CheckpointError."""
        if not getattr(self, "members", None):
            return
        keys = self.keys() if keys is None else keys
        todo = []
        for k in keys:
            member = self.members.get(k)
            if member is None:  # storage not found by the scan: check every data member
                todo = sorted(set(self.members.values()) | set(self._all_data_members))
                break
            todo.append(member)
        todo = [m for m in dict.fromkeys(todo) if m not in self.verified]
        if not todo:
            return
        try:
            with zipfile.ZipFile(self.path) as zf:
                for member in todo:
                    _crc_check(zf, member, self.path)
                    self.verified.add(member)
        except zipfile.BadZipFile as exc:
            raise CheckpointError(f"checkpoint {self.path} is corrupt or truncated: {exc}") from None
        except OSError as exc:
            raise CheckpointError(f"checkpoint {self.path} cannot be read: {exc}") from None

    _all_data_members: tuple[str, ...] = ()
    #: the top-level ``"distillation"`` record of a student checkpoint (None for a teacher)
    distillation: dict | None = None

    def __reduce_ex__(self, protocol):
        # saved again with torch.save, it is a plain OrderedDict (loadable with weights_only)
        return (OrderedDict, (), None, None, iter(self.items()))


def _crc_check(zf: zipfile.ZipFile, member: str, path: Path) -> None:
    """Read one zip member to its end; zipfile compares its CRC-32 at the end."""
    try:
        with zf.open(member) as fh:
            while fh.read(1 << 22):
                pass
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: member {member} fails its CRC check ({exc})") from None
    except KeyError:
        raise CheckpointError(f"checkpoint {path} is corrupt: member {member} is missing") from None


def _scan_storage_members(zf: zipfile.ZipFile, path: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """(state-dict key -> zip member of its storage, all data members) of a zip checkpoint.

    Reads (and CRC-checks) only ``data.pkl``.
    """
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
        raise CheckpointError(f"checkpoint {path} is a zip archive but not a PyTorch checkpoint "
                              f"(no single data.pkl among its {len(names)} members)")
    prefix = pkl[0][: -len("data.pkl")]
    data_members = tuple(n for n in names if n.startswith(prefix + "data/"))
    try:
        raw = zf.read(pkl[0])  # checks the CRC of data.pkl
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: member {pkl[0]} fails its CRC check ({exc})") from None
    try:
        obj = _StorageKeyScanner(io.BytesIO(raw)).load()
    except Exception:  # noqa: BLE001 - torch.load reports unreadable pickles; verify() then checks all
        return {}, data_members
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    members = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if isinstance(v, _StorageRef) and prefix + "data/" + v.key in zf.NameToInfo:
                members[k] = prefix + "data/" + v.key
    return members, data_members


def read_checkpoint(path: str | Path, *, verify: bool = True) -> CheckpointStateDict:
    """Return the ``state_dict`` of a checkpoint file (a Lightning dict or a bare state dict).

    Zip checkpoints (the ``torch.save`` format) are memory-mapped: tensor data is read on
    use, and the rest of a Lightning file (optimizer state...) is never read. Integrity:
    the zip directory and ``data.pkl`` are checked on reading; with ``verify`` (default)
    the CRC-32 of every storage the state dict uses is checked too (each storage once);
    ``verify=False`` leaves that to :meth:`CheckpointStateDict.verify` on the keys the
    caller uses (:func:`load_model` checks only the tensors it loads).

    Raises:
        CheckpointError: missing, empty, not a PyTorch checkpoint (with what it looks like),
            corrupt or truncated, or not holding a state dict.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}. {OFFICIAL_CKPT_HELP}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the download or copy did not complete")
    with open(path, "rb") as fh:
        head = fh.read(64)
    what = _sniff(head)
    if what is not None:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it looks like {what})")
    is_zip = head.startswith(_ZIP_MAGIC)
    members: dict[str, str] = {}
    data_members: tuple[str, ...] = ()
    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                members, data_members = _scan_storage_members(zf, path)
        except zipfile.BadZipFile as exc:
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {exc}") from None
    # zip checkpoints are memory-mapped: tensors are read on use
    mmap = {"mmap": True} if is_zip else {}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, **mmap)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower() and "weights_only" not in str(exc):
            raise CheckpointError(f"checkpoint {path} cannot be read (corrupt or not a PyTorch file): {exc}") from None
        _RestrictedUnpickler.seen = set()
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule,
                             **mmap)
        except Exception as exc2:  # noqa: BLE001 - any failure means an unreadable file
            raise CheckpointError(f"checkpoint {path} cannot be read safely: {type(exc2).__name__}: {exc2}") from None
        log.warning("checkpoint %s pickles classes or functions outside the allow-list: %s; they were read as "
                    "inert placeholders (nothing was imported or executed)",
                    path, ", ".join(sorted(_RestrictedUnpickler.seen)))
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/EOFError/... on bad files
        hint = "" if is_zip else " (legacy format: truncated, or not a PyTorch checkpoint)"
        raise CheckpointError(f"checkpoint {path} cannot be read: {type(exc).__name__}: {exc}{hint}") from None
    sd = CheckpointStateDict(extract_state_dict(obj, str(path)))
    sd.path, sd.members, sd.verified, sd._all_data_members = path, members, set(), data_members
    sd.distillation = obj.get(DISTILLATION_KEY) if isinstance(obj, Mapping) else None
    if verify:
        sd.verify()
    return sd


def extract_state_dict(obj, where: str = "checkpoint") -> dict[str, Tensor]:
    """``obj['state_dict']`` for a Lightning checkpoint, ``obj`` for a bare state dict."""
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{where} holds no state dict (got {type(obj).__name__})")
    sd = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if len(sd) != len(obj):
        bad = [k for k, v in obj.items() if not isinstance(v, Tensor)][:5]
        raise CheckpointError(f"{where}: state dict entries that are not tensors: {bad}")
    return sd


# ---------------------------------------------------------------------------------------------
# key layout


def ema_key(unet_param: str) -> str:
    """``input_blocks.0.0.weight`` -> ``model_ema.diffusion_modelinput_blocks00weight``."""
    return EMA_PREFIX + ("diffusion_model." + unet_param).replace(".", "")


def _looks_like_ldmvfi(sd: Mapping[str, Tensor]) -> bool:
    return any(k.startswith(UNET_PREFIX) for k in sd) and any(k.startswith(AE_PREFIX) for k in sd)


def is_ignored(key: str) -> bool:
    """Keys present in official checkpoints that inference does not use, on purpose."""
    if key.startswith(COND_PREFIX) or key in EMA_META or _LOSS.match(key):
        return True
    return key.startswith(AE_PREFIX) and bool(_UNUSED_AE.match(key[len(AE_PREFIX):]))


def _plan_keys(sd: Mapping[str, Tensor], model: LDMVFI, use_ema: bool | None
               ) -> tuple[dict[str, str], set[str], bool]:
    """``(want, used, use_ema)``: checkpoint key -> model key to load; keys present on
    purpose (loaded, or the unused raw/EMA twin); whether the EMA U-Net is loaded."""
    unet_params = [n for n, _ in model.unet.named_parameters()]
    has_ema = any(ema_key(n) in sd for n in unet_params)
    if use_ema is None:
        use_ema = has_ema
        if not has_ema:
            log.warning("checkpoint has no EMA U-Net weights (model_ema.*): using the raw weights")
    want: dict[str, str] = {}  # checkpoint key -> model key
    for n in model.first_stage.state_dict():
        want[AE_PREFIX + n] = "first_stage." + n
    for n in model.unet.state_dict():
        want[(ema_key(n) if use_ema and n in unet_params else UNET_PREFIX + n)] = "unet." + n
    for n in SCHEDULE_BUFFERS:
        want[n] = n
    used = set(want)
    if use_ema:  # the raw weights are present too and deliberately unused
        used |= {UNET_PREFIX + n for n in unet_params}
    else:
        used |= {ema_key(n) for n in unet_params}
    return want, used, use_ema


def map_state_dict(sd: Mapping[str, Tensor], model: LDMVFI, use_ema: bool | None = None
                   ) -> tuple[dict[str, Tensor], str, list[str], list[str], list[str]]:
    """Map checkpoint keys to ``model.state_dict()`` keys.

    Returns ``(mapped, unet_weights, missing, unexpected, mismatched)`` where
    ``unet_weights`` is ``"ema"`` or ``"raw"``.
    """
    want, used, use_ema = _plan_keys(sd, model, use_ema)
    target = model.state_dict()
    mapped, missing, mismatched = {}, [], []
    for ck, mk in want.items():
        if ck not in sd:
            missing.append(ck)
            continue
        t = sd[ck]
        if tuple(t.shape) != tuple(target[mk].shape):
            mismatched.append(f"{ck}: checkpoint {tuple(t.shape)} vs model {tuple(target[mk].shape)}")
            continue
        mapped[mk] = t
    unexpected = [k for k in sd if k not in used and not is_ignored(k)]
    return mapped, ("ema" if use_ema else "raw"), missing, unexpected, mismatched


def _fmt(title: str, items: list[str], limit: int = 12) -> str:
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title} ({len(items)}): " + "; ".join(items[:limit]) + more


def expected_checkpoint_keys(cfg: LDMVFIConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every key of an official-layout checkpoint for ``cfg``: key -> (shape, dtype name)."""
    with torch.device("meta"):
        model = LDMVFI(cfg)
    out: dict[str, tuple[tuple[int, ...], str]] = {}

    def dt(t: Tensor) -> str:
        return str(t.dtype).replace("torch.", "")

    for n in SCHEDULE_BUFFERS:
        out[n] = ((cfg.diffusion.timesteps,), "float32")
    for n, t in model.unet.state_dict().items():
        out[UNET_PREFIX + n] = (tuple(t.shape), dt(t))
    out["model_ema.decay"] = ((), "float32")
    out["model_ema.num_updates"] = ((), "int32")
    for n, p in model.unet.named_parameters():
        out[ema_key(n)] = (tuple(p.shape), dt(p))
    ae = {n: (tuple(t.shape), dt(t)) for n, t in model.first_stage.state_dict().items()}
    ae.update({n: (s, "float32") for n, s in unused_checkpoint_shapes(cfg.autoencoder).items()})
    for prefix in (AE_PREFIX, COND_PREFIX):
        for n, v in ae.items():
            out[prefix + n] = v
    return out


# ---------------------------------------------------------------------------------------------
# config inference


def _count(sd: Mapping[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def infer_config(sd: Mapping[str, Tensor]) -> LDMVFIConfig:
    """Build the config a checkpoint was trained with, from its tensor shapes."""
    if not _looks_like_ldmvfi(sd):
        raise CheckpointError("this is not an LDMVFI checkpoint: it has no 'model.diffusion_model.*' and "
                              "'first_stage_model.*' weights")
    try:
        A = AE_PREFIX + "encoder."
        ch = sd[A + "conv_in.weight"].shape[0]
        levels = _count(sd, re.escape(A) + r"down\.(\d+)\.downsample\.conv\.weight")
        nrb = _count(sd, re.escape(A) + r"down\.0\.block\.(\d+)\.conv1\.weight")
        ch_mult = tuple(sd[f"{A}down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels))
        rel = sd[AE_PREFIX + "decoder.up.0.cross_attn.attn_block.fn.rel_pos_bias.weight"]
        win = (int(round(rel.shape[0] ** 0.5)) + 1) // 2
        ae = AutoencoderConfig(
            ch=ch, ch_mult=ch_mult, num_res_blocks=nrb, in_channels=sd[A + "conv_in.weight"].shape[1],
            z_channels=sd[A + "conv_out.weight"].shape[0], embed_dim=sd[AE_PREFIX + "quant_conv.weight"].shape[0],
            n_embed=sd[AE_PREFIX + "quantize.embedding.weight"].shape[0],
            decoder_head_channels=(ch * ch_mult[0]) // rel.shape[1], window=win)
        U = UNET_PREFIX
        mc, cin = sd[U + "input_blocks.0.0.weight"].shape[:2]
        nblocks = _count(sd, re.escape(U) + r"input_blocks\.(\d+)\.")
        mults, counts, attn_ds, ds, cur = [], [], [], 1, 0
        heads_rel = None
        for b in range(1, nblocks):
            if U + f"input_blocks.{b}.0.op.weight" in sd:
                counts.append(cur)
                cur, ds = 0, ds * 2
                continue
            out_ch = sd[U + f"input_blocks.{b}.0.in_layers.2.weight"].shape[0]
            if not mults or len(mults) == len(counts):
                mults.append(out_ch // mc)
            cur += 1
            rk = U + f"input_blocks.{b}.1.attn_block.fn.rel_pos_bias.weight"
            if rk in sd:
                if ds not in attn_ds:
                    attn_ds.append(ds)
                heads_rel = (out_ch, sd[rk].shape)
        counts.append(cur)
        if heads_rel is None:
            rk = U + "middle_block.1.attn_block.fn.rel_pos_bias.weight"
            heads_rel = (sd[U + "middle_block.0.in_layers.2.weight"].shape[0], sd[rk].shape)
        (c_at, (rows, heads)) = heads_rel
        uwin = (int(round(rows ** 0.5)) + 1) // 2
        unet = UNetConfig(image_size=4 * uwin, in_channels=cin, out_channels=sd[U + "out.2.weight"].shape[0],
                          model_channels=mc, channel_mult=tuple(mults), num_res_blocks=counts[0],
                          attention_resolutions=tuple(sorted(attn_ds, reverse=True)),
                          num_head_channels=c_at // heads)
        betas = sd.get("betas")
        diff = DiffusionConfig(timesteps=int(betas.shape[0]) if betas is not None else 1000)
        if betas is not None:
            diff = DiffusionConfig(timesteps=int(betas.shape[0]), linear_start=round(float(betas[0]), 6),
                                   linear_end=round(float(betas[-1]), 6))
    except (KeyError, IndexError, ZeroDivisionError) as exc:
        raise CheckpointError(f"cannot infer the model configuration from the checkpoint (missing {exc}); "
                              "pass --config") from None
    cfg = LDMVFIConfig(unet=unet, autoencoder=ae, diffusion=diff, name="inferred")
    for make in PRESETS.values():
        p = make()
        if (p.unet, p.autoencoder, p.diffusion.timesteps) == (cfg.unet, cfg.autoencoder, diff.timesteps):
            return p
    return cfg


# ---------------------------------------------------------------------------------------------
# device and dtype: checked before anything loads


#: dtype names and aliases the command line's ``--dtype`` takes -> the dtype (from :mod:`ldmvfi_fast.dtypes`)
DTYPE_NAMES = {alias: getattr(torch, canon) for alias, canon in dtypes.ALIASES.items()}
#: the dtypes each device type runs. float16 is refused on the CPU: PyTorch's CPU float16
#: convolutions and matmuls are about 200x slower than float32 (measured on 2 cores, torch 2.13:
#: a 128-channel 3x3 convolution at 64x112 takes 2.2 s in float16, 11 ms in float32, 5.5 ms
#: in bfloat16). bfloat16 runs on the CPU and is the fast choice there: measured with
#: ``benchmarks/latency.py --dtype bfloat16`` (float32 in the same run, 2 quiet cores with
#: AVX512-BF16, precision policy in force), official preset at 256x448: encode 1.77x, U-Net
#: step 1.70x, decode 1.94x, a 4-step frame 1.86x faster, peak memory 1.2 GB instead of 2.1 GB;
#: tiny preset 1.73x per frame (its small U-Net step is overhead-bound: 0.73x). Its frames are
#: 64-66 dB from float32's (``benchmarks/precision.py``). float32 stays the default: it is the
#: one that reproduces the original code to ~5e-7. The first dtype of each device is the default.
DEVICE_DTYPES = {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "float16", "bfloat16")}
#: said when a dtype is refused on a device, after the recommended dtype
_DEVICE_NOTE = {"cpu": ("bfloat16", " (~1.9x faster on CPUs with AVX512-BF16, frames ~65 dB from float32's: "
                                    "benchmarks/latency.py, benchmarks/precision.py)")}


def _note(device_type: str, opt) -> str:
    alt = _DEVICE_NOTE.get(device_type)
    return f" or {opt('dtype', alt[0])}{alt[1]}" if alt else ""


_dtype_name = dtypes.name


def check_device_dtype(device=None, dtype=None, *, cli: bool = False) -> tuple[torch.device, torch.dtype]:
    """``(device, dtype)`` checked together, before anything loads: the one place that decides
    which combinations run (:data:`DEVICE_DTYPES`).

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a :class:`torch.device`, or None for
            ``cuda`` when a CUDA device is visible, else ``cpu``.
        dtype: a :class:`torch.dtype` or a name of :data:`DTYPE_NAMES`; None: float32.
        cli: word the messages with the command line's options (``--device cpu``) instead of
            the keyword arguments (``device='cpu'``).

    Raises:
        OptionError: an unknown device or dtype, a CUDA device where none is visible (or an index
            past the last one), a dtype the device does not run (float16 on the CPU); the message
            says what works.
    """
    def opt(name, value):
        return f"--{name} {value}" if cli else f"{name}={value!r}"

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise OptionError(f"unknown device {device!r}: use {opt('device', 'cpu')}, {opt('device', 'cuda')} or "
                          f"{opt('device', 'cuda:N')}") from None
    if dev.type not in DEVICE_DTYPES:
        raise OptionError(f"device {str(dev)!r} is not supported: ldmvfi_fast runs on cpu or cuda[:N] "
                          f"({opt('device', 'cpu')} or {opt('device', 'cuda')})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
                why = f"torch {torch.__version__} is a CPU build"
            else:
                import os

                visible = os.environ.get("CUDA_VISIBLE_DEVICES")
                why = (f"no GPU visible to torch {torch.__version__}"
                       + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""))
            raise OptionError(f"no CUDA device here ({why}): use {opt('device', 'cpu')}")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise OptionError(f"device {str(dev)!r} does not exist: this machine has {n} CUDA device"
                              f"{'s' if n != 1 else ''} (cuda:0{f' .. cuda:{n - 1}' if n > 1 else ''})")
    dt = torch.float32 if dtype is None else dtypes.to_torch(dtype)  # OptionError for an unknown one
    works = DEVICE_DTYPES[dev.type]
    if _dtype_name(dt) not in works:
        others = [t for t, ds in DEVICE_DTYPES.items() if _dtype_name(dt) in ds]
        why = (" (PyTorch's CPU float16 kernels are about 200x slower than float32)"
               if dt == torch.float16 and dev.type == "cpu" else "")
        raise OptionError(f"{_dtype_name(dt)} on {dev.type} is not supported{why}: on {dev.type} use "
                          f"{opt('dtype', works[0])}{_note(dev.type, opt)}; {_dtype_name(dt)} runs on "
                          f"{' or '.join(others)}")
    return dev, dt


# ---------------------------------------------------------------------------------------------
# loading


def load_model(ckpt: str | Path | Mapping[str, Tensor], config=None, *, use_ema: bool | None = None,
               device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LDMVFI:
    """Build an :class:`LDMVFI` and load a checkpoint into it, strictly.

    Args:
        ckpt: path of a ``.ckpt`` file, or an already-read state dict.
        config: preset name (``official``/``tiny``), original YAML path, :class:`LDMVFIConfig`,
            or None to infer it from the checkpoint's shapes.
        use_ema: EMA U-Net weights (default when present, as the official scripts), or raw.
        device, dtype: where and in which precision the model runs, checked by
            :func:`check_device_dtype` before the file is read (float16 on CUDA only).

    Raises:
        OptionError: a device or dtype that cannot run (see :func:`check_device_dtype`).
        CheckpointError: a file that is not a usable LDMVFI checkpoint.
    """
    device, dtype = check_device_dtype(device, dtype)
    # CRC checks only of the storages loaded below (not the unused raw/EMA twin, the
    # cond_stage_model duplicate or optimizer state)
    sd = read_checkpoint(ckpt, verify=False) if isinstance(ckpt, (str, Path)) else extract_state_dict(ckpt)
    record = getattr(sd, "distillation", None) if isinstance(ckpt, (str, Path)) else (
        ckpt.get(DISTILLATION_KEY) if isinstance(ckpt, Mapping) and "state_dict" in ckpt else None)
    if not _looks_like_ldmvfi(sd):
        raise CheckpointError("this is not an LDMVFI checkpoint: it has no 'model.diffusion_model.*' and "
                              f"'first_stage_model.*' weights (first keys: {list(sd)[:4]})")
    cfg = resolve_config(config) or infer_config(sd)
    with torch.device("meta"):
        model = LDMVFI(cfg)
    mapped, weights, missing, unexpected, mismatched = map_state_dict(sd, model, use_ema)
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append(_fmt("shapes that differ between checkpoint and config", mismatched))
        if missing:
            parts.append(_fmt("missing keys", missing))
        if unexpected:
            parts.append(_fmt("unexpected keys", unexpected))
        raise CheckpointError(f"checkpoint does not fit the config '{cfg.name}': " + " | ".join(parts))
    if isinstance(sd, CheckpointStateDict):
        want, _, _ = _plan_keys(sd, model, weights == "ema")
        sd.verify(k for k in want if k in sd)
    model.load_state_dict(mapped, strict=True, assign=True)
    model.unet_weights = weights
    if record is not None:
        record = validate_distillation(record, int(cfg.diffusion.timesteps), str(ckpt) if isinstance(ckpt, (str, Path))
                                       else "checkpoint")
        model.distillation = record
        log.info("distilled student: %s, %d %s steps, %s prediction", record["method"], record["steps"],
                 record["sampler"], record["prediction"])
    model.eval().requires_grad_(False)
    log.info("loaded LDMVFI (%s config, %s U-Net weights)", cfg.name, weights)
    return model.to(device=device, dtype=dtype)


def checkpoint_info(path: str | Path) -> dict:
    """Summary of a checkpoint: config detected, parameter counts, EMA present."""
    sd = read_checkpoint(path, verify=False)
    sd.verify([k for k in SCHEDULE_BUFFERS if k in sd])  # the only values read (config inference)
    groups = {"unet (model.diffusion_model.*)": UNET_PREFIX, "unet EMA (model_ema.*)": EMA_PREFIX,
              "autoencoder (first_stage_model.*)": AE_PREFIX, "cond stage duplicate (cond_stage_model.*)": COND_PREFIX}
    counts = {g: sum(t.numel() for k, t in sd.items() if k.startswith(p) and k not in EMA_META)
              for g, p in groups.items()}
    info = {"path": str(path), "keys": len(sd), "parameters": counts,
            "total_parameters": sum(t.numel() for t in sd.values()),
            "ema_present": any(k.startswith(EMA_PREFIX) and k not in EMA_META for k in sd),
            "dtypes": sorted({str(t.dtype).replace("torch.", "") for t in sd.values()})}
    try:
        cfg = infer_config(sd)
        info["config"] = cfg.name
        info["config_detail"] = cfg.to_dict()
    except CheckpointError as exc:
        info["config"] = f"unknown ({exc})"
    return info


# ---------------------------------------------------------------------------------------------
# distilled students


def validate_distillation(record, num_train_steps: int = 1000, where: str = "checkpoint") -> dict:
    """Check a student's ``"distillation"`` record; return a plain copy.

    Required: ``method`` (progressive | consistency), ``prediction`` (eps | v | x0), ``steps``
    (K >= 1), ``timesteps`` (K descending ints in [0, T)), ``sampler`` (ddim | consistency).
    Optional: ``unet_output`` (what the raw U-Net output means; default ``prediction``) and
    ``boundary`` (``{"sigma_data", "timestep_scaling"}``: consistency boundary scaling), plus
    provenance (``teacher_weights_hash``, ``config``, ``toolkit_version``...), kept as is.
    """
    def bad(msg):
        return CheckpointError(f"{where}: invalid distillation record: {msg}")

    if not isinstance(record, Mapping):
        raise bad(f"expected a mapping, got {type(record).__name__}")
    rec = dict(record)
    for k in ("method", "prediction", "steps", "timesteps", "sampler"):
        if k not in rec:
            raise bad(f"missing field {k!r}")
    if rec["method"] not in DISTILL_METHODS:
        raise bad(f"method {rec['method']!r} is not one of {DISTILL_METHODS}")
    if rec["sampler"] not in DISTILL_SAMPLERS:
        raise bad(f"sampler {rec['sampler']!r} is not one of {DISTILL_SAMPLERS}")
    for k in ("prediction", "unet_output"):
        if k in rec and rec[k] not in ("eps", "v", "x0"):
            raise bad(f"{k} {rec[k]!r} is not one of ('eps', 'v', 'x0')")
    steps, ts = rec["steps"], rec["timesteps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise bad(f"steps must be a positive integer, got {steps!r}")
    if (not isinstance(ts, (list, tuple)) or len(ts) != steps
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < num_train_steps for x in ts)
            or any(a <= b for a, b in zip(ts, ts[1:]))):
        raise bad(f"timesteps must be {steps} descending integers in [0, {num_train_steps}), got {ts!r}")
    rec["timesteps"] = [int(x) for x in ts]
    b = rec.get("boundary")
    if b is not None:
        if not isinstance(b, Mapping) or not all(isinstance(b.get(k), (int, float)) and not isinstance(b.get(k), bool)
                                                 for k in ("sigma_data", "timestep_scaling")):
            raise bad(f"boundary must hold numbers sigma_data and timestep_scaling, got {b!r}")
        rec["boundary"] = {"sigma_data": float(b["sigma_data"]), "timestep_scaling": float(b["timestep_scaling"])}
    return rec
