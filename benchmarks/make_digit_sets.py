"""Two small public data sets for benchmarks/classifier_ceiling.py, from the handwritten digits that
scikit-learn ships (sklearn.datasets.load_digits: 1,797 8x8 images at 17 grey levels, 10 classes,
UCI "Optical Recognition of Handwritten Digits"; installed with bench's prdc dependency, nothing
downloaded):

- an `npz:` set, grayscale 28 px, 10 classes, unsplit (`images`, `labels`, `class_names`: bench splits
  it): all 1,797 digits upscaled MNIST-style (bicubic to 20 px, centred in 28 px);
- a `folder:` set with unequal classes, grayscale 32 px PNGs, one sub-folder per digit: class c keeps
  round(178 * 0.75**c) of its digits (178, 134, ..., 13: 13.7 to 1).

    python benchmarks/make_digit_sets.py [--out results/digit-sets]

prints the two data set specs to pass to bench (`npz:...`, `folder:...`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

SOURCE_LEVELS = 16          # load_digits' pixel values are 0..16
FOLDER_LARGEST, FOLDER_RATIO = 178, 0.75
SEED = 0


def upscaled(digit: np.ndarray, side: int) -> Image.Image:
    """An 8x8 digit (0..16) as a uint8 `side`-px image, MNIST-style: the digit fills the central 5/7."""
    box = round(side * 20 / 28)
    glyph = Image.fromarray(np.uint8(np.rint(digit * (255 / SOURCE_LEVELS)))).resize((box, box), Image.BICUBIC)
    canvas = Image.new("L", (side, side))
    canvas.paste(glyph, ((side - box) // 2, (side - box) // 2))
    return canvas


def write_npz(digits: np.ndarray, labels: np.ndarray, path: Path) -> None:
    images = np.stack([np.asarray(upscaled(d, 28)) for d in digits])
    np.savez_compressed(path, images=images, labels=labels, class_names=np.array([str(c) for c in range(10)]))


def write_folder(digits: np.ndarray, labels: np.ndarray, root: Path, rng: np.random.Generator) -> None:
    for c in range(10):
        keep = rng.permutation(np.flatnonzero(labels == c))[:round(FOLDER_LARGEST * FOLDER_RATIO ** c)]
        folder = root / f"digit-{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in keep:
            upscaled(digits[i], 32).save(folder / f"{i:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/digit-sets"))
    args = parser.parse_args()
    digits = load_digits()
    args.out.mkdir(parents=True, exist_ok=True)
    npz, folder = args.out / "digits28.npz", args.out / "digits-unequal"
    if not npz.exists():
        write_npz(digits.images, digits.target, npz)
    if not folder.exists():
        write_folder(digits.images, digits.target, folder, np.random.default_rng(SEED))
    print(f"npz:{npz}\nfolder:{folder}")


if __name__ == "__main__":
    main()
