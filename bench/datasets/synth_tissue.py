"""synth-tissue: procedural H&E-like texture tiles in the 8 Kather-2016 classes.

Every tile shows the same field of view (about 75 um, like a 150 px Kather tile at 0.5 um/px) at
any resolution: geometry is drawn in tile units [0, 1), rendered at twice the target size and
area-downsampled (anti-aliasing), and the tile wraps around (toroidal), so nothing is cut at an
edge. Colour follows the Beer-Lambert stain model behind colour deconvolution (Ruifrok & Johnston
2001, Anal. Quant. Cytol. Histol. 23:291): optical density OD = h * H + e * E + glass, RGB =
255 * exp(-OD), where h and e are hematoxylin (purple, nuclei) and eosin (pink, cytoplasm and
fibres) concentration maps and H, E their OD vectors, jittered per image like real staining and
scanner variation.

Images are generated in fixed-size chunks, each from its own generator seeded by
(seed, class, chunk), so image i depends only on (class, size, seed, i): generating more images
never changes the first ones.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from bench.core.errors import BenchError
from bench.datasets.base import SPLITS, DataConfig, PreparedData
from bench.datasets.prepare import assemble, scored_classes

CLASS_NAMES = ("tumor", "stroma", "complex", "lympho", "debris", "mucosa", "adipose", "empty")

# Stain OD vectors (unit length). Typical Macenko et al. (ISBI 2009) estimates for H&E; lymphocyte
# chromatin reads bluer (Ruifrok's H) and debris / red cells redder than cytoplasmic eosin.
H_STAIN = np.array([0.56, 0.72, 0.41])
H_BLUE = np.array([0.65, 0.70, 0.29])
E_STAIN = np.array([0.22, 0.80, 0.56])
E_RED = np.array([0.06, 0.76, 0.65])

SUPERSAMPLE = 2                 # render at 2x, then average 2x2 blocks
CHUNK_PIXELS = 2 ** 17          # rendered pixels per chunk (bounds the memory of blob windows)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _grid(P: int) -> np.ndarray:
    """Pixel centres in tile units."""
    return ((np.arange(P) + 0.5) / P).astype(np.float32)


def _noise(rng, n: int, P: int, corr: float, angle=None, stretch: float = 1.0) -> np.ndarray:
    """Gaussian-filtered white noise, zero mean and about unit variance, (n, P, P) float32.

    corr is the filter's spatial std in tile units; with an angle (n,) the filter is `stretch`
    times longer along that direction, giving streaks (fibres) oriented at that angle. The
    random spectrum is drawn directly, and only where the filter passes more than 1e-3
    (|f| <= 0.6 / corr cycles per tile), so smooth fields cost one small inverse FFT.
    """
    band = min(P // 2, int(np.ceil(0.6 / corr)))
    rows = np.r_[0:band + 1, P - band + (band == P // 2):P]                 # |fy| <= band
    fy = (np.fft.fftfreq(P) * P)[rows][:, None]                             # cycles per tile
    fx = np.arange(band + 1, dtype=float)[None, :]
    if angle is None:
        k2 = ((fx ** 2 + fy ** 2) * corr ** 2)[None]
    else:
        c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        along, across = fx * c + fy * s, -fx * s + fy * c
        k2 = (along * corr * stretch) ** 2 + (across * corr) ** 2
    gain = np.exp(-2 * np.pi ** 2 * k2)
    gain[:, 0, 0] = 0.0                           # zero mean
    # Parseval with the 1/P^2 of the inverse FFT: variance = sum_full E|X_k|^2 / P^4. A column
    # of the half spectrum stands for itself and its mirror (weight 2), except the first (and
    # Nyquist) column, whose coefficients are their own mirrors (weight 1); there the inverse
    # keeps only the Hermitian part of independent draws, half their power: sqrt(2) more gain.
    weight = np.full(band + 1, 2.0)
    edges = [0, band] if band == P // 2 else [0]
    weight[edges] = 1.0
    gain *= np.sqrt(0.5) * P ** 2 / np.sqrt((gain ** 2 * weight).sum(axis=(1, 2), keepdims=True))
    gain[:, :, edges] *= np.sqrt(2)
    z = rng.standard_normal((n, len(rows), band + 1, 2), dtype=np.float32).view(np.complex64)
    z = z[..., 0] * gain.astype(np.float32)      # complex normal, E|z|^2 = 2 (hence sqrt 0.5)
    if len(rows) == P and band == P // 2:
        spectrum = z
    else:
        spectrum = np.zeros((n, P, P // 2 + 1), np.complex64)
        spectrum[:, :band + 1, :band + 1] = z[:, :band + 1]
        spectrum[:, P - len(rows) + band + 1:, :band + 1] = z[:, band + 1:]
    return scipy.fft.irfft2(spectrum, s=(P, P))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _blobs(P: int, x, y, rx, ry, angle, weight, ramp: float = 0.0) -> np.ndarray:
    """Sum of weighted soft-edged ellipses, (n, P, P); all arguments (n, m) in tile units.

    Each blob is rasterised only in its own window (vectorised over all blobs) and accumulated
    with bincount; weight 0 marks padding. The edge ramps from 1 to 0 over one pixel, or with
    ramp > 0 over that fraction of the radius (a field to threshold into ragged outlines).
    """
    n, m = x.shape
    x, y, rx, ry, angle, weight = (np.asarray(q, np.float32) for q in (x, y, rx, ry, angle, weight))
    R = int(np.ceil(max(rx.max(), ry.max()) * P * (1 + ramp / 2))) + 1
    off = np.arange(-R, R + 1)
    cx, cy = x * P, y * P
    ix = np.floor(cx).astype(np.int64)[..., None, None] + off[None, :]      # (n, m, 1, W)
    iy = np.floor(cy).astype(np.int64)[..., None, None] + off[:, None]      # (n, m, W, 1)
    u = (ix + 0.5).astype(np.float32) - cx[..., None, None]
    v = (iy + 0.5).astype(np.float32) - cy[..., None, None]
    # rotate and scale the separable row/column vectors; one broadcast add makes the window
    c, s = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
    sx, sy = 1 / (rx[..., None, None] * P), 1 / (ry[..., None, None] * P)
    a = u * (c * sx) + v * (s * sx)
    b = v * (c * sy) - u * (s * sy)
    r = np.sqrt(a * a + b * b)
    steep = (0.5 * (rx + ry) * P)[..., None, None] if ramp == 0 else np.float32(1 / ramp)
    cover = np.clip((1 - r) * steep + 0.5, 0.0, 1.0)
    cover *= weight[..., None, None]
    flat = (np.arange(n)[:, None, None, None] * P + iy % P) * P + ix % P
    acc = np.bincount(flat.ravel(), cover.ravel(), minlength=n * P * P)
    return acc.reshape(n, P, P).astype(np.float32)


def _nuclei(rng, P, n, count, radius, aspect, dark, irregular=0.0, x=None, y=None, angle=None):
    """Blobs at random (or given) positions: count (n,) active of max; radius/aspect/dark ranges.

    irregular > 0 gives ragged, pleomorphic outlines (tumour nuclei): a broad-edged blob field is
    thresholded at a noisy level, shifting the outline by ~irregular radii; neighbours that
    touch merge into clumps. Darkness then varies smoothly across the tile, not per nucleus.
    """
    m = int(count.max())
    active = (np.arange(m)[None, :] < count[:, None]).astype(np.float32)
    x = rng.random((n, m)) if x is None else x
    y = rng.random((n, m)) if y is None else y
    angle = rng.uniform(0, np.pi, (n, m)) if angle is None else angle
    rx = rng.uniform(*radius, (n, m))
    ry = rx * rng.uniform(*aspect, (n, m))
    if irregular == 0:
        return _blobs(P, x, y, rx, ry, angle, rng.uniform(*dark, (n, m)) * active)
    ramp = 4 * irregular                # the field is linear in r over 1 +- 2 irregular
    field = _blobs(P, x, y, rx, ry, angle, active, ramp=ramp)
    mean_radius = 0.5 * (radius[0] + radius[1])
    # level 0 where r = 1 + irregular * noise; rescaled so the edge is one pixel wide
    level = np.minimum(field, 1) - 0.5 + (irregular / ramp) * _noise(rng, n, P, mean_radius / 2)
    mask = np.clip(level * (ramp * mean_radius * P) + 0.5, 0, 1)
    return mask * (dark[0] + (dark[1] - dark[0]) * _sigmoid(2 * _noise(rng, n, P, 0.05)))


def _counts(rng, n, lo, hi):
    return rng.integers(lo, hi + 1, n)


def _chromatin(rng, n, P, nuclei, cap):
    """Saturate overlapping nuclei and add granular chromatin texture."""
    return np.minimum(nuclei, cap) * (0.8 + 0.12 * _noise(rng, n, P, 0.006))


def _fibres(rng, n, P, angle, contrast):
    """Wavy eosin fibre bundles along `angle` (two slightly rotated streak fields)."""
    f = _noise(rng, n, P, 0.010, angle, 14.0) + 0.6 * _noise(
        rng, n, P, 0.012, angle + rng.normal(0, 0.25, n), 8.0)
    return _sigmoid(contrast * f)


# --- classes: each returns (h, e, clear) maps (n, P, P); clear = fraction without tissue -------

def _tumor(rng, n, P):
    h = _chromatin(rng, n, P, _nuclei(rng, P, n, _counts(rng, n, 26, 42), (0.055, 0.085),
                                      (0.6, 0.95), (1.5, 2.1), irregular=0.14), 2.2)
    e = 0.42 + 0.1 * _noise(rng, n, P, 0.06)
    clear = 0.9 * _sigmoid(6 * (_noise(rng, n, P, 0.03) - 2.3))       # small tears
    return h + 0.18, e, clear


def _stroma(rng, n, P):
    theta = rng.uniform(0, np.pi, n)
    f = _fibres(rng, n, P, theta, 2.5)
    count = _counts(rng, n, 2, 9)
    angle = theta[:, None] + rng.normal(0, 0.12, (n, int(count.max())))
    h = _nuclei(rng, P, n, count, (0.06, 0.10), (0.15, 0.3), (1.3, 1.9), angle=angle)
    e = 0.25 + 0.6 * f
    clear = 0.7 * (1 - f) * _sigmoid(4 * (_noise(rng, n, P, 0.05) - 0.5))  # loose gaps
    return np.minimum(h, 1.9) + 0.04, e, clear


def _complex(rng, n, P):
    f = _fibres(rng, n, P, rng.uniform(0, np.pi, n), 1.5)
    count = _counts(rng, n, 8, 18)
    centre = rng.random((n, 1, 2))
    spread = rng.normal(0, 0.14, (n, int(count.max()), 2))
    tumor = _nuclei(rng, P, n, count, (0.05, 0.08), (0.6, 0.95), (1.4, 2.0), irregular=0.14,
                    x=(centre[..., 0] + spread[..., 0]) % 1, y=(centre[..., 1] + spread[..., 1]) % 1)
    lympho = _nuclei(rng, P, n, _counts(rng, n, 5, 25), (0.028, 0.038), (0.85, 1.0), (1.8, 2.4))
    h = _chromatin(rng, n, P, tumor + lympho, 2.2)
    e = 0.3 + 0.4 * f
    clear = 0.5 * _sigmoid(4 * (_noise(rng, n, P, 0.06) - 1.2))
    return h + 0.08, e, clear


def _lympho(rng, n, P):
    h = _chromatin(rng, n, P, _nuclei(rng, P, n, _counts(rng, n, 95, 140), (0.03, 0.042),
                                      (0.8, 1.0), (2.0, 2.6)), 2.6)
    e = 0.18 + 0.06 * _noise(rng, n, P, 0.1)
    return h + 0.25, e, np.zeros_like(h)


def _debris(rng, n, P):
    count = _counts(rng, n, 40, 90)
    m = int(count.max())
    centres = rng.random((n, 3, 2))
    pick = rng.integers(0, 3, (n, m))
    pos = (np.take_along_axis(centres, pick[..., None], 1) + rng.normal(0, 0.16, (n, m, 2))) % 1
    fragments = _nuclei(rng, P, n, count, (0.008, 0.024), (0.5, 1.0), (1.6, 2.6),
                        irregular=0.2, x=pos[..., 0], y=pos[..., 1])
    ghosts = _nuclei(rng, P, n, _counts(rng, n, 3, 10), (0.03, 0.05), (0.6, 1.0), (0.4, 0.8))
    blotch = _sigmoid(2.5 * _noise(rng, n, P, 0.07))
    h = np.minimum(fragments + ghosts, 2.4) + 0.25 * _sigmoid(2 * _noise(rng, n, P, 0.1))
    e = 0.25 + 0.75 * blotch
    clear = 0.95 * _sigmoid(5 * (_noise(rng, n, P, 0.08) - 0.9))
    return h, e, clear


def _torus_delta(a, b):
    """Minimum-image difference a - b on the unit torus."""
    return (a - b + 0.5) % 1.0 - 0.5


def _mucosa(rng, n, P):
    g = 3                                               # glands drawn; 1-3 kept per image
    kept = np.arange(g)[None, :] < rng.integers(1, g + 1, n)[:, None]
    gx, gy = rng.random((n, g)), rng.random((n, g))
    ga = rng.uniform(0.12, 0.2, (n, g))
    gb = ga * rng.uniform(0.6, 1.0, (n, g))
    gt = rng.uniform(0, np.pi, (n, g))
    # normalised elliptic radius of every pixel to every gland; the nearest gland wins
    X, Y = _grid(P)[None, None, None, :], _grid(P)[None, None, :, None]
    dx, dy = _torus_delta(X, gx[..., None, None]), _torus_delta(Y, gy[..., None, None])
    c, s = np.cos(gt)[..., None, None], np.sin(gt)[..., None, None]
    rho = np.sqrt(((dx * c + dy * s) / ga[..., None, None]) ** 2
                  + ((-dx * s + dy * c) / gb[..., None, None]) ** 2)
    rho = np.where(kept[..., None, None], rho, np.inf).min(axis=1)
    px = 1.0 / (P * 0.15)                               # one pixel in normalised radius
    lumen = np.clip((1.0 - rho) / px + 0.5, 0, 1)
    epithelium = np.clip((1.55 - rho) / px + 0.5, 0, 1) - lumen
    # columnar nuclei: a ring at 1.35 radii, long axis pointing at the lumen centre
    per = 44
    t = np.linspace(0, 2 * np.pi, per, endpoint=False)[None, None, :] + rng.normal(0, 0.03, (n, g, per))
    ex, ey = 1.35 * ga[..., None] * np.cos(t), 1.35 * gb[..., None] * np.sin(t)
    c, s = np.cos(gt)[..., None], np.sin(gt)[..., None]
    ox, oy = ex * c - ey * s, ex * s + ey * c
    ring = _blobs(P, ((gx[..., None] + ox) % 1).reshape(n, -1),
                  ((gy[..., None] + oy) % 1).reshape(n, -1),
                  rng.uniform(0.03, 0.042, (n, g * per)), rng.uniform(0.011, 0.015, (n, g * per)),
                  np.arctan2(oy, ox).reshape(n, -1),
                  (rng.uniform(1.5, 2.1, (n, g, per)) * kept[..., None]).reshape(n, -1))
    stroma = _nuclei(rng, P, n, _counts(rng, n, 6, 20), (0.022, 0.032), (0.7, 1.0), (1.6, 2.2))
    goblets = _sigmoid(5 * (_noise(rng, n, P, 0.012) - 0.6)) * epithelium
    h = np.minimum(ring, 2.1) + stroma * (1 - epithelium - lumen) + 0.35 * goblets + 0.1
    e = 0.5 * (1 - epithelium) + 0.18 * epithelium + 0.05 * _noise(rng, n, P, 0.05)
    clear = np.clip(lumen + 0.5 * goblets, 0, 1)
    return h, e, clear


def _adipose(rng, n, P):
    """Voronoi cells of fat; a membrane where a pixel is near the bisector of its two nearest
    seeds a, b: distance (|b|^2 - |a|^2) / 2|a - b| with a, b the pixel-to-seed vectors."""
    k = 7
    count = _counts(rng, n, 3, k)
    X, Y = _grid(P)[None, None, None, :], _grid(P)[None, None, :, None]
    dx = _torus_delta(rng.random((n, k))[..., None, None], X)
    dy = _torus_delta(rng.random((n, k))[..., None, None], Y)
    d2 = np.where((np.arange(k) < count[:, None])[..., None, None], dx * dx + dy * dy, np.inf)
    near = np.argpartition(d2, 1, axis=1)[:, :2]                    # (n, 2, P, P)
    ax, bx = np.take_along_axis(dx, near, 1).transpose(1, 0, 2, 3)
    ay, by = np.take_along_axis(dy, near, 1).transpose(1, 0, 2, 3)
    to_edge = (bx * bx + by * by - ax * ax - ay * ay) / (2 * np.hypot(ax - bx, ay - by) + 1e-9)
    width = rng.uniform(0.006, 0.011, (n, 1, 1))                   # half-width, tile units
    membrane = np.clip((width - to_edge) * P + 0.5, 0, 1)
    e = membrane
    h = 0.4 * membrane * _sigmoid(4 * (_noise(rng, n, P, 0.02) - 1.5))   # flattened nuclei
    return h, e, 1 - membrane


def _empty(rng, n, P):
    smear = _sigmoid(3 * (_noise(rng, n, P, 0.15) - 1.0))
    e = rng.uniform(0, 0.12, (n, 1, 1)) * smear
    h = 0.02 * smear
    clear = 1 - 0.5 * smear
    return h, e, clear


CLASSES = (_tumor, _stroma, _complex, _lympho, _debris, _mucosa, _adipose, _empty)
CLASS_H = (H_STAIN, H_STAIN, H_STAIN, H_BLUE, H_STAIN, H_STAIN, H_STAIN, H_STAIN)
CLASS_E = (E_STAIN, E_STAIN, E_STAIN, E_STAIN, E_RED, E_STAIN, E_STAIN, E_STAIN)


def _area_downsample(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f pixel blocks of (n, P, P) maps."""
    return sum(a[:, i::f, j::f] for i in range(f) for j in range(f)) / np.float32(f * f)


def _stain(rng, h, e, H, E) -> np.ndarray:
    """Stain concentration maps (n, S, S) -> float RGB in [0, 255], per-image stain jitter."""
    n = len(h)
    Hj = _unit(H + rng.normal(0, 0.04, (n, 3))) * rng.uniform(0.8, 1.2, (n, 1))
    Ej = _unit(E + rng.normal(0, 0.04, (n, 3))) * rng.uniform(0.75, 1.25, (n, 1))
    glass = rng.uniform(0.02, 0.09, (n, 1)) + rng.normal(0, 0.006, (n, 3))   # slide + lamp tint
    grain = rng.standard_normal(h.shape, dtype=np.float32) * np.float32(0.025)
    od = (h[..., None] * Hj[:, None, None].astype(np.float32)
          + e[..., None] * Ej[:, None, None].astype(np.float32)
          + (grain[..., None] + glass[:, None, None].astype(np.float32)))
    return 255.0 * np.exp(-od)


def generate(class_index: int, n: int, size: int, seed: int,
             stains: tuple[np.ndarray, np.ndarray, float] | None = None) -> np.ndarray:
    """n RGB tiles of class `class_index` at size x size: uint8 (n, size, size, 3). `stains`: the OD
    vectors of the nuclear and the second stain and the second stain's strength (default: the class's
    H&E vectors, strength 1).

    The same arguments give identical bytes; image i does not depend on n. Maps are rendered at
    SUPERSAMPLE x the size and area-averaged in optical density (where stains add linearly)
    before the colour transform.
    """
    if not 0 <= class_index < len(CLASSES):
        raise ValueError(f"class_index must be in 0..{len(CLASSES) - 1}, got {class_index}")
    if size < 4 or n < 0:
        raise ValueError(f"need size >= 4 and n >= 0, got size={size}, n={n}")
    P = SUPERSAMPLE * size
    chunk = int(np.clip(CHUNK_PIXELS // (P * P), 1, 16))
    out = np.empty((n, size, size, 3), np.uint8)
    for c0 in range(0, n, chunk):
        rng = np.random.default_rng([seed, class_index, c0 // chunk])
        h, e, clear = CLASSES[class_index](rng, chunk, P)
        tissue = 1.0 - np.clip(clear, 0, 1)
        h = _area_downsample(np.maximum(h, 0) * tissue, SUPERSAMPLE)
        e = _area_downsample(np.maximum(e, 0) * tissue, SUPERSAMPLE)
        H, E, strength = stains or (CLASS_H[class_index], CLASS_E[class_index], 1.0)
        rgb = _stain(rng, h, e * np.float32(strength), H, E)
        k = min(chunk, n - c0)
        out[c0:c0 + k] = np.clip(np.rint(rgb[:k]), 0, 255).astype(np.uint8)
    return out


def seed_of_split(split_seed: int, split: str) -> int:
    """Generator seed of one split: distinct for every (split_seed, split), so splits share no
    image."""
    return 3 * split_seed + SPLITS.index(split)


def load(cfg: DataConfig, source: str = "synth-tissue", stains=None, seed_offset: int = 0) -> PreparedData:
    """Train/val/test with cfg.<split>_per_class images of every class, rendered at image_size; another
    stain (`stains`: class index -> OD vectors, see `generate`) and other tissue (`seed_offset`) make a
    source of its own (synth_tissue_ihc)."""
    if cfg.split_seed < 0:
        raise BenchError(f"split_seed {cfg.split_seed} must be >= 0 for synth-tissue")
    if cfg.image_size < 4:
        raise BenchError(f"image_size {cfg.image_size} is too small; use 4 or more (e.g. 32)")
    scored_classes(CLASS_NAMES, cfg.exclude_classes, "synth-tissue")   # fail before rendering
    splits, seeds = {}, {}
    for s in SPLITS:
        per = getattr(cfg, f"{s}_per_class")
        if per < 0 or (s == "train" and per == 0):
            raise BenchError(f"data.{s}_per_class = {per} must be >= 0 (train >= 1)")
        seeds[s] = seed_of_split(cfg.split_seed, s) + seed_offset
        x = np.concatenate([generate(c, per, cfg.image_size, seeds[s], stains(c) if stains else None)
                            for c in range(len(CLASS_NAMES))])
        splits[s] = (x, np.repeat(np.arange(len(CLASS_NAMES)), per))
    meta = {"source": source, "generator": "bench.datasets.synth_tissue.generate",
            "seeds": seeds, "licence": "generated; no third-party data"}
    return assemble(cfg, source, CLASS_NAMES, splits, meta, augment="dihedral")  # tissue has no up
