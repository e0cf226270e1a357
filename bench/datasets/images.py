"""Decode image files of a class tree (a folder or a zip) into one uint8 array.

Shared by `folder:PATH` and `kather2016`. Every file must decode with PIL; what can be converted
is converted and reported in the returned notes (mixed modes -> RGB or L, 16-bit -> 8-bit,
non-square -> centre crop, any size -> PIL bicubic to the target size; `decode_native` keeps each
file's own size and shape, for tiling); what cannot (a file that is not an image, 32-bit or float
pixels) is a BenchError naming the file.
"""
from __future__ import annotations

import io
from collections import Counter
from typing import Callable, Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from bench.core.errors import BenchError

Opener = Callable[[], bytes]            # returns the file's bytes


def _to_8bit(img: Image.Image, name: str) -> Image.Image:
    """Every mode PIL knows -> L or RGB; 16-bit grey scaled by 1/257 (65535 -> 255)."""
    if img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.uint16)
        return Image.fromarray(np.rint(arr / 257.0).astype(np.uint8), "L")
    if img.mode in ("I", "F"):
        raise BenchError(f"{name}: {img.mode} ({'32-bit integer' if img.mode == 'I' else 'float'}) "
                         "pixels have no agreed 8-bit range; save it as 8-bit PNG/TIFF")
    if img.mode in ("1", "L", "LA"):
        return img.convert("L")
    return img.convert("RGB")


def _square(img: Image.Image) -> tuple[Image.Image, bool]:
    w, h = img.size
    if w == h:
        return img, False
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)), True


def _read(name: str, opener: Opener, modes: Counter, sizes: Counter) -> Image.Image:
    """One file as an 8-bit L or RGB image, its mode and size counted; BenchError naming the file."""
    try:
        with Image.open(io.BytesIO(opener())) as img:
            img.load()
            modes[img.mode] += 1
            sizes[f"{img.width}x{img.height}"] += 1
            return _to_8bit(img, name)
    except Image.DecompressionBombError as err:
        raise BenchError(f"{name}: {str(err).rstrip('.')}; downscale it or remove it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise BenchError(f"{name}: not a readable image ({type(err).__name__}: {err}); "
                         "remove it or replace it with a PNG/JPEG/TIFF") from None


def _arrays(images: list[Image.Image], modes: Counter) -> tuple[list[np.ndarray], dict]:
    """uint8 (H, W, C) arrays: 1 channel if every image is grey, else RGB; the notes on modes."""
    if not images:
        raise BenchError("no images found")
    gray = all(im.mode == "L" for im in images)
    arrays = [np.asarray(im if gray or im.mode == "RGB" else im.convert("RGB")) for im in images]
    notes: dict = {"modes": dict(modes)}
    if len(modes) > 1 or not set(modes) <= {"RGB", "L"}:
        notes["converted"] = f"modes {dict(modes)} converted to {'L' if gray else 'RGB'}"
    return [a[..., None] if gray else a for a in arrays], notes


def decode(items: Iterable[tuple[int, str, Opener]], size: int | None
           ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(label, display name, opener) items -> uint8 (N, S, S, C), int64 labels, notes.

    size None keeps the native size, which must then be the same for all images.
    """
    images, labels = [], []
    modes, sizes = Counter(), Counter()
    cropped = 0
    for label, name, opener in items:
        img, was_cropped = _square(_read(name, opener, modes, sizes))
        cropped += was_cropped
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        images.append(img)
        labels.append(label)
    if size is None and len({im.size for im in images}) > 1:
        raise BenchError(f"images of mixed sizes {sorted(sizes)}; give an image size to resize them")
    arrays, notes = _arrays(images, modes)
    notes["native_sizes"] = dict(sizes)
    if cropped:
        notes["center_cropped"] = f"{cropped} non-square images centre-cropped to square"
    if size is not None and set(sizes) != {f"{size}x{size}"}:
        notes["resized"] = f"PIL bicubic from {sorted(sizes)} to {size}x{size}"
    return np.stack(arrays), np.asarray(labels, np.int64), notes


def decode_native(items: Iterable[tuple[int, str, Opener]]) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """(label, display name, opener) items -> uint8 (H, W, C) arrays at each file's own size and shape (one
    channel count for all), int64 labels, notes."""
    images, labels = [], []
    modes, sizes = Counter(), Counter()
    for label, name, opener in items:
        images.append(_read(name, opener, modes, sizes))
        labels.append(label)
    arrays, notes = _arrays(images, modes)
    notes["native_sizes"] = dict(sizes)
    return arrays, np.asarray(labels, np.int64), notes
