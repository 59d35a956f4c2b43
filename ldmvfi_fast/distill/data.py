"""Training triplets (frame0, middle, frame1) as latents of the frozen encoder.

Sources:

* the Vimeo-90K triplet layout: ``ROOT/tri_trainlist.txt`` (lines ``00001/0001``) and
  ``ROOT/sequences/00001/0001/im1.png, im2.png, im3.png``;
* videos: one video file, or a folder of them (searched recursively; ``.mp4 .mkv .mov .avi
  .webm .m4v``); every run of three consecutive frames is a triplet (the bundled test clips:
  :func:`ldmvfi_fast.video.bundled_clip`).

Each frame is centre-cropped to a multiple of the model's pad unit (256) when it is at least
that large, else reflect-padded up to it, and encoded once by the frozen encoder: the
conditioning ``cond = cat(z0, z1)`` (B, 6, h, w) and the middle frame's latent ``x0`` (B, 3, h, w)
(h = H / 32). The latents are kept in memory and, with ``cache_dir``, on disk in a file keyed by
the encoder's weights hash, the source files (paths, sizes, times) and the frame preparation,
so a second run (or a resumed one) does not encode again.

Augmentations are applied to the latents per batch: a random crop on the latent grid (``crop``
frame pixels / 32), horizontal and vertical flips, temporal reversal (swapping z0 and z1, exact).
Crops and flips of latents stand in for latents of cropped / flipped frames (the encoder is
convolutional, so they differ only near the borders); documented, not measured.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import MediaError, OptionError
from ..video import IMAGE_EXTS, VIDEO_EXTS, read_image, read_video, to_tensor
from .student import atomic_torch_save

log = logging.getLogger(__name__)

__all__ = ["TripletLatents", "open_source", "vimeo_triplets", "video_triplets", "encode_triplets", "load_triplets",
           "sample_batch"]


@dataclass
class TripletLatents:
    """Encoded frames and the triplets over them.

    Attributes:
        latents: one (C, h, w) float32 latent per frame (sizes may differ between videos).
        triplets: (N, 3) int64 indices into ``latents``: frame0, middle, frame1.
        key: the cache key (what made these latents).
    """
    latents: list[Tensor]
    triplets: Tensor
    key: str

    def __len__(self) -> int:
        return int(self.triplets.shape[0])


@dataclass
class _Source:
    frames: list  # callables -> (H, W, 3) uint8, or arrays
    triplets: list[tuple[int, int, int]]
    signature: list  # what identifies the files


def vimeo_triplets(root: str | Path, listfile: str = "tri_trainlist.txt", limit: int | None = None) -> _Source:
    """Triplets of the Vimeo-90K triplet layout (``tri_trainlist.txt``, ``sequences/``)."""
    root = Path(root)
    lst = root / listfile
    if not lst.is_file():
        raise MediaError(f"{root} is not a Vimeo-90K triplet folder: {listfile} not found "
                         "(expected tri_trainlist.txt and sequences/)")
    names = [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
    frames, triplets, sig = [], [], []
    for name in names:
        seq = root / "sequences" / name
        ims = [seq / f"im{i}.png" for i in (1, 2, 3)]
        if not all(p.is_file() for p in ims):
            log.warning("vimeo: skipping %s (im1/im2/im3.png missing)", seq)
            continue
        base = len(frames)
        for p in ims:
            frames.append(p)
            st = p.stat()
            sig.append([str(p), st.st_size, st.st_mtime_ns])
        triplets.append((base, base + 1, base + 2))
        if limit is not None and len(triplets) >= limit:
            break
    if not triplets:
        raise MediaError(f"{root}: no triplets found ({len(names)} names in {listfile}, none with "
                         "sequences/<name>/im1.png, im2.png, im3.png)")
    return _Source(frames, triplets, sig)


def video_triplets(path: str | Path, max_frames: int | None = None, start_frame: int = 0) -> _Source:
    """Triplets of consecutive frames of one video or of every video in a folder (recursive)."""
    path = Path(path)
    if path.is_file():
        videos = [path]
    elif path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
        if not videos:
            images = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS]
            hint = (" (it holds images: for Vimeo-90K pass --vimeo with tri_trainlist.txt and sequences/)"
                    if images else "")
            raise MediaError(f"{path}: no videos found ({', '.join(VIDEO_EXTS)}), so no triplets{hint}")
    else:
        raise MediaError(f"data not found: {path}")
    frames, triplets, sig = [], [], []
    for v in videos:
        stop = None if max_frames is None else start_frame + max_frames
        arrs = [a for i, a in enumerate(read_video(v, stop)) if i >= start_frame]
        base = len(frames)
        frames.extend(arrs)
        triplets.extend((base + i, base + i + 1, base + i + 2) for i in range(len(arrs) - 2))
        st = v.stat()
        sig.append([str(v.resolve()), st.st_size, st.st_mtime_ns, start_frame, max_frames])
    if not triplets:
        raise MediaError(f"{path}: no triplets (a video needs at least 3 frames)")
    return _Source(frames, triplets, sig)


def _prepare(img: np.ndarray, unit: int) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H', W') in [-1, 1], H', W' multiples of ``unit`` (centre crop, else reflect pad)."""
    x = to_tensor(img)
    H, W = x.shape[-2:]
    th, tw = (H // unit) * unit or unit, (W // unit) * unit or unit
    if th <= H and tw <= W:
        top, left = (H - th) // 2, (W - tw) // 2
        return x[:, :, top:top + th, left:left + tw]
    x = x[:, :, :min(H, th), :min(W, tw)]
    while x.shape[-2] < th or x.shape[-1] < tw:
        ph, pw = min(th - x.shape[-2], x.shape[-2] - 1), min(tw - x.shape[-1], x.shape[-1] - 1)
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x


def _cache_key(source: _Source, encoder_hash: str, unit: int) -> str:
    h = hashlib.sha256(json.dumps({"encoder": encoder_hash, "unit": unit, "files": source.signature,
                                   "triplets": len(source.triplets), "format": 1}).encode())
    return h.hexdigest()[:24]


def encode_triplets(model, source: _Source, *, encoder_hash: str, cache_dir: str | Path | None = None,
                    device: str | torch.device = "cpu", progress: bool = True) -> TripletLatents:
    """Encode every frame of ``source`` with the frozen ``model`` (an LDMVFI), or read the cache."""
    unit = model.cfg.min_pad_unit()
    key = _cache_key(source, encoder_hash, unit)
    cache = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        if cache_dir.exists() and not cache_dir.is_dir():
            raise MediaError(f"--cache-latents {cache_dir} exists and is not a folder")
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache = cache_dir / f"latents-{key}.pt"
        if cache.is_file():
            obj = torch.load(cache, map_location="cpu", weights_only=True)
            if obj.get("key") == key:
                log.info("latents read from the cache %s (%d triplets)", cache, len(obj["triplets"]))
                return TripletLatents(list(obj["latents"]), obj["triplets"], key)
            log.warning("cache file %s does not match its name; encoding again", cache)
    from tqdm.auto import tqdm

    sf = float(model.cfg.diffusion.scale_factor)
    latents = []
    with torch.no_grad():
        for f in tqdm(source.frames, desc="encoding frames", unit="frame", disable=not progress):
            img = read_image(f) if isinstance(f, Path) else f
            z, _ = model.encode(_prepare(img, unit).to(device, next(model.parameters()).dtype))
            latents.append((z[0].float() * sf).cpu())
    data = TripletLatents(latents, torch.tensor(source.triplets, dtype=torch.long), key)
    if cache is not None:
        atomic_torch_save({"key": key, "latents": latents, "triplets": data.triplets}, cache)
        log.info("latents cached in %s", cache)
    return data


def open_source(*, data: str | Path | None = None, vimeo: str | Path | None = None, max_frames: int | None = None,
                start_frame: int = 0, limit: int | None = None) -> _Source:
    """The triplets of ``data`` (a video or a folder of videos) or ``vimeo`` (Vimeo-90K layout), not yet
    encoded; raises :class:`MediaError` when there are none."""
    if (data is None) == (vimeo is None):
        raise OptionError("give exactly one of --data (videos) and --vimeo (Vimeo-90K triplets)")
    src = vimeo_triplets(vimeo, limit=limit) if vimeo is not None else video_triplets(data, max_frames, start_frame)
    if data is not None and limit is not None:
        src.triplets = src.triplets[:limit]
    return src


def load_triplets(model, *, data: str | Path | None = None, vimeo: str | Path | None = None,
                  encoder_hash: str, cache_dir=None, max_frames: int | None = None, start_frame: int = 0,
                  limit: int | None = None, device="cpu", progress: bool = True) -> TripletLatents:
    """Triplet latents from ``data`` (a video or a folder of videos) or ``vimeo`` (Vimeo-90K layout)."""
    src = open_source(data=data, vimeo=vimeo, max_frames=max_frames, start_frame=start_frame, limit=limit)
    return encode_triplets(model, src, encoder_hash=encoder_hash, cache_dir=cache_dir, device=device,
                           progress=progress)


def sample_batch(data: TripletLatents, batch: int, crop: tuple[int, int], generator: torch.Generator,
                 augment: bool = True) -> tuple[Tensor, Tensor]:
    """A random batch: ``(cond (B, 2C, ch, cw), x0 (B, C, ch, cw))``, crop (ch, cw) in latent pixels.

    Every random choice comes from ``generator`` (CPU): the same generator state gives the same batch."""
    ch, cw = crop
    idx = torch.randint(len(data), (batch,), generator=generator)
    conds, x0s = [], []
    for i in idx.tolist():
        a, m, b = (data.latents[j] for j in data.triplets[i].tolist())
        H, W = m.shape[-2:]
        if H < ch or W < cw:
            raise OptionError(f"--crop is larger than the frames: latent {H}x{W} < crop {ch}x{cw} "
                              f"(frame pixels = latent pixels x 32)")
        top = int(torch.randint(H - ch + 1, (1,), generator=generator))
        left = int(torch.randint(W - cw + 1, (1,), generator=generator))
        flips = torch.rand(3, generator=generator).tolist() if augment else [1.0, 1.0, 1.0]
        trip = [z[:, top:top + ch, left:left + cw] for z in (a, m, b)]
        if flips[0] < 0.5:
            trip = [z.flip(-1) for z in trip]
        if flips[1] < 0.5:
            trip = [z.flip(-2) for z in trip]
        if flips[2] < 0.5:
            trip = trip[::-1]
        conds.append(torch.cat([trip[0], trip[2]], dim=0))
        x0s.append(trip[1])
    return torch.stack(conds), torch.stack(x0s)
